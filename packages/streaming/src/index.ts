export { type RangeTask, type RangeChange, rangeChanges, rangesToFetch, rangesToHandOver } from './plan.js';
export { RangeMovement, Movements, DEFAULT_STREAM_THROUGHPUT_BYTES_PER_SEC, type MovementKind, type MovementState, type MovementStatus, type MovementContext } from './movement.js';
export { StreamFailed, NoLiveSource, MovementInProgress } from './errors.js';

