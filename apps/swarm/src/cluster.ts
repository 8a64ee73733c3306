import { nodeId } from '@chorus/core';
import { type ChorusNode, type NodeSettings, startChorusNode } from '@chorus/node';
import { Simulation } from '@chorus/sim';
import { VolatileLevel } from './disk.js';

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
 * `powerLoss` crashes a node and undoes its writes since its last sync (see
 * `VolatileLevel`). `names` are the nodes started now; `add` starts another.
 */
export async function swarmCluster(options: SwarmClusterOptions) {
  const sim = new Simulation({ seed: options.seed, startMicros: options.startMicros, network: { latencyMs: 2, jitterMs: 3 }, ...(options.trace ? { trace: options.trace } : {}) });
  const nodes = new Map<string, ChorusNode>();
  const disks = new Map<string, VolatileLevel[]>();
  const diskDb = (disk: Map<string, unknown>, name: string): VolatileLevel => {
    let db = disk.get(name) as VolatileLevel | undefined;
    if (db === undefined) {
      db = new VolatileLevel().clock(() => sim.now);
      disk.set(name, db);
    }
    return db;
  };
  const members = [...options.names];
  const boot = (name: string, settings: Partial<NodeSettings>) =>
    sim.addNode(name, async ({ env, transport, disk }) => {
      const db = diskDb(disk, 'db');
      const hintsDb = diskDb(disk, 'hints');
      disks.set(name, [db, hintsDb]);
      for (const d of [db, hintsDb]) {
        d.powerOn();
        if (d.status === 'closed') await d.open();
      }
      startChorusNode({ env, transport, db, hintsDb, settings: swarmSettings(name, settings) }).then(
        (node) => {
          nodes.set(name, node);
          options.onStarted(name, node);
        },
        (error: unknown) => options.onStartFailed(name, error),
      );
    });
  for (const name of options.names) await boot(name, options.settings);
  /** Starts one more node into the running cluster (a join, with `autoBootstrap`); it counts as a member from now on. */
  const add = async (name: string, settings: Partial<NodeSettings>) => {
    members.push(name);
    await boot(name, { ...options.settings, ...settings });
  };
  /** The node is gone from the cluster for good (it left, or it is dead and removed): it counts as a member no longer. */
  const forget = (name: string) => {
    const i = members.indexOf(name);
    if (i >= 0) members.splice(i, 1);
  };
  /**
   * The node's machine loses power: it crashes, and both its databases lose
   * every write since their last sync. Returns per database the virtual time
   * of that sync and how many keys went back.
   */
  const powerLoss = (name: string): Array<{ syncedAtMs: number; keys: number }> => {
    sim.crash(name);
    nodes.delete(name);
    return (disks.get(name) ?? []).map((d) => ({ syncedAtMs: d.lastSyncMs, keys: d.powerLoss() }));
  };
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
  /** Every member runs and sees every member UN. */
  const allUp = async (): Promise<boolean> =>
    members.every((m) => nodes.has(m)) &&
    (await Promise.all(members.map(async (o) => (await node(o).status()).nodes.filter((e) => e.state === 'UN').length))).every((n) => n === members.length);
  return { sim, nodes, node, during, settle, allUp, members, add, forget, powerLoss };
}
