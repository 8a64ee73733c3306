export function isAlive(pid: number): boolean;
export function runsIn(pid: number, dir: string): boolean;
export function nodePidsUnder(dir: string): number[];
export function killNodesUnder(dir: string): number[];
export function waitGone(pids: number[], dir: string, timeoutMs: number): Promise<boolean>;
