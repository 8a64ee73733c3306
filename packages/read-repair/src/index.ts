export { resolveCells, digestsAgree, staleReplicas } from './resolve.js';
export { repairMutations, type RepairMutation } from './repair.js';
export { sliceRepairs, type SliceAnswer, type SliceScope, type ReplicaRepair } from './slice.js';
