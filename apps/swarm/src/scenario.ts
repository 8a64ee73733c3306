import { SeededRandom, isChorusError, nodeId } from '@chorus/core';
import { type Checker, type Crash, type KeyOnReplicas, type LostBatch, type ReadRecord, type RingChange, type SliceRecord, type Violation, type WriteRecord, convergenceViolations, readViolations, rowKey, sliceViolations, writesLostWithNode } from '@chorus/history';
import type { Cell } from '@chorus/model';
import { type ChorusNode, ringOf } from '@chorus/node';
import { type RingView, tokenOf } from '@chorus/ring';
import { swarmCluster } from './cluster.js';

/**
 * One seed of the swarm. Everything is drawn from the seed: the cluster
 * (3 to 5 whole nodes, keyspace `default` at rf 3, hints on, commit_sync
 * `periodic` or `batch`), each node's clock offset, a fault plan, maybe a
 * topology change (a node joins, one decommissions, or a dead one is
 * removed), and a workload. The workload runs while the faults fire and
 * the topology changes; then the faults stop, every node runs again, hints
 * drain and each node repairs its primary ranges; then the checkers judge
 * the history and what every replica of the final ring holds.
 */

const START_MICROS = 1_767_225_600_000_000;
const KEYSPACE = 'default';
const REPLICATION = { class: 'SimpleStrategy', rf: 3 } as const;
const TIMEOUT_MS = 2_000;
const MAX_CLOCK_SKEW_MS = 1_000;
/** Offsets stay within ±this, so any two clocks differ by less than max_clock_skew. */
const MAX_OFFSET_MS = 400;
/** Far beyond a coordinator's timeout plus its ask margin: an operation still open then hangs. */
const HANG_MS = 60_000;
const WRITE_LEVELS = ['ONE', 'TWO', 'THREE', 'QUORUM', 'ALL', 'ANY', 'LOCAL_ONE', 'LOCAL_QUORUM', 'EACH_QUORUM'] as const;
const READ_LEVELS = ['ONE', 'TWO', 'QUORUM', 'QUORUM', 'QUORUM', 'LOCAL_QUORUM', 'ALL', 'LOCAL_ONE'] as const;
const EXPECTED_ERRORS = new Set(['Unavailable', 'WriteTimeout', 'ReadTimeout']);
const CLUSTERING = ['c0', 'c1', 'c2', 'c3'];

/** What a run found beyond the history checkers: the scenario's own broken expectations. */
export type ScenarioChecker = Checker | 'unexpected-error' | 'operation-hung' | 'node-start-failed' | 'not-converged' | 'repair-failed' | 'movement-failed' | 'scenario-error';

/** The range movements a seed may draw; one per run at most (overlapping movements are refused by design). */
export type TopologyChange = 'join' | 'decommission' | 'removenode';

export interface SwarmViolation {
  checker: ScenarioChecker;
  message: string;
}

export interface SwarmOptions {
  /** Client operations in the run (default 120). */
  ops?: number;
  /** Receives every event of the simulation, in order. */
  trace?: (line: string) => void;
}

/** Per movement attempt, how long the swarm lets a refused or failed one rest before the operator tries again. */
const MOVEMENT_RETRY_MS = 3_000;
/** Attempts of one movement before the operator leaves it (the ring then stays as it was). */
const MOVEMENT_ATTEMPTS = 30;
/** How long after a movement was seen done a coordinator may still place requests by the old ring. */
const RING_SETTLE_MS = 10_000;

export interface SwarmResult {
  seed: number;
  nodes: number;
  /** The nodes' commit_sync, and the topology change drawn (if any). */
  commitSync: 'periodic' | 'batch';
  topology?: TopologyChange;
  violations: SwarmViolation[];
  /** How often each kind of fault fired. */
  faults: Record<string, number>;
  /** The fault plan as it fired, one line each. */
  faultLog: string[];
  figures: Record<string, number>;
  events: number;
  virtualMs: number;
  traceHash: string;
}

type Attempt<T> = { kind: 'ok'; value: T } | { kind: 'error'; error: unknown } | { kind: 'unknown' } | { kind: 'hung' };

/** Runs one seed to the end; a thrown error inside becomes a `scenario-error` violation, never an exception. */
export async function runSwarmSeed(seed: number, options: SwarmOptions = {}): Promise<SwarmResult> {
  const run = new SwarmRun(seed, options);
  try {
    await run.execute();
  } catch (error) {
    run.violation('scenario-error', error instanceof Error ? (error.stack ?? error.message) : String(error));
  }
  return run.result();
}

class SwarmRun {
  private readonly rnd: SeededRandom;
  private readonly names: string[];
  private readonly violations: SwarmViolation[] = [];
  private readonly faults: Record<string, number> = {};
  private readonly faultLog: string[] = [];
  private readonly writes: WriteRecord[] = [];
  private readonly reads: ReadRecord[] = [];
  private readonly slices: SliceRecord[] = [];
  private readonly crashes: Crash[] = [];
  /** Power failures of the one node whose crashes may lose its unsynced batch. */
  private readonly lostBatches: LostBatch[] = [];
  private readonly incarnations: ChorusNode[] = [];
  private readonly commitSync: 'periodic' | 'batch';
  private readonly commitSyncPeriodMs: number;
  /** The node whose crashes may lose its last unsynced batch (one node per run: each write acknowledged by two replicas then keeps one disk). */
  private readonly powerVictim: string | undefined;
  private readonly topology: TopologyChange | undefined;
  /** Nodes gone for good: dead and being removed, removed, or left. Faults and restarts pass them by. */
  private readonly gone = new Set<string>();
  /** A node joining: no crash while it streams (a restart mid-bootstrap re-bootstraps with new tokens, a known limit). */
  private joining: string | undefined;
  /** A node decommissioning: once its peers hold its LEFT, its decommission returns and it stops, and its coordinator refuses with ActorStopped. */
  private leaving: string | undefined;
  /** The leaving node was refused a restart: it had announced LEFT before it crashed. */
  private leftWhileDown = false;
  private movementActive = false;
  private movement: Promise<void> = Promise.resolve();
  /** Rings seen before a movement: a node that was a replica of a key there may keep a stale copy (there is no cleanup). */
  private readonly rings: RingView[] = [];
  /** When the natural replicas changed (see RingChange in @chorus/history). */
  private readonly ringChanges: RingChange[] = [];
  /** A node removed with removenode, and when it died: its disk is gone with it. */
  private removed: { node: string; atMs: number } | undefined;
  /** Per node, the settle-as-unknown hooks of the operations it coordinates: its crash fires them. */
  private readonly inFlight = new Map<string, Set<() => void>>();
  private readonly skewMs = new Map<string, number>();
  private cluster!: Awaited<ReturnType<typeof swarmCluster>>;
  private seq = 0;
  private ids = 0;
  private figures: Record<string, number> = {};

  constructor(
    readonly seed: number,
    private readonly options: SwarmOptions,
  ) {
    this.rnd = new SeededRandom(seed, 'swarm');
    this.names = Array.from({ length: 3 + this.rnd.int(3) }, (_, i) => `n${i + 1}`);
    for (const n of this.names) this.inFlight.set(n, new Set());
    // Forks of their own, so that each draw leaves the others' sequences as they were.
    const disk = this.rnd.fork('disk');
    this.commitSync = disk.next() < 0.35 ? 'batch' : 'periodic';
    this.commitSyncPeriodMs = 1_000 + disk.int(9_000);
    const lossy = disk.next() < 0.5;
    const t = this.rnd.fork('topology').next();
    const n = this.names.length;
    this.topology = t < 0.18 ? 'join' : t < 0.32 && n >= 4 ? 'decommission' : t < 0.46 && n >= 4 && !lossy ? 'removenode' : undefined;
    // A removed node's disk is gone too: with a lost batch besides, a write both had acknowledged could be lost, so never both.
    this.powerVictim = lossy && this.topology !== 'removenode' ? this.names[disk.int(n)] : undefined;
  }

  private hooksOf(name: string): Set<() => void> {
    let hooks = this.inFlight.get(name);
    if (hooks === undefined) this.inFlight.set(name, (hooks = new Set()));
    return hooks;
  }

  violation(checker: ScenarioChecker, message: string): void {
    this.violations.push({ checker, message });
  }

  private fired(kind: string, line: string): void {
    this.faults[kind] = (this.faults[kind] ?? 0) + 1;
    this.faultLog.push(`${this.cluster.sim.now.toFixed(0)} ms: ${line}`);
    this.cluster.sim.queue.note(`fault ${line}`);
  }

  result(): SwarmResult {
    const sim = this.cluster?.sim;
    const net = sim?.network.stats();
    return {
      seed: this.seed,
      nodes: this.names.length,
      commitSync: this.commitSync,
      ...(this.topology === undefined ? {} : { topology: this.topology }),
      violations: this.violations,
      faults: { ...this.faults, framesDropped: net?.dropped ?? 0, framesDuplicated: net?.duplicated ?? 0 },
      faultLog: this.faultLog,
      figures: this.figures,
      events: sim?.queue.eventsExecuted ?? 0,
      virtualMs: sim?.now ?? 0,
      traceHash: sim?.traceHash() ?? '',
    };
  }

  async execute(): Promise<void> {
    this.cluster = await swarmCluster({
      seed: this.seed,
      names: this.names,
      settings: { writeTimeoutMs: TIMEOUT_MS, readTimeoutMs: TIMEOUT_MS, maxClockSkewMs: MAX_CLOCK_SKEW_MS, commitSync: this.commitSync, commitSyncPeriodMs: this.commitSyncPeriodMs },
      startMicros: START_MICROS,
      ...(this.options.trace ? { trace: this.options.trace } : {}),
      onStarted: (_name, n) => this.incarnations.push(n),
      onStartFailed: (name, error) => {
        // A decommission that announced LEFT and crashed before it returned has left: the restart is refused, rightly.
        if (name === this.leaving && isChorusError(error) && error.name === 'NodeRemoved') this.leftWhileDown = true;
        else this.violation('node-start-failed', `${name}: ${error instanceof Error ? error.message : String(error)}`);
      },
    });
    const { sim, during, settle, allUp, node } = this.cluster;
    if (!(await settle(allUp, 120_000))) throw new Error('the cluster did not come up');
    await during(node('n1').putKeyspace(KEYSPACE, REPLICATION));
    if (!(await settle(async () => (await Promise.all(this.names.map((n) => node(n).keyspaces()))).every((k) => k.keyspaces.some((x) => x.name === KEYSPACE)), 60_000))) {
      throw new Error('the keyspace did not reach every node');
    }

    // Clock offsets from the start, within max_clock_skew of each other.
    for (const n of this.names) this.setSkew(n, this.rnd.fork(`clock ${n}`).int(2 * MAX_OFFSET_MS + 1) - MAX_OFFSET_MS);

    let workloadDone = false;
    const faultsUntil = this.planFaults(() => workloadDone);
    if (this.topology !== undefined) {
      this.movementActive = true;
      this.movement = this.changeTopology(this.topology).finally(() => (this.movementActive = false));
      this.movement.catch((error: unknown) => this.violation('scenario-error', `the topology change failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`));
    }
    const ops = this.options.ops ?? 120;
    const clients = 3 + this.rnd.int(4);
    const keys = 4 + this.rnd.int(12);
    const partitions = 1 + this.rnd.int(3);
    const workload = Promise.all(Array.from({ length: clients }, (_, i) => this.client(i, Math.ceil(ops / clients), keys, partitions))).finally(() => (workloadDone = true));
    await sim.run({ stopWhen: () => workloadDone, untilMs: sim.now + 3_600_000 });
    if (!workloadDone) throw new Error('the workload did not finish within an hour of virtual time');
    await workload;
    // Faults still planned run their course (restarts included) before convergence starts.
    await sim.run({ untilMs: Math.max(sim.now, faultsUntil()) });
    await this.converge(keys, partitions);
  }

  private setSkew(name: string, ms: number): void {
    this.skewMs.set(name, ms);
    this.cluster.sim.setClockSkew(name, ms * 1000);
  }

  // ---- faults ----------------------------------------------------------------

  /** The node's process dies; with `power`, its machine loses power too, and its disks the writes since their last sync. */
  private crash(name: string, power = false): void {
    const { sim, nodes } = this.cluster;
    if (!sim.isUp(name)) return;
    if (power) {
      const disks = this.cluster.powerLoss(name);
      const lost = { node: name, atMs: sim.now, syncedAtMs: Math.min(...disks.map((d) => d.syncedAtMs)) };
      this.lostBatches.push(lost);
      this.figures.keysUnsynced = (this.figures.keysUnsynced ?? 0) + disks.reduce((k, d) => k + d.keys, 0);
    } else {
      sim.crash(name);
      nodes.delete(name);
    }
    this.crashes.push({ node: name, atMs: sim.now });
    for (const settleUnknown of [...this.hooksOf(name)]) settleUnknown();
  }

  private async restart(name: string): Promise<void> {
    if (this.cluster.sim.isUp(name) || this.gone.has(name)) return;
    await this.cluster.sim.restart(name);
  }

  /** Members that are not gone for good: what faults and clients choose from. */
  private live(): string[] {
    return this.cluster.members.filter((n) => !this.gone.has(n));
  }

  /**
   * Draws the fault plan and schedules it. Faults start while the workload
   * runs; each ends by itself. Returns when the last one will have ended.
   */
  private planFaults(workloadDone: () => boolean): () => number {
    const { sim } = this.cluster;
    const r = this.rnd.fork('faults');
    const power = this.rnd.fork('power');
    const pick = () => {
      const names = this.live();
      return names[r.int(names.length)]!;
    };
    const other = (a: string) => {
      const names = this.live().filter((x) => x !== a);
      return names[r.int(names.length)]!;
    };
    // A joining node does not crash (a restart mid-bootstrap takes new tokens); a node gone for good never comes back.
    const crashable = (n: string) => sim.isUp(n) && n !== this.joining && !this.gone.has(n);
    const powerFails = (n: string) => n === this.powerVictim && power.next() < 0.7;
    // In runs that may lose a batch, crashes go to the node that may lose it more often than their share.
    const crashVictim = () => {
      const v = pick();
      return this.powerVictim !== undefined && power.next() < 0.6 && this.live().includes(this.powerVictim) ? this.powerVictim : v;
    };
    let lastEnd = sim.now;
    const until = (t: number) => (lastEnd = Math.max(lastEnd, t));

    // Link faults compose: each active one is an entry, and every link is recomputed from all of them.
    type LinkFault = { links: Set<string> | 'all'; loss?: number; latencyMs?: number; duplicate?: number; reorder?: number };
    const active = new Set<LinkFault>();
    const apply = () => {
      const names = sim.nodeIds() as string[];
      for (const a of names) {
        for (const b of names) {
          if (a === b) continue;
          const link = `${a}>${b}`;
          let loss = 0;
          let latencyMs = 2;
          let duplicate = 0;
          let reorder = 0;
          for (const f of active) {
            if (f.links !== 'all' && !f.links.has(link)) continue;
            loss = Math.max(loss, f.loss ?? 0);
            latencyMs = Math.max(latencyMs, f.latencyMs ?? 0);
            duplicate = Math.max(duplicate, f.duplicate ?? 0);
            reorder = Math.max(reorder, f.reorder ?? 0);
          }
          sim.network.setLink(nodeId(a), nodeId(b), { loss, latencyMs, duplicate, reorder });
        }
      }
    };
    const linkFault = (f: LinkFault, lastsMs: number) => {
      active.add(f);
      apply();
      until(sim.now + lastsMs);
      sim.at(sim.now + lastsMs, 'link fault ends', () => {
        active.delete(f);
        apply();
      });
    };
    let partitioned = false;
    const split = (): [string[], string[]] => {
      const names = this.live();
      const shuffled = [...names];
      for (let i = shuffled.length - 1; i > 0; i--) {
        const j = r.int(i + 1);
        [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
      }
      const cut = 1 + r.int(names.length - 1);
      return [shuffled.slice(0, cut), shuffled.slice(cut)];
    };
    /** Cuts `a` from `b` both ways, healed after `ms`. */
    const partitionFor = (a: string[], b: string[], ms: number) => {
      partitioned = true;
      sim.network.partition(a.map(nodeId), b.map(nodeId));
      until(sim.now + ms);
      sim.at(sim.now + ms, 'heal', () => {
        sim.network.heal();
        partitioned = false;
      });
    };
    const crashFor = (victims: string[], gapMs: number, powerLoss = false) => {
      for (const v of victims) this.crash(v, powerLoss);
      until(sim.now + gapMs);
      const back = () => Promise.all(victims.map((v) => this.restart(v))).then(() => undefined);
      if (gapMs === 0) return back();
      sim.at(sim.now + gapMs, `restart ${victims.join(',')}`, back);
      return undefined;
    };
    const gap = () => (r.next() < 0.3 ? 0 : r.next() < 0.5 ? r.int(500) : 500 + r.int(8_000));

    const fault = async (): Promise<void> => {
      const lastsMs = 500 + r.int(8_000);
      const kind = r.int(11);
      if (kind === 0) {
        const victim = crashVictim();
        if (!crashable(victim)) return;
        const g = gap();
        if (powerFails(victim)) {
          this.fired('power-loss', `${victim} loses power (its writes since its last sync are lost), restart after ${g} ms`);
          await crashFor([victim], g, true);
          return;
        }
        this.fired('crash', `crash ${victim}, restart after ${g} ms`);
        await crashFor([victim], g);
      } else if (kind === 1) {
        const a = pick();
        const b = other(a);
        if (b === undefined || !crashable(a) || !crashable(b)) return;
        const g = gap();
        this.fired('double-crash', `crash ${a} and ${b} at once, restart after ${g} ms`);
        await crashFor([a, b], g);
      } else if (kind === 2) {
        const victim = pick();
        if (!sim.isUp(victim) || sim.isPaused(victim)) return;
        const ms = 200 + r.int(6_000);
        this.fired('pause', `pause ${victim} for ${ms} ms`);
        sim.pause(victim);
        until(sim.now + ms);
        sim.at(sim.now + ms, `resume ${victim}`, () => sim.resume(victim));
      } else if (kind === 3) {
        if (partitioned) return;
        const [a, b] = split();
        this.fired('partition', `partition ${a.join(',')} | ${b.join(',')} for ${lastsMs} ms`);
        partitionFor(a, b, lastsMs);
      } else if (kind === 4) {
        if (partitioned) return;
        partitioned = true;
        const flips = 2 + r.int(8);
        let at = sim.now;
        const [a, b] = split();
        this.fired('flapping', `flapping partition ${a.join(',')} | ${b.join(',')}, ${flips} flips`);
        for (let i = 0; i < flips; i++) {
          const cut = i % 2 === 0;
          sim.at(at, cut ? 'flap cut' : 'flap heal', () => (cut ? sim.network.partition(a.map(nodeId), b.map(nodeId)) : sim.network.heal()));
          at += 50 + r.int(1_500);
        }
        sim.at(at, 'flapping ends', () => {
          sim.network.heal();
          partitioned = false;
        });
        until(at);
      } else if (kind === 5) {
        const links = new Set<string>();
        for (let i = 0, n = 1 + r.int(3); i < n; i++) {
          const from = pick();
          links.add(`${from}>${other(from)}`);
        }
        this.fired('one-way', `one-way cut ${[...links].join(' ')} for ${lastsMs} ms`);
        linkFault({ links, loss: 1 }, lastsMs);
      } else if (kind === 6) {
        const loss = 0.05 + r.next() * 0.3;
        this.fired('loss', `${(loss * 100).toFixed(0)}% loss on every link for ${lastsMs} ms`);
        linkFault({ links: 'all', loss }, lastsMs);
      } else if (kind === 7) {
        const from = pick();
        const to = other(from);
        const latencyMs = TIMEOUT_MS + 200 + r.int(4_000);
        const links = new Set(r.next() < 0.5 ? [`${from}>${to}`] : [`${from}>${to}`, `${to}>${from}`]);
        const ms = 200 + r.int(3_000);
        this.fired('latency-spike', `${latencyMs} ms latency on ${[...links].join(' ')} for ${ms} ms`);
        linkFault({ links, latencyMs }, ms);
      } else if (kind === 8) {
        const duplicate = 0.02 + r.next() * 0.2;
        const reorder = 0.05 + r.next() * 0.4;
        this.fired('duplicate-reorder', `${(duplicate * 100).toFixed(0)}% duplicated, ${(reorder * 100).toFixed(0)}% reordered on every link for ${lastsMs} ms`);
        linkFault({ links: 'all', duplicate, reorder }, lastsMs);
      } else if (kind === 9) {
        const victim = pick();
        const ms = r.int(2 * MAX_OFFSET_MS + 1) - MAX_OFFSET_MS;
        this.fired('clock-step', `${victim}'s clock steps from ${this.skewMs.get(victim)} to ${ms} ms`);
        this.setSkew(victim, ms);
      } else {
        // Two failures at once: a crash while another node is cut off.
        const victim = crashVictim();
        if (!crashable(victim) || partitioned) return;
        const [a, b] = split();
        const g = gap();
        const lose = powerFails(victim);
        this.fired(lose ? 'power-loss-and-partition' : 'crash-and-partition', `${lose ? 'power loss of' : 'crash'} ${victim} (restart after ${g} ms) while ${a.join(',')} | ${b.join(',')} for ${lastsMs} ms`);
        partitionFor(a, b, lastsMs);
        await crashFor([victim], g, lose);
      }
    };
    const driver = async () => {
      for (;;) {
        await this.sleep(200 + r.int(3_000));
        if (workloadDone()) return;
        await fault();
      }
    };
    driver().catch((error: unknown) => this.violation('scenario-error', `the fault driver failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`));
    return () => lastEnd;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => this.cluster.sim.queue.at(this.cluster.sim.now + ms, undefined, 'client sleep', resolve));
  }

  // ---- workload --------------------------------------------------------------

  private attempt<T>(via: string, work: (n: ChorusNode) => Promise<T>): Promise<Attempt<T>> {
    const { sim, node } = this.cluster;
    return new Promise((resolve) => {
      const hooks = this.hooksOf(via);
      let settled = false;
      const finish = (a: Attempt<T>) => {
        if (settled) return;
        settled = true;
        hooks.delete(unknown);
        watchdog.cancel();
        resolve(a);
      };
      const unknown = () => finish({ kind: 'unknown' });
      hooks.add(unknown);
      const watchdog = sim.queue.at(sim.now + HANG_MS, undefined, 'client watchdog', () => finish({ kind: 'hung' }));
      work(node(via)).then(
        (value) => finish({ kind: 'ok', value }),
        (error: unknown) => finish({ kind: 'error', error }),
      );
    });
  }

  private outcome(rec: WriteRecord | ReadRecord | SliceRecord, a: Attempt<unknown>): void {
    rec.endMs = this.cluster.sim.now;
    rec.endSeq = ++this.seq;
    if (a.kind === 'ok') rec.outcome = 'ok';
    else if (a.kind === 'error') {
      rec.outcome = 'failed';
      rec.error = isChorusError(a.error) ? a.error.name : String(a.error);
      const expected = EXPECTED_ERRORS.has(rec.error) || (rec.error === 'ActorStopped' && rec.via === this.leaving);
      if (!expected) this.violation('unexpected-error', `operation #${rec.id} on ${rec.key} via ${rec.via} at ${rec.consistency} [${rec.startMs.toFixed(0)}..${rec.endMs.toFixed(0)} ms] failed with ${rec.error}: ${a.error instanceof Error ? a.error.message : ''}`);
    } else {
      rec.outcome = 'unknown';
      if (a.kind === 'hung') this.violation('operation-hung', `operation #${rec.id} on ${rec.key} via ${rec.via} got no answer within ${HANG_MS} ms although its coordinator stayed up`);
    }
  }

  /** The coordinator's wall clock now, as `env.clock.nowMicros()` reads it on `via`. */
  private wallMicros(via: string): number {
    return Math.floor(START_MICROS + this.cluster.sim.now * 1000 + (this.skewMs.get(via) ?? 0) * 1000);
  }

  private async client(i: number, count: number, keys: number, partitions: number): Promise<void> {
    const { sim, nodes } = this.cluster;
    const r = this.rnd.fork(`client ${i}`);
    // While a topology change runs, clients keep going (up to four times their share), so that it runs under load.
    for (let n = 0; n < count || (this.movementActive && n < 4 * count); n++) {
      await this.sleep(r.int(300));
      // Not through a node still joining, as a driver that routes by the ring would not: it may not have the schema yet.
      const running = this.live().filter((x) => nodes.has(x) && sim.isUp(x) && x !== this.joining);
      if (running.length === 0) continue;
      const via = running[r.int(running.length)]!;
      const wide = r.next() < 0.3;
      const partition = wide ? `w${r.int(partitions)}` : `k${r.int(keys)}`;
      const clustering = wide ? CLUSTERING[r.int(CLUSTERING.length)] : undefined;
      const key = rowKey(partition, clustering);
      const id = ++this.ids;
      const roll = r.next();
      if (wide && roll < 0.15) {
        const consistency = READ_LEVELS[r.int(READ_LEVELS.length)]!;
        const rec: SliceRecord = { id, key: partition, consistency, via, startMs: sim.now, startSeq: ++this.seq, outcome: 'unknown', spans: CLUSTERING.map((c) => rowKey(partition, c)) };
        this.slices.push(rec);
        const a = await this.attempt(via, (c) => c.coordinator.slice(KEYSPACE, partition, { consistency }));
        this.outcome(rec, a);
        if (a.kind === 'ok') {
          const dec = new TextDecoder();
          rec.rows = new Map(
            a.value.rows.map((row): [string, Cell] => {
              const cell: Cell = row.expiresAtMicros === undefined ? { value: row.value, timestampMicros: row.timestampMicros } : { value: row.value, timestampMicros: row.timestampMicros, expiresAtMicros: row.expiresAtMicros };
              return [rowKey(partition, dec.decode(row.clustering)), cell];
            }),
          );
        }
        continue;
      }
      if (roll < 0.4) {
        const consistency = READ_LEVELS[r.int(READ_LEVELS.length)]!;
        const rec: ReadRecord = { id, key, consistency, via, startMs: sim.now, startSeq: ++this.seq, outcome: 'unknown' };
        this.reads.push(rec);
        const a = await this.attempt(via, (c) => c.coordinator.getCell(KEYSPACE, partition, clustering, { consistency }));
        this.outcome(rec, a);
        if (a.kind === 'ok') rec.cell = a.value;
        continue;
      }
      const consistency = WRITE_LEVELS[r.int(WRITE_LEVELS.length)]!;
      const del = r.next() < 0.25;
      const rec: WriteRecord = { id, op: del ? 'del' : 'put', key, consistency, via, startMs: sim.now, startSeq: ++this.seq, outcome: 'unknown' };
      const opts: { consistency: string; timestampMicros?: number; ttlSeconds?: number } = { consistency };
      if (r.next() < 0.2) {
        // A client's own timestamp: its clock, a little off the true time, but within max_clock_skew of every node.
        opts.timestampMicros = Math.floor(START_MICROS + sim.now * 1000) + (r.int(2 * MAX_OFFSET_MS + 1) - MAX_OFFSET_MS) * 1000;
        rec.timestampMicros = opts.timestampMicros;
        rec.clientTimestamp = true;
      }
      if (!del) {
        rec.value = `${key}#${id}`;
        if (r.next() < 0.15) {
          rec.ttlSeconds = 1 + r.int(20);
          opts.ttlSeconds = rec.ttlSeconds;
          rec.expiresAtMicros = this.wallMicros(via) + rec.ttlSeconds * 1_000_000;
        }
      }
      this.writes.push(rec);
      const a = await this.attempt(via, (c) => (del ? c.coordinator.del(KEYSPACE, partition, clustering, opts) : c.coordinator.put(KEYSPACE, partition, clustering, rec.value!, opts)));
      this.outcome(rec, a);
      if (a.kind === 'ok') rec.timestampMicros = a.value.timestampMicros;
      else if (a.kind === 'error' && rec.timestampMicros === undefined) {
        const ts = (a.error as { timestampMicros?: unknown }).timestampMicros;
        if (typeof ts === 'number') rec.timestampMicros = ts;
      }
    }
  }

  // ---- topology ----------------------------------------------------------------

  /**
   * One range movement while the workload runs, as an operator would run
   * it: retried when it is refused or when the node running it crashes (a
   * clean failure: the ring stays as it was, and no acknowledged write may
   * be lost), left after MOVEMENT_ATTEMPTS. Only one movement per run.
   *
   * Known limits of the product the plan stays clear of: a node restarted
   * mid-bootstrap re-bootstraps with new tokens (the joining node does not
   * crash while it joins); two joins at the same instant can both pass (one
   * join per run); removenode has no pending state, so at rf 2 quorum
   * writes to the dead node's ranges fail Unavailable while it streams (the
   * swarm runs rf 3, where Unavailable is an expected answer anyway).
   */
  private async changeTopology(kind: TopologyChange): Promise<void> {
    const r = this.rnd.fork('topology plan');
    await this.sleep(500 + r.int(5_000));
    const { node, nodes } = this.cluster;
    // The ring before the movement, as a running member holds it. Crashes can take every member down at once
    // (a power loss, then a double crash, on three nodes): the operator then waits for one to come back.
    const running = () => this.live().find((n) => nodes.has(n));
    if (!(await this.waitFor(() => running() !== undefined, 120_000))) {
      this.violation('movement-failed', `no member ran within 120 s, so the ${kind} never started`);
      return;
    }
    // A node other than n1, the seed every node starts from.
    const others = () => this.live().filter((n) => n !== 'n1');
    this.rings.push(ringOf(node(running()!).membership()));
    const began = this.cluster.sim.now;
    // A coordinator may go on with the old ring a few gossip rounds after the change was seen.
    const changed = () => this.ringChanges.push({ fromMs: began, toMs: this.cluster.sim.now + RING_SETTLE_MS });
    if (kind === 'join') {
      const name = `n${this.cluster.members.length + 1}`;
      this.joining = name;
      this.fired('join', `${name} joins with bootstrap`);
      await this.cluster.add(name, { autoBootstrap: true });
      this.setSkew(name, r.int(2 * MAX_OFFSET_MS + 1) - MAX_OFFSET_MS);
      const joined = await this.waitFor(async () => nodes.has(name) && ringOf(node(name).membership()).member(nodeId(name))?.status === 'normal', 900_000);
      this.joining = undefined;
      if (!joined) this.violation('movement-failed', `${name} did not join within 900 s`);
      else {
        this.fired('movement-done', `${name} joined`);
        changed();
      }
      return;
    }
    if (kind === 'decommission') {
      const leaver = others()[r.int(others().length)]!;
      this.leaving = leaver;
      // It left when its peers say so, even if the call did not return: the node crashed (or stopped itself, told
      // by a peer that it left) between announcing LEFT and returning.
      const left = () => this.leftWhileDown || this.live().some((o) => o !== leaver && nodes.has(o) && node(o).membership().endpoint(nodeId(leaver))?.status === 'LEFT');
      for (let attempt = 1; attempt <= MOVEMENT_ATTEMPTS; attempt++) {
        if (!(await this.waitFor(() => nodes.has(leaver) || left(), 120_000))) continue;
        const ended = left() ? { ok: true as const } : await this.decommissionOnce(leaver, attempt);
        if (ended.ok || left()) {
          // It left: the process stops, and the node is gone for good.
          this.fired('movement-done', `${leaver} left`);
          changed();
          this.gone.add(leaver);
          this.crash(leaver);
          this.cluster.forget(leaver);
          return;
        }
        this.fired('movement-failed', `decommission of ${leaver} failed: ${ended.why}`);
        await this.sleep(MOVEMENT_RETRY_MS);
      }
      return;
    }
    const victim = others()[r.int(others().length)]!;
    if (!(await this.waitFor(() => nodes.has(victim), 120_000))) return;
    await this.removeDeadNode(victim, r);
    changed();
  }

  private decommissionOnce(leaver: string, attempt: number) {
    const n = this.cluster.node(leaver);
    this.fired('decommission', `${leaver} decommissions (attempt ${attempt})`);
    return this.whileRunning(leaver, async () => (await n.decommission()).left);
  }

  private async removeDeadNode(victim: string, r: SeededRandom): Promise<void> {
    const { node, nodes } = this.cluster;
    const hostId = node(victim).hostId;
    this.fired('dead-node', `${victim} dies for good`);
    this.removed = { node: victim, atMs: this.cluster.sim.now };
    this.gone.add(victim);
    this.crash(victim);
    for (let attempt = 1; attempt <= MOVEMENT_ATTEMPTS; attempt++) {
      const running = this.live().filter((n) => nodes.has(n));
      const via = running[r.int(running.length)];
      if (via !== undefined) {
        const n = node(via);
        this.fired('removenode', `${via} removes ${victim} (attempt ${attempt})`);
        const ended = await this.whileRunning(via, async () => (await n.removeNode(hostId)).removed);
        // Unknown host id after an earlier attempt: that attempt removed it, and then its coordinator crashed.
        if (ended.ok || (attempt > 1 && ended.why.startsWith('UnknownHostId'))) {
          this.fired('movement-done', `${victim} removed`);
          this.cluster.forget(victim);
          return;
        }
        this.fired('movement-failed', `removenode of ${victim} via ${via} failed: ${ended.why}`);
      }
      await this.sleep(MOVEMENT_RETRY_MS);
    }
  }

  /** Polls `check` every 500 ms of virtual time until it holds; false when `limitMs` passed first. */
  private async waitFor(check: () => boolean | Promise<boolean>, limitMs: number): Promise<boolean> {
    const deadline = this.cluster.sim.now + limitMs;
    while (this.cluster.sim.now < deadline) {
      if (await check()) return true;
      await this.sleep(500);
    }
    return false;
  }

  /** Runs `work` on `name`; it fails when it throws, or when the node crashes before it ends (its promises then never settle). */
  private async whileRunning(name: string, work: () => Promise<unknown>): Promise<{ ok: true } | { ok: false; why: string }> {
    const incarnation = this.cluster.nodes.get(name);
    let outcome: { ok: true } | { ok: false; why: string } | undefined;
    work().then(
      () => (outcome ??= { ok: true }),
      (error: unknown) => (outcome ??= { ok: false, why: isChorusError(error) ? `${error.name}: ${error.message}` : String(error) }),
    );
    while (outcome === undefined) {
      await this.sleep(500);
      if (this.cluster.nodes.get(name) !== incarnation) outcome ??= { ok: false, why: `${name} crashed while it ran` };
    }
    return outcome;
  }

  // ---- convergence and checks -----------------------------------------------

  private async converge(keys: number, partitions: number): Promise<void> {
    const { sim, nodes, node, during, settle, allUp } = this.cluster;
    const all = sim.nodeIds() as string[];
    for (const n of all) if (sim.isPaused(n)) sim.resume(n);
    for (const a of all) for (const b of all) if (a !== b) sim.network.setLink(nodeId(a), nodeId(b), { loss: 0, latencyMs: 2, duplicate: 0, reorder: 0 });
    sim.network.heal();
    for (const n of this.live()) await this.restart(n);
    // A movement still under way ends now, with the faults gone (or is left, as an operator would).
    await during(this.movement, 1_000_000);
    const members = this.live();
    if (!(await settle(allUp, 300_000))) {
      this.violation('not-converged', `not every member saw every member UN within 300 s of healing (members: ${members.join(',')}; running: ${[...nodes.keys()].join(',')})`);
      return;
    }
    // A write stays open until its timeout to offer hints for the replicas that missed it.
    await sim.runFor(TIMEOUT_MS * 3);
    // Hints for a node no member knows any more wait out their window, undeliverable: a dead node is forgotten
    // (without removenode) once every peer restarted while it was down, since peers keep no state of it on disk.
    const known = (n: string, hostId: string) => node(n).membership().endpoints().some((e) => e.hostId === hostId);
    const pendingForMembers = async (n: string) => (await node(n).hints()).targets.filter((t) => members.includes(t.name) || known(n, t.hostId)).reduce((sum, t) => sum + t.hints, 0);
    if (!(await settle(async () => (await Promise.all(members.map(pendingForMembers))).every((h) => h === 0), 600_000))) {
      const targets = await during(Promise.all(members.map(async (n) => `${n}=${node(n).hintStats()?.pendingHints ?? 0} ${JSON.stringify((await node(n).hints()).targets.map((t) => `${t.name}:${t.hints}`))}`)));
      this.violation('not-converged', `hints still pending 600 s after healing: ${targets.join(' ')}`);
    }
    for (const n of members) {
      let job = await this.repair(n);
      if (job.state !== 'done') job = await this.repair(n);
      if (job.state !== 'done') this.violation('repair-failed', `the repair job on ${n} ended ${job.state}: ${job.error ?? ''}`);
    }

    const rowKeys: Array<[string, string | undefined]> = [];
    for (let k = 0; k < keys; k++) rowKeys.push([`k${k}`, undefined]);
    for (let p = 0; p < partitions; p++) for (const c of CLUSTERING) rowKeys.push([`w${p}`, c]);
    // The final ring's replicas are the key's replicas; members that were replicas before a movement may keep a stale copy.
    const ring = ringOf(node('n1').membership());
    const state = new Map<string, KeyOnReplicas>();
    for (const [partition, clustering] of rowKeys) {
      const t = tokenOf(partition);
      const replicas = ring.naturalReplicas(t, REPLICATION).map(String);
      const formerReplicas = [...new Set(this.rings.flatMap((before) => before.naturalReplicas(t, REPLICATION).map(String)))].filter((n) => !replicas.includes(n));
      const cells = new Map<string, Cell | undefined>();
      for (const n of members) cells.set(n, await during(node(n).coordinator.local(KEYSPACE, partition, clustering)));
      state.set(rowKey(partition, clustering), { replicas, cells, formerReplicas });
    }
    // With commit_sync batch a power loss takes only writes nobody acknowledged: every check stays strict.
    // With periodic it may take acknowledged ones (see LostBatch in @chorus/history for what is loosened).
    // A removed node's disk is gone with it: a write it alone may have acknowledged is no floor either.
    // Quorum reads across a ring change: see RingChange.
    const before = this.rings[0];
    const removed = this.removed;
    const lostWithNode = removed === undefined || before === undefined ? new Set<number>() : writesLostWithNode(this.writes, removed.node, removed.atMs, (key) => before.naturalReplicas(tokenOf(key.split('/')[0]!), REPLICATION).map(String).includes(removed.node));
    const lossy = { lostBatches: this.commitSync === 'periodic' ? this.lostBatches : [], ringChanges: this.ringChanges };
    const judged: Violation[] = [
      ...convergenceViolations(this.writes, state, new Set(), { ...lossy, lostWithNode }).violations,
      ...readViolations(this.writes, this.reads, lossy),
      ...sliceViolations(this.writes, this.reads, this.slices, lossy),
    ];
    this.violations.push(...judged);

    const count = <T>(list: T[], pred: (x: T) => boolean) => list.filter(pred).length;
    let hintsDelivered = 0;
    let readRepairs = 0;
    for (const n of this.incarnations) {
      hintsDelivered += n.hintStats()?.delivered ?? 0;
      readRepairs += n.coordinator.stats().readRepair.mismatches;
    }
    this.figures = {
      writesOk: count(this.writes, (w) => w.outcome === 'ok'),
      writesFailed: count(this.writes, (w) => w.outcome === 'failed'),
      writesUnknown: count(this.writes, (w) => w.outcome === 'unknown'),
      readsOk: count(this.reads, (x) => x.outcome === 'ok'),
      readsFailed: count(this.reads, (x) => x.outcome !== 'ok'),
      slicesOk: count(this.slices, (x) => x.outcome === 'ok'),
      hintsDelivered,
      readRepairs,
      crashes: this.crashes.length,
      powerLosses: this.lostBatches.length,
      keysUnsynced: this.figures.keysUnsynced ?? 0,
      members: members.length,
    };
    for (const n of [...nodes.values()]) await during(n.stop());
  }

  private async repair(name: string) {
    const { nodes, node, during, settle } = this.cluster;
    const { id } = await during(node(name).repair.start({ keyspace: KEYSPACE, primaryRangeOnly: true }));
    const ended = await settle(() => nodes.has(name) && node(name).repair.status(id)!.state !== 'running', 600_000);
    if (!ended) return { state: 'running', error: 'still running 600 s after it started' };
    return node(name).repair.status(id)!;
  }
}
