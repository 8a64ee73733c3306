export { spawnCoordinator, COORDINATOR_ACTOR, DEFAULT_WRITE_TIMEOUT_MS, DEFAULT_READ_TIMEOUT_MS, DEFAULT_SPECULATIVE_DELAY_MS, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_IN_FLIGHT_BYTES, DEFAULT_MAX_BACKGROUND_WRITES, type CoordinatorMsg } from './actor.js';
export type {
  CoordinatorHandle,
  CoordinatorOptions,
  CoordinatorTopology,
  CoordinatorMembership,
  CoordinatorStats,
  LocalReplicaReader,
  OpStats,
  Key,
  WriteOptions,
  ReadOptions,
  RowReadOptions,
  SliceFloor,
  SliceRequest,
  SliceResponse,
  SliceResponseRow,
  ReadRepairEvent,
} from './types.js';
export {
  CONSISTENCY_LEVELS,
  DEFAULT_CONSISTENCY,
  type ConsistencyLevel,
  parseConsistency,
  blockFor,
  eachQuorumBlockFor,
  quorumOf,
  isDatacenterLocal,
  validateForRead,
} from './levels.js';
export { type ReplicaPlan, type Scope, type PlanInput, planRead, planWrite, countsToward, countAnswers, isSatisfied } from './plan.js';
export { mergeSlicePages, type ReplicaPage, type MergedPage, type PageRow } from './slice-merge.js';
export { DEFAULT_BADNESS_THRESHOLD, sortByProximity, type Proximity } from './snitch.js';
export { LatencyWindow, PeerLatencies, LatencyHistogram } from './latency.js';
export { Unavailable, WriteTimeout, ReadTimeout, SessionFloorNotMet, ClockSkewed, RequestFailed, SchemaDisagreement, type WriteType } from './errors.js';
