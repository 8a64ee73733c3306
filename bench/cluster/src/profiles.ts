import { existsSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Watched } from './procs.js';

/** How long a node may take to write a profile once told to stop. */
const WRITE_TIMEOUT_MS = 30_000;

/**
 * The CPU profiles of the Chorus nodes' measured seconds (`--cpu-prof DIR`): each node runs with
 * `profile-on-signal.js` loaded, and a measured phase starts and stops its profiler with SIGUSR2. The profiles
 * are named `<nn>-<workload>-<system>.<node>.cpuprofile`, `nn` counting the measured phases of the run.
 */
export class MeasuredProfiles {
  private readonly stopsByPid = new Map<number, number>();
  private phases = 0;

  constructor(readonly dir: string) {}

  start(nodes: readonly Watched[]): void {
    for (const node of nodes) process.kill(node.pid, 'SIGUSR2');
  }

  async stop(nodes: readonly Watched[], label: string): Promise<void> {
    const phase = String(++this.phases).padStart(2, '0');
    const name = label.replace(/[^a-z0-9-]+/gi, '-');
    await Promise.all(
      nodes.map(async (node) => {
        process.kill(node.pid, 'SIGUSR2');
        const stops = (this.stopsByPid.get(node.pid) ?? 0) + 1;
        this.stopsByPid.set(node.pid, stops);
        const written = join(this.dir, `${node.pid}-${stops}.cpuprofile`);
        for (let waited = 0; !existsSync(written); waited += 100) {
          if (waited >= WRITE_TIMEOUT_MS) throw new Error(`${node.name} wrote no CPU profile within ${WRITE_TIMEOUT_MS / 1000} s`);
          await sleep(100);
        }
        renameSync(written, join(this.dir, `${phase}-${name}.${node.name}.cpuprofile`));
      }),
    );
  }
}
