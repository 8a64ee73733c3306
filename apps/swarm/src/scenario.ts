import { SeededRandom, isChorusError, nodeId } from '@chorus/core';
import { type Checker, type Crash, type KeyOnReplicas, type ReadRecord, type SliceRecord, type Violation, type WriteRecord, convergenceViolations, readViolations, rowKey, sliceViolations } from '@chorus/history';
import type { Cell } from '@chorus/model';
import { type ChorusNode, ringOf } from '@chorus/node';
import { tokenOf } from '@chorus/ring';
import { swarmCluster } from './cluster.js';

/**
 * One seed of the swarm. Everything is drawn from the seed: the cluster
 * (3 to 5 whole nodes, keyspace `default` at rf 3, hints on), each node's
 * clock offset, a fault plan and a workload. The workload runs while the
 * faults fire; then the faults stop, every node runs again, hints drain and
 * each node repairs its primary ranges; then the checkers judge the history
 * and what every replica holds.
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
export type ScenarioChecker = Checker | 'unexpected-error' | 'operation-hung' | 'node-start-failed' | 'not-converged' | 'repair-failed' | 'scenario-error';

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

export interface SwarmResult {
  seed: number;
  nodes: number;
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
  private readonly incarnations: ChorusNode[] = [];
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
      settings: { writeTimeoutMs: TIMEOUT_MS, readTimeoutMs: TIMEOUT_MS, maxClockSkewMs: MAX_CLOCK_SKEW_MS },
      startMicros: START_MICROS,
      ...(this.options.trace ? { trace: this.options.trace } : {}),
      onStarted: (_name, n) => this.incarnations.push(n),
      onStartFailed: (name, error) => this.violation('node-start-failed', `${name}: ${error instanceof Error ? error.message : String(error)}`),
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

  private crash(name: string): void {
    const { sim, nodes } = this.cluster;
    if (!sim.isUp(name)) return;
    sim.crash(name);
    nodes.delete(name);
    this.crashes.push({ node: name, atMs: sim.now });
    for (const settleUnknown of [...this.inFlight.get(name)!]) settleUnknown();
  }

  private async restart(name: string): Promise<void> {
    if (this.cluster.sim.isUp(name)) return;
    await this.cluster.sim.restart(name);
  }

  /**
   * Draws the fault plan and schedules it. Faults start while the workload
   * runs; each ends by itself. Returns when the last one will have ended.
   */
  private planFaults(workloadDone: () => boolean): () => number {
    const { sim } = this.cluster;
    const r = this.rnd.fork('faults');
    const names = this.names;
    const pick = () => names[r.int(names.length)]!;
    const other = (a: string) => names.filter((x) => x !== a)[r.int(names.length - 1)]!;
    let lastEnd = sim.now;
    const until = (t: number) => (lastEnd = Math.max(lastEnd, t));

    // Link faults compose: each active one is an entry, and every link is recomputed from all of them.
    type LinkFault = { links: Set<string> | 'all'; loss?: number; latencyMs?: number; duplicate?: number; reorder?: number };
    const active = new Set<LinkFault>();
    const apply = () => {
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
      const shuffled = [...names];
      for (let i = shuffled.length - 1; i > 0; i--) {
        const j = r.int(i + 1);
        [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
      }
      const cut = 1 + r.int(names.length - 1);
      return [shuffled.slice(0, cut), shuffled.slice(cut)];
    };
    const crashFor = (victims: string[], gapMs: number) => {
      for (const v of victims) this.crash(v);
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
        const victim = pick();
        if (!sim.isUp(victim)) return;
        const g = gap();
        this.fired('crash', `crash ${victim}, restart after ${g} ms`);
        await crashFor([victim], g);
      } else if (kind === 1) {
        const a = pick();
        const b = other(a);
        if (!sim.isUp(a) || !sim.isUp(b)) return;
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
        partitioned = true;
        sim.network.partition(a.map(nodeId), b.map(nodeId));
        until(sim.now + lastsMs);
        sim.at(sim.now + lastsMs, 'heal', () => {
          sim.network.heal();
          partitioned = false;
        });
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
        const victim = pick();
        if (!sim.isUp(victim) || partitioned) return;
        const [a, b] = split();
        const g = gap();
        this.fired('crash-and-partition', `crash ${victim} (restart after ${g} ms) while ${a.join(',')} | ${b.join(',')} for ${lastsMs} ms`);
        partitioned = true;
        sim.network.partition(a.map(nodeId), b.map(nodeId));
        until(sim.now + lastsMs);
        sim.at(sim.now + lastsMs, 'heal', () => {
          sim.network.heal();
          partitioned = false;
        });
        await crashFor([victim], g);
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
      const hooks = this.inFlight.get(via)!;
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
      if (!EXPECTED_ERRORS.has(rec.error)) this.violation('unexpected-error', `operation #${rec.id} on ${rec.key} via ${rec.via} at ${rec.consistency} failed with ${rec.error}: ${a.error instanceof Error ? a.error.message : ''}`);
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
    for (let n = 0; n < count; n++) {
      await this.sleep(r.int(300));
      const running = this.names.filter((x) => nodes.has(x) && sim.isUp(x));
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

  // ---- convergence and checks -----------------------------------------------

  private async converge(keys: number, partitions: number): Promise<void> {
    const { sim, nodes, node, during, settle, allUp } = this.cluster;
    for (const n of this.names) if (sim.isPaused(n)) sim.resume(n);
    for (const a of this.names) for (const b of this.names) if (a !== b) sim.network.setLink(nodeId(a), nodeId(b), { loss: 0, latencyMs: 2, duplicate: 0, reorder: 0 });
    sim.network.heal();
    for (const n of this.names) await this.restart(n);
    if (!(await settle(async () => nodes.size === this.names.length && (await allUp()), 300_000))) {
      this.violation('not-converged', `not every node saw every node UN within 300 s of healing (running: ${[...nodes.keys()].join(',')})`);
      return;
    }
    // A write stays open until its timeout to offer hints for the replicas that missed it.
    await sim.runFor(TIMEOUT_MS * 3);
    if (!(await settle(() => this.names.every((n) => (node(n).hintStats()?.pendingHints ?? 0) === 0), 600_000))) {
      this.violation('not-converged', `hints still pending 600 s after healing: ${this.names.map((n) => `${n}=${node(n).hintStats()?.pendingHints ?? 0}`).join(' ')}`);
    }
    for (const n of this.names) {
      let job = await this.repair(n);
      if (job.state !== 'done') job = await this.repair(n);
      if (job.state !== 'done') this.violation('repair-failed', `the repair job on ${n} ended ${job.state}: ${job.error ?? ''}`);
    }

    const rowKeys: Array<[string, string | undefined]> = [];
    for (let k = 0; k < keys; k++) rowKeys.push([`k${k}`, undefined]);
    for (let p = 0; p < partitions; p++) for (const c of CLUSTERING) rowKeys.push([`w${p}`, c]);
    const ring = ringOf(node('n1').membership());
    const state = new Map<string, KeyOnReplicas>();
    for (const [partition, clustering] of rowKeys) {
      const replicas = ring.naturalReplicas(tokenOf(partition), REPLICATION).map(String);
      const cells = new Map<string, Cell | undefined>();
      for (const n of this.names) cells.set(n, await during(node(n).coordinator.local(KEYSPACE, partition, clustering)));
      state.set(rowKey(partition, clustering), { replicas, cells });
    }
    const judged: Violation[] = [...convergenceViolations(this.writes, state).violations, ...readViolations(this.writes, this.reads), ...sliceViolations(this.writes, this.reads, this.slices)];
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
