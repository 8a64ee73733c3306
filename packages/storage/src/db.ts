import type { AbstractLevel } from 'abstract-level';

/**
 * Any abstract-level database: ClassicLevel (`level`) in production,
 * MemoryLevel in tests and the simulator. The store passes binary encodings
 * on every call, so the database's own default encodings do not matter.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type StorageDb = AbstractLevel<any, any, any>;

export type DbIterator = ReturnType<StorageDb['iterator']>;

/** One key and value as an iterator's `nextv` gives them. */
export type Entry = [Uint8Array, Uint8Array];

export const ENC = { keyEncoding: 'view', valueEncoding: 'view' } as const;
export const SYNC = { ...ENC, sync: true } as const;
export const NO_SYNC = { ...ENC, sync: false } as const;
export const EMPTY = new Uint8Array(0);
export const RESOLVED: Promise<void> = Promise.resolve();

/** Per-operation encodings for chained batches; undefined when the database's defaults already are binary views. */
export function opOptionsOf(db: StorageDb): typeof ENC | undefined {
  const kenc = (db.keyEncoding as () => { name?: string })();
  const venc = (db.valueEncoding as () => { name?: string })();
  return kenc?.name === 'view' && venc?.name === 'view' ? undefined : ENC;
}
