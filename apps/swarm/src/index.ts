export { runSwarmSeed, type SwarmOptions, type SwarmResult, type SwarmViolation, type ScenarioChecker } from './scenario.js';
export { runSwarm, type SwarmRunOptions, type SwarmSummary, replayCommand } from './swarm.js';
