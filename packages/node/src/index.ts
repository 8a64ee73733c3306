export { startChorusNode, BootstrapUnsupported, DEFAULT_KEYSPACE, type ChorusNode, type NodeSettings, type StartNodeOptions, type NodeCounters } from './node.js';
export { type StatusEntry, type RingEntry, statusView, ringEntries, ringOf, stateOf } from './views.js';
