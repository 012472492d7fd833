// CommonJS consumer: in a .cts file `import … from` compiles to require(), which resolves
// through the "require" condition to dist/cjs/index.d.ts.
import { collection, defineSchema, open } from 'prevail';
import prevail = require('prevail');
import type { Id } from 'prevail';

const schema = defineSchema({
  collections: { notes: collection<{ text: string }>()() },
  commands: {
    write: (s, { text }: { text: string }) => s.notes.insert({ text }),
  },
});

export async function main(): Promise<void> {
  const store = await prevail.open({ schema, dataDir: './data' });
  const note = await store.propose('write', { text: 'hi' });
  const id: Id = note.id;
  const text: string = note.text;
  void id;
  void text;
  // @ts-expect-error: wrong argument type
  await store.propose('write', { text: 1 });
  void open;
  await store.close();
}
