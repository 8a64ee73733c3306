export { murmur3Hash64, tokenOf } from './murmur3.js';
export {
  type ReplicationSpec,
  type KeyspaceDef,
  type ReadRepairMode,
  DEFAULT_READ_REPAIR,
  type TombstoneGcMode,
  DEFAULT_TOMBSTONE_GC,
  parseReplication,
  parseReadRepair,
  parseTombstoneGc,
  readRepairOf,
  tombstoneGcOf,
  validateKeyspace,
  replicationKey,
  totalReplicationFactor,
} from './replication.js';
export {
  type MemberStatus,
  type RingMember,
  type TokenRange,
  type ReplicatedRange,
  type ReplicationShortfall,
  RingView,
  rangeContains,
  rangeWidth,
  rangeFraction,
  ownershipRatio,
  replicationShortfalls,
} from './ring.js';
export { type JoiningNode, allocateTokens, randomTokens } from './allocate.js';
export { TokenConflict, DuplicateMember } from './errors.js';
