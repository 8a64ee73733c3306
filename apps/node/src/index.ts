export { runNode } from './run.js';
export { loadSettings, DEFAULTS, type NodeSettings, type ConfigSources } from './config.js';
export { StartupError, ConfigError } from './errors.js';
export type { RepairRequest, RepairJobState, RepairJobStatus, RepairService } from './repair-api.js';
export { nodeProcessLaunch } from './node-process.js';
export { HEAP_BUDGETS, HEAP_RESERVE_BYTES, derivedBudgets } from './heap.js';
