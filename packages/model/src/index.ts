export { compareBytes, bytesEqual, unfilledBytes, writeBinary } from './bytes.js';
export { type Cell, type ValueCell, type TombstoneCell, isTombstone, isDead, compareCells, mergeCells, cellDigest } from './cell.js';
export {
  type RowAddress,
  type RowWrite,
  type PartitionDelete,
  type Mutation,
  isPartitionDelete,
  mutationBytes,
  validateMutation,
  validateMutationBody,
  validateAddress,
} from './mutation.js';
export {
  LIMITS,
  expiryFromTtl,
  validateKeyspace,
  validateToken,
  validatePartitionKey,
  validateClusteringKey,
  validateValue,
  validateMicros,
} from './limits.js';
export { InvalidKeyspaceName, KeyTooLarge, EmptyPartitionKey, InvalidTimestamp, InvalidTtl, InvalidMutation, ValueTooLarge } from './errors.js';
