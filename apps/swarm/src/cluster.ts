import { nodeId } from '@chorus/core';
import { type ChorusNode, type NodeSettings, startChorusNode } from '@chorus/node';
import { Simulation } from '@chorus/sim';
import { MemoryLevel } from 'memory-level';

type Db = MemoryLevel<Uint8Array, Uint8Array>;

/** Settings every swarm node runs with: n1 is the seed, and the cluster is new and empty, so nodes join without streaming. */
export function swarmSettings(name: string, extra: Partial<NodeSettings> = {}): NodeSettings {
  return {
    name,
    clusterName: 'swarm',
    seeds: [nodeId('n1')],
    dc: 'dc1',
    rack: 'rack1',
    numTokens: 4,
    initialTokens: [],
    phiConvictThreshold: 8,
    gossipIntervalMs: 1_000,
    writeTimeoutMs: 2_000,
    readTimeoutMs: 2_000,
    commitSync: 'none',
    commitSyncPeriodMs: 10_000,
    gcGraceSeconds: 864_000,
    maxClockSkewMs: 1_000,
    autoBootstrap: false,
    ...extra,
  };
}

export interface SwarmClusterOptions {
  seed: number;
  names: readonly string[];
  settings: Partial<NodeSettings>;
  startMicros: number;
  trace?: (line: string) => void;
  onStarted(name: string, node: ChorusNode): void;
  onStartFailed(name: string, error: unknown): void;
}

/**
 * Whole nodes, exactly as the server composes them, inside one simulation.
 * Each keeps its memory-level data and hints databases across crashes and
 * restarts, as a disk would: a crash leaves them open, a restart reuses them.
 */
export async function swarmCluster(options: SwarmClusterOptions) {
  const sim = new Simulation({ seed: options.seed, startMicros: options.startMicros, network: { latencyMs: 2, jitterMs: 3 }, ...(options.trace ? { trace: options.trace } : {}) });
  const nodes = new Map<string, ChorusNode>();
  const diskDb = (disk: Map<string, unknown>, name: string): Db => {
    let db = disk.get(name) as Db | undefined;
    if (db === undefined) {
      db = new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' });
      disk.set(name, db);
    }
    return db;
  };
  for (const name of options.names) {
    await sim.addNode(name, async ({ env, transport, disk }) => {
      const db = diskDb(disk, 'db');
      const hintsDb = diskDb(disk, 'hints');
      for (const d of [db, hintsDb]) if (d.status === 'closed') await d.open();
      startChorusNode({ env, transport, db, hintsDb, settings: swarmSettings(name, options.settings) }).then(
        (node) => {
          nodes.set(name, node);
          options.onStarted(name, node);
        },
        (error: unknown) => options.onStartFailed(name, error),
      );
    });
  }
  /** Runs the simulation until the promise settles (asks inside it are answered only while it runs). */
  const during = async <T>(promise: Promise<T> | T, limitMs = 120_000): Promise<T> => {
    let done = false;
    const settled = Promise.resolve(promise).finally(() => (done = true));
    settled.catch(() => {}); // the caller sees the rejection
    await sim.run({ stopWhen: () => done, untilMs: sim.now + limitMs });
    if (!done) throw new Error(`no answer within ${limitMs} ms of virtual time`);
    return settled;
  };
  /** Polls `check` every `pollMs` of virtual time until it holds; false when `limitMs` passed first. */
  const settle = async (check: () => boolean | Promise<boolean>, limitMs: number, pollMs = 250): Promise<boolean> => {
    const deadline = sim.now + limitMs;
    for (;;) {
      if (await during(check())) return true;
      if (sim.now > deadline) return false;
      await sim.runFor(pollMs);
    }
  };
  const node = (name: string): ChorusNode => {
    const n = nodes.get(name);
    if (!n) throw new Error(`${name} is not running`);
    return n;
  };
  /** Every node runs and sees every node UN. */
  const allUp = async (): Promise<boolean> =>
    nodes.size === options.names.length &&
    (await Promise.all(options.names.map(async (o) => (await node(o).status()).nodes.filter((e) => e.state === 'UN').length))).every((n) => n === options.names.length);
  return { sim, nodes, node, during, settle, allUp };
}
