import { type Transport, nodeId } from '@chorus/core';
import { Simulation } from '@chorus/sim';
import { MemoryLevel } from 'memory-level';
import { type ChorusNode, type NodeSettings, startChorusNode } from '../src/index.js';

/** The settings of a simulated node: n1 is the seed, and every cluster is new and empty, so nodes join without streaming. */
export function simSettings(name: string, extra: Partial<NodeSettings> = {}): NodeSettings {
  return {
    name,
    clusterName: 'sim',
    seeds: [nodeId('n1')],
    dc: 'dc1',
    rack: 'rack1',
    numTokens: 16,
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

export interface SimClusterOptions {
  settings?: Partial<NodeSettings>;
  /** Gives each node a hints database, which turns hinted handoff on. */
  hints?: boolean;
  startMicros?: number;
  /** How long one `during` may run the simulation (virtual ms). */
  runLimitMs?: number;
  /** Virtual time between two checks of `settle`. */
  pollMs?: number;
  /** Wraps each node's simulated transport, for tests that rewrite what crosses it. */
  transport?(name: string, transport: Transport): Transport;
  onStarted?(name: string, node: ChorusNode): void;
  onStartFailed?(name: string, error: unknown): void;
}

type Db = MemoryLevel<Uint8Array, Uint8Array>;

/**
 * Real node compositions inside the simulator. Each node keeps its memory-level
 * databases across crashes and restarts, as a disk would: a crash leaves them
 * open, and a restart reuses them.
 */
export async function simCluster(seed: number, names: readonly string[], options: SimClusterOptions = {}) {
  const sim = new Simulation({ seed, ...(options.startMicros === undefined ? {} : { startMicros: options.startMicros }), network: { latencyMs: 2, jitterMs: 3 } });
  const nodes = new Map<string, ChorusNode>();
  const runLimitMs = options.runLimitMs ?? 60_000;
  const pollMs = options.pollMs ?? 250;
  const diskDb = (disk: Map<string, unknown>, name: string): Db => {
    let db = disk.get(name) as Db | undefined;
    if (db === undefined) {
      db = new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' });
      disk.set(name, db);
    }
    return db;
  };
  const boot = (name: string, settings: Partial<NodeSettings>) =>
    sim.addNode(name, async ({ env, transport, disk }) => {
      const db = diskDb(disk, 'db');
      const hintsDb = options.hints ? diskDb(disk, 'hints') : undefined;
      // A clean stop closed them, as a process exit would; the next start opens them again.
      for (const d of [db, hintsDb]) if (d?.status === 'closed') await d.open();
      startChorusNode({ env, transport: options.transport ? options.transport(name, transport) : transport, db, ...(hintsDb ? { hintsDb } : {}), settings: simSettings(name, settings) }).then(
        (node) => {
          nodes.set(name, node);
          options.onStarted?.(name, node);
        },
        (error: unknown) => {
          // Without a handler the failure stays an unhandled rejection, which fails the test run.
          if (!options.onStartFailed) throw error;
          options.onStartFailed(name, error);
        },
      );
    });
  for (const name of names) await boot(name, options.settings ?? {});
  /** Starts one more node into the running cluster, with its own settings on top of the cluster's (a join, with `autoBootstrap`). */
  const add = (name: string, settings: Partial<NodeSettings> = {}) => boot(name, { ...options.settings, ...settings });
  /** Asks inside the simulation are answered only while it runs: run it until the promise settles. */
  const during = async <T>(promise: Promise<T> | T): Promise<T> => {
    let done = false;
    const settled = Promise.resolve(promise).finally(() => (done = true));
    settled.catch(() => {}); // the caller sees the rejection; it must not count as unhandled while the simulation runs
    await sim.run({ stopWhen: () => done, untilMs: sim.now + runLimitMs });
    return settled;
  };
  const settle = async (what: string, check: () => boolean | Promise<boolean>, limitMs = 2 * runLimitMs) => {
    const deadline = sim.now + limitMs;
    while (!(await during(check()))) {
      if (sim.now > deadline) throw new Error(`seed ${seed}: ${what} did not happen within ${limitMs} ms of virtual time`);
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
    nodes.size === names.length && (await Promise.all(names.map(async (o) => (await node(o).status()).nodes.filter((e) => e.state === 'UN').length))).every((n) => n === names.length);
  return { sim, nodes, node, during, settle, allUp, add };
}
