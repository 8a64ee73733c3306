export { resolveCells, digestsAgree, staleReplicas } from './resolve.js';
export { repairMutations, type RepairMutation } from './repair.js';
