// The value model: what "plain data" is, the one rule for command arguments and stored
// objects alike (docs/guide.md, "Plain data"). A value is plain data when it arrives
// exactly as it was sent, through a log entry, a replay, a snapshot restore and a
// forwarded request: anything else is refused where it enters, with the path to it.
//
// msgpack (our encoding) gets four plain values wrong on its own: -0 (written as 0), a
// string with a lone surrogate (UTF-8 can't hold one: written as U+FFFD), and byte
// arrays, which decode as Buffers that alias the decoded bytes. The check below notes
// where those are ("patches"), the encoder writes the patches beside the value, and
// applyPatches puts the exact values back after decoding. Values without them (nearly
// all) cost nothing more than the check.
import { ErrorCodes, PrevailError } from './core/errors.js';

// ES2024's String.prototype.isWellFormed (in Node since 20), missing from our TS lib setting.
type WellFormed = { isWellFormed(): boolean };

/** One step into a value: an object key or an array index. */
export type PathStep = string | number;

/** What a patch puts back at its path. */
export const PatchKind = {
  /** The number -0. */
  NEGATIVE_ZERO: 1,
  /** A string with lone surrogates; data: its UTF-16 code units. */
  UTF16: 2,
  /** A Uint8Array (a fresh copy of the decoded bytes). */
  BYTES: 3,
  /** A Buffer (a fresh copy of the decoded bytes). */
  BUFFER: 4,
} as const;
type PatchKindValue = (typeof PatchKind)[keyof typeof PatchKind];

/** Where a value differs from what msgpack alone would give back, and what belongs there. */
export type Patch = [path: PathStep[], kind: PatchKindValue, data?: number[]];

/**
 * Checks that `value` is plain data and returns its patches (an empty array for nearly
 * every value). Throws PREVAIL_NOT_PLAIN_DATA naming the path (`where` is the root's
 * name, e.g. `args`) and the reason.
 */
export function checkPlain(value: unknown, where: string): Patch[] {
  const patches: Patch[] = [];
  const path: PathStep[] = [];
  visit(value, path, patches, new Set(), where);
  return patches;
}

/**
 * Checks that `value` is a plain object (what insert and update take: they copy its own
 * fields, so a class instance or an array would be changed into something else silently).
 */
export function checkPlainObject(value: unknown, where: string): void {
  if (
    typeof value !== 'object' ||
    value === null ||
    Object.getPrototypeOf(value) !== Object.prototype
  ) {
    const what =
      value === null
        ? 'null'
        : Array.isArray(value)
          ? 'an array'
          : typeof value === 'object'
            ? describeInstance(value)
            : `a ${typeof value}`;
    throw notPlain(where, [], `is ${what}: objects are stored from a plain object ({ ...fields })`);
  }
}

/** The patches of a value already known to be plain (a stored object, a schedule's args). */
export function patchesOf(value: unknown): Patch[] {
  return checkPlain(value, 'value');
}

/**
 * The patches of a handler's result, sent back to a caller on another node; undefined
 * when the result is not plain data (it then travels as msgpack makes it: results are
 * not part of the replicated state, see docs/guide.md).
 */
export function patchesOfResult(value: unknown): Patch[] | undefined {
  try {
    return checkPlain(value, 'result');
  } catch {
    return undefined;
  }
}

function visit(
  value: unknown,
  path: PathStep[],
  patches: Patch[],
  seen: Set<object>,
  where: string,
): void {
  switch (typeof value) {
    case 'string':
      if (!(value as unknown as WellFormed).isWellFormed())
        patches.push([path.slice(), PatchKind.UTF16, codeUnits(value)]);
      return;
    case 'number':
      if (value === 0 && 1 / value < 0) patches.push([path.slice(), PatchKind.NEGATIVE_ZERO]);
      return;
    case 'boolean':
    case 'undefined':
    case 'bigint':
      return;
    case 'function':
      throw notPlain(where, path, 'is a function');
    case 'symbol':
      throw notPlain(where, path, 'is a symbol');
    default:
  }
  if (value === null) return;
  const obj = value as object;
  const proto = Object.getPrototypeOf(obj);
  if (proto === Object.prototype) visitRecord(obj, path, patches, seen, where);
  else if (Array.isArray(obj)) {
    if (proto !== Array.prototype)
      throw notPlain(where, path, `is an instance of ${className(obj)}, not a plain array`);
    visitArray(obj, path, patches, seen, where);
  } else if (proto === Uint8Array.prototype || proto === Buffer.prototype) {
    patches.push([path.slice(), proto === Buffer.prototype ? PatchKind.BUFFER : PatchKind.BYTES]);
  } else checkOtherObject(obj, proto, path, where);
}

function visitRecord(
  obj: object,
  path: PathStep[],
  patches: Patch[],
  seen: Set<object>,
  where: string,
): void {
  enter(obj, path, seen, where);
  for (const key in obj) {
    if (key === '__proto__')
      throw notPlain(
        where,
        path,
        'has a key named "__proto__" (it can\'t be stored faithfully, and it is how prototype pollution starts)',
      );
    if (!(key as unknown as WellFormed).isWellFormed())
      throw notPlain(
        where,
        path,
        `has a key with a lone surrogate (${JSON.stringify(key)}): keys must be well-formed UTF-16`,
      );
    path.push(key);
    visit((obj as Record<string, unknown>)[key], path, patches, seen, where);
    path.pop();
  }
  if (Object.getOwnPropertySymbols(obj).length > 0)
    throw notPlain(where, path, "has symbol keys, which can't be sent");
  seen.delete(obj);
}

function visitArray(
  arr: unknown[],
  path: PathStep[],
  patches: Patch[],
  seen: Set<object>,
  where: string,
): void {
  enter(arr, path, seen, where);
  for (let i = 0; i < arr.length; i++) {
    if (!(i in arr))
      throw notPlain(
        where,
        path,
        `has a hole at index ${i} (a sparse array comes back with undefined there)`,
      );
    path.push(i);
    visit(arr[i], path, patches, seen, where);
    path.pop();
  }
  if (Object.keys(arr).length !== arr.length)
    throw notPlain(where, path, 'is an array with extra (non-index) properties');
  seen.delete(arr);
}

/** Any object but a plain object, a plain array or bytes: a Date without own properties passes. */
function checkOtherObject(obj: object, proto: unknown, path: PathStep[], where: string): void {
  if (proto === Date.prototype) {
    if (Object.keys(obj).length > 0)
      throw notPlain(where, path, 'is a Date with properties of its own');
  } else if (proto === null) {
    throw notPlain(
      where,
      path,
      'is an object with a null prototype (it would come back as an ordinary object): copy it into {}',
    );
  } else if (ArrayBuffer.isView(obj)) {
    throw notPlain(
      where,
      path,
      `is a ${className(obj)}: bytes are plain data as a Uint8Array only`,
    );
  } else {
    throw notPlain(
      where,
      path,
      `is ${describeInstance(obj)}, not plain data (plain objects, arrays, strings, numbers, bigints, booleans, null, undefined, Date, Uint8Array)`,
    );
  }
}

function enter(obj: object, path: PathStep[], seen: Set<object>, where: string): void {
  if (seen.has(obj)) throw notPlain(where, path, 'refers back to itself (a cycle)');
  seen.add(obj);
}

function className(obj: object): string {
  const name = (obj as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === 'string' && name ? name : 'an unnamed class';
}

function describeInstance(obj: object): string {
  if (obj instanceof Map) return 'a Map (use a plain object, or an array of [key, value] pairs)';
  if (obj instanceof Set) return 'a Set (use an array)';
  return `an instance of ${className(obj)}`;
}

/** `args.items[2].name`-style text for a path. */
export function formatPath(where: string, path: readonly PathStep[]): string {
  let out = where;
  for (const step of path) {
    out +=
      typeof step === 'number'
        ? `[${step}]`
        : /^[A-Za-z_$][\w$]*$/.test(step)
          ? `.${step}`
          : `[${JSON.stringify(step)}]`;
  }
  return out;
}

function notPlain(where: string, path: PathStep[], reason: string): PrevailError {
  const at = formatPath(where, path);
  return new PrevailError(ErrorCodes.NOT_PLAIN_DATA, `${at} ${reason}`, { path: at });
}

function codeUnits(s: string): number[] {
  const out = new Array<number>(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/**
 * Puts the exact values of `patches` back into a freshly decoded (still mutable) value;
 * returns the value (a new one when a patch's path is the root). Throws a TypeError on
 * patches that don't fit the value (a damaged entry or frame: the caller says which).
 */
export function applyPatches(root: unknown, patches: readonly Patch[]): unknown {
  for (const [path, kind, data] of patches) {
    if (path.length === 0) {
      root = exactValue(root, kind, data);
      continue;
    }
    // Patches come off the wire and the disk: a path may only follow values that are there
    // (own properties of plain objects and arrays), never `__proto__` or an inherited one.
    let parent: unknown = root;
    for (let i = 0; i < path.length; i++) {
      if (!isContainer(parent) || !Object.hasOwn(parent, path[i]!))
        throw new TypeError(`patch path ${formatPath('', path)} does not exist`);
      if (i < path.length - 1) parent = (parent as Record<PathStep, unknown>)[path[i]!];
    }
    const holder = parent as Record<PathStep, unknown>;
    const last = path[path.length - 1]!;
    holder[last] = exactValue(holder[last], kind, data);
  }
  return root;
}

function isContainer(v: unknown): v is object {
  if (typeof v !== 'object' || v === null) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === Array.prototype;
}

function exactValue(decoded: unknown, kind: number, data: number[] | undefined): unknown {
  switch (kind) {
    case PatchKind.NEGATIVE_ZERO:
      return -0;
    case PatchKind.UTF16:
      if (!Array.isArray(data)) throw new TypeError('string patch without code units');
      return codeUnitsToString(data);
    case PatchKind.BYTES:
      if (!(decoded instanceof Uint8Array))
        throw new TypeError('bytes patch on a value that is not bytes');
      return new Uint8Array(decoded);
    case PatchKind.BUFFER:
      if (!(decoded instanceof Uint8Array))
        throw new TypeError('buffer patch on a value that is not bytes');
      return Buffer.from(decoded);
    default:
      throw new TypeError(`unknown patch kind ${kind}`);
  }
}

function codeUnitsToString(units: number[]): string {
  let s = '';
  for (let i = 0; i < units.length; i += 4096)
    s += String.fromCharCode(...units.slice(i, i + 4096));
  return s;
}

/**
 * Freezes a stored value at every depth so it can't change behind the log's back. Byte
 * arrays and Dates can't be frozen (V8 refuses to freeze views with elements; a Date's
 * time is internal): they are kept as private copies behind read-only properties that
 * hand out a fresh copy on each read, so changing what a reader got changes nothing.
 * `flatten`, if given, may replace each string (the store flattens long ones).
 */
export function freezeDeep<T>(value: T, flatten?: (s: string) => string): T {
  if (typeof value !== 'object' || value === null || Object.isFrozen(value)) return value;
  // Restore freezes millions of objects: strings are handled inline, objects out of line.
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const v: unknown = value[i];
      if (typeof v === 'object') {
        if (v !== null) freezeChild(value, i, v, flatten);
      } else if (flatten !== undefined && typeof v === 'string') value[i] = flatten(v);
    }
  } else {
    const rec = value as Record<string, unknown>;
    for (const k in rec) {
      const v = rec[k];
      if (typeof v === 'object') {
        if (v !== null) freezeChild(rec, k, v, flatten);
      } else if (flatten !== undefined && typeof v === 'string') {
        const f = flatten(v);
        if (f !== v) rec[k] = f;
      }
    }
  }
  return Object.freeze(value);
}

function freezeChild(
  holder: Record<PathStep, unknown> | unknown[],
  key: PathStep,
  v: object,
  flatten?: (s: string) => string,
): void {
  if (v instanceof Uint8Array || v instanceof Date) {
    if (!Object.getOwnPropertyDescriptor(holder, key)?.get) sealCopy(holder, key, v);
  } else if (!Object.isFrozen(v)) freezeDeep(v, flatten);
  // Frozen by its author, not by us: bytes or Dates in it would stay writable, so it is
  // stored as a copy (a frozen object the store made before has nothing to seal).
  else if (hasUnsealed(v))
    (holder as Record<PathStep, unknown>)[key] = freezeDeep(structuredCopy(v), flatten);
}

function hasUnsealed(v: object): boolean {
  for (const k in v) {
    const d = Object.getOwnPropertyDescriptor(v, k);
    if (!d || d.get) continue;
    const x: unknown = d.value;
    if (x instanceof Uint8Array || x instanceof Date) return true;
    if (typeof x === 'object' && x !== null && hasUnsealed(x)) return true;
  }
  return false;
}

// A mutable copy of a plain value (its byte arrays and Dates copied as themselves).
function structuredCopy(v: object): object {
  if (Array.isArray(v))
    return v.map((x: unknown) => (typeof x === 'object' && x !== null ? copyValue(x) : x));
  const out: Record<string, unknown> = {};
  for (const k in v) {
    const x = (v as Record<string, unknown>)[k];
    out[k] = typeof x === 'object' && x !== null ? copyValue(x) : x;
  }
  return out;
}

function copyValue(x: object): unknown {
  if (x instanceof Date) return new Date(x.getTime());
  if (Buffer.isBuffer(x)) return Buffer.from(x);
  if (x instanceof Uint8Array) return new Uint8Array(x);
  return structuredCopy(x);
}

// A byte array or Date behind a getter that returns a fresh copy (see freezeDeep).
function sealCopy(holder: object, key: PathStep, v: Uint8Array | Date): void {
  let get: () => unknown;
  if (v instanceof Date) {
    const time = v.getTime();
    get = () => new Date(time);
  } else if (Buffer.isBuffer(v)) {
    const bytes = Buffer.from(v);
    get = () => Buffer.from(bytes);
  } else {
    const bytes = new Uint8Array(v);
    get = () => new Uint8Array(bytes);
  }
  Object.defineProperty(holder, key, { get, enumerable: true, configurable: false });
}
