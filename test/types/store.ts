// ESM consumer (this package is "type": "module", so .ts here is ESM): `import` resolves
// through the "import" condition to dist/index.d.ts.
import {
  collection,
  defineSchema,
  open,
  isPrevailError,
  ErrorCodes,
  type Id,
  type Store,
  type Stored,
} from 'prevail';

interface Todo {
  title: string;
  due: string;
  done: boolean;
  created: number;
}

const schema = defineSchema({
  collections: {
    todos: collection<Todo>()({
      indexes: (ix) => ({ byDue: ix.sorted((t) => t.due), byTitle: ix.unique((t) => t.title) }),
    }),
  },
  commands: {
    add: (s, args: { title: string; due: string }, ctx) =>
      s.todos.insert({ title: args.title, due: args.due, done: false, created: ctx.timestamp }),
    finish: (s, { id }: { id: Id }) => s.todos.update(id, { done: true }),
    count: (s) => s.todos.size,
  },
});

type Equal<A, B> =
  (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function expectType<T>(_value: T): void {}
function assertTrue<T extends true>(): void {}

export async function main(): Promise<void> {
  const store = await open({ schema, dataDir: './data' });
  expectType<Store<typeof schema.collections, typeof schema.commands>>(store);

  // Arguments and results are inferred from the handlers.
  const todo = await store.propose('add', { title: 'ship it', due: '2026-12-01' });
  assertTrue<Equal<typeof todo, Stored<Todo>>>();
  expectType<Id>(todo.id);
  expectType<string>(todo.title);
  const n = await store.propose('count', undefined as never);
  expectType<number>(n);
  const finished = await store.propose('finish', { id: todo.id });
  expectType<boolean>(finished.done);

  // @ts-expect-error: no such command
  await store.propose('remove', { id: 1 });
  // @ts-expect-error: `add` takes { title, due }, not a string
  await store.propose('add', 'ship it');
  // @ts-expect-error: wrong argument type (id is an Id, not a boolean)
  await store.propose('finish', { id: true });
  // @ts-expect-error: missing argument field
  await store.propose('add', { title: 'no due date' });
  // @ts-expect-error: result is a Todo, not a string
  const wrong: string = await store.propose('add', { title: 't', due: 'd' });
  void wrong;

  // Reads: typed collections and indexes.
  const byTitle = store.view.todos.byTitle.get('ship it');
  assertTrue<Equal<typeof byTitle, Stored<Todo> | undefined>>();
  for (const t of store.view.todos.byDue.range({ lt: '2027-01-01' })) expectType<string>(t.due);
  // @ts-expect-error: no such index
  store.view.todos.byOwner;
  // @ts-expect-error: no such collection
  store.view.users;

  // Handlers are checked against the collections.
  defineSchema({
    collections: { todos: collection<Todo>()() },
    commands: {
      // @ts-expect-error: `done` must be a boolean
      bad: (s) => s.todos.insert({ title: 't', due: 'd', done: 'yes', created: 0 }),
    },
  });

  // Handlers are synchronous: one returning a promise (an async function, or not) is refused.
  defineSchema({
    collections: { todos: collection<Todo>()() },
    commands: {
      // @ts-expect-error: an async handler (its return type is a Promise)
      later: async (s, args: { title: string }) =>
        s.todos.insert({ title: args.title, due: 'd', done: false, created: 0 }),
      // @ts-expect-error: a handler returning a promise
      promised: (s) => Promise.resolve(s.todos.size),
      // @ts-expect-error: a handler returning some other thenable
      thenable: (_s) =>
        ({
          then(resolve: (v: number) => void) {
            resolve(1);
          },
        }) as PromiseLike<number>,
      fine: (s, args: { title: string }) =>
        s.todos.insert({ title: args.title, due: 'd', done: false, created: 0 }),
      nothing: () => undefined,
      anything: (_s, x: unknown): any => x,
      // A union result (an Id is string | number) is not a promise (the check must not distribute).
      union: (s, args: { title: string }) =>
        s.todos.insert({ title: args.title, due: 'd', done: false, created: 0 }).id,
      // One that only throws (its result type is never) is fine too.
      refuseAll: (_s, _args: { why: string }) => {
        throw new Error('refused');
      },
    },
  });
  // Synchronous handlers keep their types (contextual state, inferred arguments and results).
  const mixed = defineSchema({
    collections: { todos: collection<Todo>()() },
    commands: {
      add: (s, args: { title: string }) =>
        s.todos.insert({ title: args.title, due: 'd', done: false, created: 0 }),
    },
  });
  const mixedStore = await open({ schema: mixed, dataDir: './data2' });
  const added = await mixedStore.propose('add', { title: 'x' });
  expectType<string>(added.title);
  // @ts-expect-error: wrong argument type
  await mixedStore.propose('add', { title: 1 });

  try {
    await store.close();
  } catch (err) {
    if (isPrevailError(err)) expectType<string>(err.code);
  }
  expectType<string>(ErrorCodes.NOT_LEADER);
}
