export { startChorusNode, DEFAULT_KEYSPACE, type ChorusNode, type NodeSettings, type MemoryBudgets, type StartNodeOptions, type NodeCounters, type KeyspaceView } from './node.js';
export { type StatusEntry, type RingEntry, type HintsEntry, statusView, hintsView, ringEntries, ringOf, stateOf } from './views.js';
export { GenerationNotIncreasing } from './errors.js';
export { SYSTEM_KEYSPACE } from '@chorus/storage';
export { TopologyChangeInProgress, DecommissionRefused, RemoveNodeRefused, UnknownHostId, NodeRemoved } from './errors.js';
export { BOOTSTRAP_SETTLE_ROUNDS } from './bootstrap.js';
