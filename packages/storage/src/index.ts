export {
  Store,
  DEFAULT_GC_GRACE_SECONDS,
  validateMutation,
  isPartitionDelete,
  type StorageDb,
  type StoreOptions,
  type RowAddress,
  type RowWrite,
  type PartitionDelete,
  type Mutation,
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
export { type Cell, type ValueCell, type TombstoneCell, isTombstone, isDead, compareCells, mergeCells, cellDigest } from './cell.js';
export { LIMITS, expiryFromTtl } from './limits.js';
export { encodeToken, decodeToken, rowKeyPrefix, partitionDeletionKeyPrefix, compareBytes } from './keys.js';
export {
  InvalidKeyspaceName,
  KeyTooLarge,
  EmptyPartitionKey,
  InvalidTimestamp,
  InvalidTtl,
  InvalidMutation,
  InvalidSlice,
  ValueTooLarge,
  StorageClosed,
} from './errors.js';
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
  type WriteAck,
} from './actor.js';
