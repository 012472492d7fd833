// Loads @peculiar/x509 (certificate encoding and signing over WebCrypto) on first use only: the
// cluster transport reads certificates through lib/certs/files.ts without paying for it.
//
// Its dependency injection container (tsyringe) refuses to load unless a Reflect metadata
// polyfill is installed, and its decorators read metadata once, while the module loads. Rather
// than install `reflect-metadata` for the whole process, a stub that reports "no metadata" is
// put on Reflect for that one synchronous require and taken off again (left alone when the
// application has its own polyfill). x509's classes take no constructor arguments, so "no
// metadata" is the truth for them.
import { createRequire } from 'node:module';

import type * as X509 from '@peculiar/x509';

const require = createRequire(import.meta.url);

let loaded: typeof X509 | undefined;

export type X509Module = typeof X509;

/**
 * @peculiar/x509, loaded once. Its default crypto provider is left as it is (an application may
 * use the library too): every call here hands it Node's WebCrypto explicitly.
 */
export function x509(): X509Module {
  loaded ??= withMetadataStub(() => require('@peculiar/x509') as X509Module);
  return loaded;
}

function withMetadataStub<T>(load: () => T): T {
  const reflect = Reflect as unknown as Record<string, unknown>;
  if (typeof reflect.getMetadata === 'function') return load();
  const stub: Record<string, unknown> = {
    getMetadata: () => undefined,
    getOwnMetadata: () => undefined,
    defineMetadata: () => undefined,
  };
  Object.assign(reflect, stub);
  try {
    return load();
  } finally {
    for (const name of Object.keys(stub)) delete reflect[name];
  }
}
