export {
  startHints,
  HINTS_ACTOR,
  HINT_DROP_REASONS,
  DEFAULT_MAX_HINT_WINDOW_MS,
  DEFAULT_MAX_HINTS_SIZE_PER_HOST_BYTES,
  DEFAULT_HINTED_HANDOFF_THROTTLE_KIB,
  DEFAULT_HINT_DISPATCH_INTERVAL_MS,
  type HintsOptions,
  type HintsHandle,
  type HintStats,
  type HintTarget,
  type HintDropReason,
  type HandOffResult,
} from './service.js';
export { HintStoreClosed, CorruptHint, HintHandOffFailed, HintHandOffRefused } from './errors.js';
