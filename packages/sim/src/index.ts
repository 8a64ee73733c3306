export { Simulation, type SimulationOptions, type SimNodeContext, type Boot } from './simulation.js';
export { EventQueue, type RunOptions, type Owner } from './scheduler.js';
export { MemoryNetwork, type LinkFaults, type NetworkStats, PERFECT_LINK } from './network.js';
export { SeededRandom, hashString } from '@chorus/core';
export { runScenario, scenarios, type ScenarioResult } from './scenarios.js';
