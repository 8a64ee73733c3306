export { startIdealNode, type IdealNode, type IdealNodeOptions } from './ideal-node.js';
export { startIdealCluster, type IdealCluster } from './ideal-cluster.js';
export { type Target, chorusTarget, idealTarget, echoTarget } from './targets.js';
export { closedLoop, openLoop, type LoadResult, type NextOp } from './load.js';
export { watch, cpuSeconds, residentMiB, samplePeakRss, nodeReadings, type NodeReadings, type ProcessUsage, type Watched } from './procs.js';
export { freePorts } from './ports.js';
export { WORKLOADS, DESCRIPTIONS, runWorkload, newSystem, type WorkloadName, type WorkloadReport, type RunContext, type System } from './workloads.js';
export { formatTable, tableRow } from './report.js';
