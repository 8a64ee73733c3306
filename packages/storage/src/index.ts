export {
  Store,
  DEFAULT_GC_GRACE_SECONDS,
  type StorageDb,
  type StoreOptions,
  type ApplyOutcome,
  type SliceOptions,
  type SliceRow,
  type SlicePage,
  type TokenRange,
  type ScanEntry,
  type ScanOptions,
  type SweepCursor,
  type SweepResult,
} from './store.js';
export { DEFAULT_ROW_CACHE_BYTES, type RowCacheStats } from './row-cache.js';
export { encodeToken, decodeToken, rowKeyPrefix, partitionDeletionKeyPrefix } from './keys.js';
export { InvalidSlice, StorageClosed } from './errors.js';
export {
  spawnStorage,
  write,
  readCell,
  flush,
  DEFAULT_COMMIT_SYNC,
  DEFAULT_COMMIT_SYNC_PERIOD_MS,
  DEFAULT_SWEEP_INTERVAL_MS,
  type CommitSyncMode,
  type StorageActorOptions,
  type StorageMsg,
  type StorageHandle,
  type StoreReader,
  type WriteAck,
} from './actor.js';
