export {
  startAntiEntropy,
  repairedAtRange,
  DEFAULT_REPAIR_THROTTLE_BYTES_PER_SEC,
  DEFAULT_REPAIR_MAX_SESSIONS,
  DEFAULT_REPAIR_HISTORY_SIZE,
  MAX_RUNNING_JOBS,
  MAX_PARALLEL,
  type AntiEntropyOptions,
  type AntiEntropyHandle,
  type RepairService,
  type RepairRequest,
  type RepairJobStatus,
  type RepairJobState,
  type RepairFailure,
} from './service.js';
export { RepairHistory, type RepairedRange } from './history.js';
export { MAX_TREE_DEPTH, ROWS_PER_LEAF } from './merkle.js';
export { VALIDATOR_ACTOR } from './validator.js';
export { RepairSessionFailed, ReplicaDown, UnknownRepairSession, RepairCancelled, TooManyRepairJobs, RepairStopped } from './errors.js';
