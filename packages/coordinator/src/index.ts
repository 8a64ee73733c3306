export {
  spawnCoordinator,
  COORDINATOR_ACTOR,
  DEFAULT_WRITE_TIMEOUT_MS,
  DEFAULT_READ_TIMEOUT_MS,
  DEFAULT_SPECULATIVE_DELAY_MS,
  DEFAULT_MAX_IN_FLIGHT,
  type CoordinatorHandle,
  type CoordinatorOptions,
  type CoordinatorTopology,
  type CoordinatorStats,
  type CoordinatorMsg,
  type OpStats,
  type Key,
  type WriteOptions,
  type ReadOptions,
  type SliceOptions,
  type SliceResult,
  type Row,
  type ReadMismatch,
} from './coordinator.js';
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
export { HybridLogicalClock, SkewTracker, DEFAULT_MAX_CLOCK_SKEW_MS, type PeerSkew, type RoundTripSample, type SkewTrackerOptions } from './hlc.js';
export { resolveCells, digestsAgree, staleReplicas, mergeSlicePages, type ReplicaPage, type MergedPage } from './resolve.js';
export { sortByProximity, type Proximity } from './snitch.js';
export { LatencyWindow, PeerLatencies, LatencyHistogram } from './latency.js';
export { REPLICA_ACTOR, REPLICA_SKEW_FACTOR, SLICE_ANSWER_BUDGET_BYTES, spawnReplica, type ReplicaMsg, type ReplicaOptions } from './replica.js';
export { Unavailable, WriteTimeout, ReadTimeout, ClockSkewed, RequestFailed, type WriteType } from './errors.js';
