export { DEFAULT_GC_GRACE_SECONDS } from './store.js';
export type { PointRead, PointReadCallback } from './point-read.js';
export type { StorageDb } from './db.js';
export type { DiskReads } from './inline-reads.js';
export type { StoreSliceOptions, SliceRow, SlicePage } from './slice.js';
export type { TokenRange, ScanEntry, ScanOptions, ScanPosition } from './scan.js';
export { positionOf } from './scan.js';
export { DEFAULT_ROW_CACHE_BYTES, type RowCacheStats } from './row-cache.js';
export { InvalidSlice, StorageClosed } from './errors.js';
export { SYSTEM_KEYSPACE, SCHEMA_PARTITION, SYSTEM_PARTITION_TOKENS, LOCAL, systemRow, type SystemPartition } from './system-keyspace.js';
export {
  spawnStorage,
  write,
  writeMany,
  readCell,
  flush,
  DEFAULT_COMMIT_SYNC,
  DEFAULT_COMMIT_SYNC_PERIOD_MS,
  DEFAULT_SWEEP_INTERVAL_MS,
  DEFAULT_STORAGE_MAILBOX_BYTES,
  DEFAULT_STORAGE_BATCH_BYTES,
  type CommitSyncMode,
  type StorageActorOptions,
  type StorageMsg,
  type WriteOutcomes,
  type StorageHandle,
  type StoreReader,
} from './actor.js';
