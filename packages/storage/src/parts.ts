import type { Env, Token } from '@chorus/core';
import type { GroupCommit } from './commit.js';
import type { CompactionQueue } from './compaction.js';
import type { StorageDb } from './db.js';
import type { Heads } from './heads.js';
import type { InlineReads } from './inline-reads.js';
import type { KeyspacePrefixes } from './keyspaces.js';
import type { RowCache } from './row-cache.js';

/** What a store is made of: the read, scan and gc functions work over these, and `Store` composes them. */
export interface StoreParts {
  readonly db: StorageDb;
  readonly env: Env;
  /** How long tombstones and expired cells are kept before gc may purge them. */
  readonly gcGraceMicros: number;
  /** Per keyspace and token, what gc may purge (see `StoreOptions.purgeHorizon`); without it, now − grace. */
  readonly purgeHorizon?: (keyspace: string, t: Token) => number;
  readonly keyspaces: KeyspacePrefixes;
  readonly commits: GroupCommit;
  readonly compactions: CompactionQueue;
  /** Reconciled rows for point reads; kept exact by every landed batch and purge (see row-cache.ts). */
  readonly cache: RowCache;
  /** Copies of key-value rows' newest versions, for point reads (see heads.ts). */
  readonly heads: Heads;
  /** Reads the heads of a batch on this thread, when the store was asked to (see inline-reads.ts). */
  readonly inlineReads?: InlineReads;
}
