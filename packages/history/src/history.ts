import { type Cell, compareCells, isTombstone } from '@chorus/model';

/**
 * A history of client operations against a cluster, and the checks run over
 * it. Pure: the simulation records, these functions judge.
 *
 * Ordering uses a sequence number taken when the client issues an operation
 * and when it hears the outcome, not virtual milliseconds: two events at the
 * same virtual instant still happen one after the other, and "completed
 * before it started" must mean exactly that.
 */

/** `ok`: acknowledged; `failed`: an error answer (`error` names it); `unknown`: the coordinator crashed before answering. */
export type Outcome = 'ok' | 'failed' | 'unknown';

/** What every recorded operation has: which key, at which level, through which node, when, and how it ended. */
interface OperationRecord {
  id: number;
  key: string;
  consistency: string;
  /** The coordinating node. */
  via: string;
  startMs: number;
  startSeq: number;
  endMs?: number;
  endSeq?: number;
  outcome: Outcome;
  error?: string;
}

export interface WriteRecord extends OperationRecord {
  op: 'put' | 'del';
  /** Unique per write, so every cell seen anywhere can be traced to the write that made it. */
  value?: string;
  ttlSeconds?: number;
  /** The expiry the coordinator gives a TTL write: its wall clock when called, plus the TTL. */
  expiresAtMicros?: number;
  /**
   * The write's timestamp: when acknowledged, when a timeout named it, or
   * from the start when the client chose it. Unknown only when the
   * coordinator crashed before answering a write it stamped itself.
   */
  timestampMicros?: number;
  /** The client gave the timestamp: the write may sort below older ones, so order is by version, not by time. */
  clientTimestamp?: boolean;
}

export interface ReadRecord extends OperationRecord {
  /** The resolved cell a successful read returned (undefined: nothing there). */
  cell?: Cell | undefined;
}

/**
 * A slice of one partition: the rows it returned, keyed as the writes of
 * those rows are (`rowKey`), and every row the slice spanned.
 */
export interface SliceRecord extends OperationRecord {
  rows?: ReadonlyMap<string, Cell>;
  spans: readonly string[];
}

/** The history key of one row of a wide partition. */
export function rowKey(partition: string, clustering: string | undefined): string {
  return clustering === undefined ? partition : `${partition}/${clustering}`;
}

export interface Crash {
  node: string;
  atMs: number;
}

/**
 * Errors that say nothing was written anywhere: Unavailable is decided before
 * any replica is contacted; InvalidRequest before the coordinator sees the
 * write. A WriteTimeout (or an unknown outcome) may have been applied.
 */
const NOT_WRITTEN = new Set(['Unavailable', 'InvalidRequest', 'Overloaded', 'ClockSkewed']);

export function mayExist(w: WriteRecord): boolean {
  return w.outcome !== 'failed' || !NOT_WRITTEN.has(w.error ?? '');
}

/** Levels whose acknowledgement overlaps every quorum read at rf 3 (w + 2 > 3): TWO, QUORUM, ALL, and LOCAL_QUORUM in one datacenter. */
export const QUORUM_OVERLAPPING_WRITES = new Set(['TWO', 'THREE', 'QUORUM', 'LOCAL_QUORUM', 'ALL', 'EACH_QUORUM']);
/** Quorum reads; with one datacenter LOCAL_QUORUM is QUORUM. */
export const QUORUM_READS = new Set(['QUORUM', 'LOCAL_QUORUM']);

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/** The cell an acknowledged write stored. */
export function cellOf(w: WriteRecord): Cell {
  if (w.timestampMicros === undefined) throw new Error(`write ${w.id} has no timestamp: it was not acknowledged`);
  if (w.op === 'del') return { tombstone: true, timestampMicros: w.timestampMicros };
  const cell: { value: Uint8Array; timestampMicros: number; expiresAtMicros?: number } = { value: utf8.encode(w.value!), timestampMicros: w.timestampMicros };
  if (w.expiresAtMicros !== undefined) cell.expiresAtMicros = w.expiresAtMicros;
  return cell;
}

/** Last-write-wins order with "nothing" below every version. */
export function compareVersions(a: Cell | undefined, b: Cell | undefined): number {
  if (a === undefined) return b === undefined ? 0 : -1;
  if (b === undefined) return 1;
  return compareCells(a, b);
}

export function describeCell(cell: Cell | undefined): string {
  if (cell === undefined) return 'nothing';
  if (isTombstone(cell)) return `tombstone@${cell.timestampMicros}`;
  const exp = cell.expiresAtMicros === undefined ? '' : ` expires ${cell.expiresAtMicros}`;
  return `${JSON.stringify(fromUtf8.decode(cell.value))}@${cell.timestampMicros}${exp}`;
}

function describeWrite(w: WriteRecord): string {
  const what = w.op === 'del' ? 'delete' : `put ${JSON.stringify(w.value)}${w.ttlSeconds === undefined ? '' : ` ttl ${w.ttlSeconds}s`}`;
  const result = w.outcome === 'ok' ? `ok@${w.timestampMicros}` : w.outcome === 'failed' ? w.error : 'unknown';
  return `#${w.id} ${what} at ${w.consistency} via ${w.via} [${w.startMs.toFixed(1)}..${w.endMs?.toFixed(1) ?? '?'} ms] ${result}`;
}

/** The newest acknowledged version of each key, with the write that made it. */
export function newestAcknowledged(writes: readonly WriteRecord[]): Map<string, { cell: Cell; write: WriteRecord }> {
  const out = new Map<string, { cell: Cell; write: WriteRecord }>();
  for (const w of writes) {
    if (w.outcome !== 'ok') continue;
    const cell = cellOf(w);
    const best = out.get(w.key);
    if (best === undefined || compareCells(cell, best.cell) > 0) out.set(w.key, { cell, write: w });
  }
  return out;
}

/**
 * Traces a cell seen on a replica or in a read back to a write of its key:
 * a value to the write of that value (same key; its timestamp if it was
 * acknowledged; its expiry if it had a TTL), a tombstone to an acknowledged
 * delete with its timestamp or to a delete whose outcome is not known. A
 * cell no write explains, or one from a write that was refused before any
 * replica saw it, is a violation.
 */
export function untraceable(writes: readonly WriteRecord[], key: string, cell: Cell | undefined): string | undefined {
  if (cell === undefined) return undefined;
  if (isTombstone(cell)) {
    const deletes = writes.filter((w) => w.key === key && w.op === 'del' && mayExist(w));
    if (deletes.some((w) => w.timestampMicros === cell.timestampMicros || (w.outcome !== 'ok' && w.timestampMicros === undefined))) return undefined;
    return `${key}: ${describeCell(cell)} matches no delete of the key that may have been applied`;
  }
  const value = fromUtf8.decode(cell.value);
  const w = writes.find((x) => x.op === 'put' && x.value === value);
  if (w === undefined) return `${key}: ${describeCell(cell)} was never written`;
  if (w.key !== key) return `${key}: ${describeCell(cell)} was written to ${w.key}`;
  if (!mayExist(w)) return `${key}: ${describeCell(cell)} comes from a write refused before any replica saw it (${describeWrite(w)})`;
  if (w.timestampMicros !== undefined && w.timestampMicros !== cell.timestampMicros) return `${key}: ${describeCell(cell)} carries another timestamp than its write (${describeWrite(w)})`;
  if (w.expiresAtMicros !== cell.expiresAtMicros) return `${key}: ${describeCell(cell)} carries another expiry than its write (${w.expiresAtMicros ?? 'none'}; ${describeWrite(w)})`;
  return undefined;
}

/**
 * Writes whose hints may have been lost, for a reason the design accepts (as
 * Cassandra does; anti-entropy repair closes it): the coordinator crashed
 * while the write was open. Its hints are offered only when it ends (every
 * contact answered, or the write timeout passed) and stored a moment later;
 * a crash before that loses them, so a replica that missed the write (or a
 * timed-out write that reached only some replicas) stays behind until a read
 * repairs it. `openMs` is the write timeout plus a margin for storing the
 * hints. A write acknowledged at ALL reached every replica and owes no hint.
 */
export function writesWithLostHints(writes: readonly WriteRecord[], crashes: readonly Crash[], openMs: number): Map<number, string> {
  const out = new Map<number, string>();
  for (const w of writes) {
    if (!mayExist(w) || (w.outcome === 'ok' && w.consistency === 'ALL')) continue;
    const crash = crashes.find((c) => c.node === w.via && c.atMs >= w.startMs && c.atMs <= w.startMs + openMs);
    if (crash) out.set(w.id, `${describeWrite(w)}; ${w.via} crashed at ${crash.atMs.toFixed(1)} ms`);
  }
  return out;
}

/** What each node's own replica holds for one key, and which nodes are its replicas. */
export interface KeyOnReplicas {
  replicas: readonly string[];
  cells: ReadonlyMap<string, Cell | undefined>;
  /**
   * Nodes that were replicas of the key in an earlier ring and are none now
   * (a node joined and took the range over). Nothing cleans their copy up,
   * as in Cassandra before `nodetool cleanup`: they may hold a stale one,
   * which only has to trace back to a write.
   */
  formerReplicas?: readonly string[];
}

/**
 * A node's machine lost power (commit_sync `periodic`): every write its disk
 * took after its last sync, at `syncedAtMs`, is gone, acknowledged or not.
 */
export interface LostBatch {
  node: string;
  atMs: number;
  syncedAtMs: number;
}

/**
 * Acknowledged writes whose one acknowledgement may have come from `node`,
 * whose disk is gone for good at `atMs` (removenode: it is never read again,
 * and its ranges are copied from the survivors): a write at a level one
 * replica (or, for ANY, one hint) can acknowledge alone, issued before,
 * through `node` or to a key it was a replica of.
 */
export function writesLostWithNode(writes: readonly WriteRecord[], node: string, atMs: number, wasReplica: (key: string) => boolean): Set<number> {
  const out = new Set<number>();
  for (const w of writes) {
    if (w.outcome === 'ok' && SINGLE_ACK_LEVELS.has(w.consistency) && w.startMs < atMs && (w.via === node || wasReplica(w.key))) out.add(w.id);
  }
  return out;
}

/**
 * When the ring's natural replicas changed: from the moment a movement
 * began to a margin past the moment it was seen done. A version a quorum
 * read saw before then may sit on two replicas of the old ring only (read
 * repair writes no pending replica, and a write below quorum needs none),
 * and the new ring may keep one of them: a quorum read after the change may
 * miss it. Quorum-acknowledged writes keep binding (they count the pending
 * replica), and convergence puts every version back.
 */
export interface RingChange {
  fromMs: number;
  toMs: number;
}

/** Levels a single replica (or, for ANY, a single hint) can acknowledge alone. */
const SINGLE_ACK_LEVELS = new Set(['ONE', 'LOCAL_ONE', 'ANY']);

/** Whether something that ran from `startMs` to `endMs` may have reached the disk of a lost batch: after its last sync and before the power failed. */
function inLostBatch(startMs: number, endMs: number | undefined, b: LostBatch): boolean {
  return startMs < b.atMs && (endMs === undefined || endMs > b.syncedAtMs);
}

/**
 * Acknowledged writes that a lost unsynced batch may have taken with it: a
 * write acknowledged by one replica (or one hint) alone, which may have been
 * the node that lost power, while its last batch was unsynced. A write
 * acknowledged by two replicas or more is never among them: losses hit one
 * node only, so another replica that acknowledged it kept its disk
 * (DESIGN.md, principle 5).
 */
export function writesInLostBatches(writes: readonly WriteRecord[], lostBatches: readonly LostBatch[]): Set<number> {
  const out = new Set<number>();
  for (const w of writes) {
    if (w.outcome !== 'ok' || !SINGLE_ACK_LEVELS.has(w.consistency)) continue;
    if (lostBatches.some((b) => inLostBatch(w.startMs, w.endMs, b))) out.add(w.id);
  }
  return out;
}

/** The write a cell came from, if the history can tell (its value, or an acknowledged delete's timestamp). */
function writeOf(writes: readonly WriteRecord[], key: string, cell: Cell): WriteRecord | undefined {
  if (isTombstone(cell)) return writes.find((w) => w.key === key && w.op === 'del' && w.timestampMicros === cell.timestampMicros);
  const value = fromUtf8.decode(cell.value);
  return writes.find((w) => w.op === 'put' && w.value === value);
}

/**
 * One broken promise, named by the checker that found it. The names are
 * stable: a swarm run prints them, and a regression test asserts on them.
 */
export interface Violation {
  checker: Checker;
  message: string;
}

export type Checker =
  /** A replica, after convergence, holds a version older than an acknowledged write. */
  | 'acknowledged-write-lost'
  /** A replica, after convergence, holds a value older than an acknowledged delete of its key. */
  | 'deleted-key-returned'
  /** Replicas of a key hold different versions after convergence. */
  | 'replicas-differ'
  /** A node that is no replica of a key holds it. */
  | 'non-replica-holds-key'
  /** A version seen anywhere matches no write of its key that may have been applied. */
  | 'untraceable-version'
  /** A version seen anywhere comes from a write answered Unavailable (or refused otherwise before any replica saw it). */
  | 'refused-write-observed'
  /** A quorum read returned a version older than an earlier completed quorum read or quorum-acknowledged write. */
  | 'monotonic-quorum-read'
  /** A read returned a version written by a write that started after the read ended. */
  | 'read-from-the-future'
  /** A quorum slice returned a row older than its floor, or left out a row that must be there. */
  | 'quorum-slice';

/**
 * After convergence, for every key: each replica holds a version at least
 * as new as the newest acknowledged write (an unacknowledged write may have
 * landed too, and be newer), and all replicas hold the same version; nodes
 * that are not replicas hold nothing; every cell traces back to a write.
 *
 * `lost` (see `writesWithLostHints`) names the writes that may have reached
 * only some replicas. Each of them loosens the check for its key exactly as
 * far as it can explain: the floor is the newest acknowledged write not
 * among them, and replicas may differ only when the newest version held
 * comes from one of them (any other write is hinted to every replica that
 * missed it, so the newest version held, if from such a write, would be on
 * all of them). A delete whose outcome is unknown cannot be told from
 * another delete by its tombstone, so it counts as lost when any delete of
 * the key is.
 */
export function checkConvergence(writes: readonly WriteRecord[], state: ReadonlyMap<string, KeyOnReplicas>, lost: ReadonlySet<number> = new Set()): { problems: string[]; divergedByLostHints: string[] } {
  const { violations, divergedByLostHints } = convergenceViolations(writes, state, lost);
  return { problems: violations.map((v) => v.message), divergedByLostHints };
}

export function convergenceViolations(
  writes: readonly WriteRecord[],
  state: ReadonlyMap<string, KeyOnReplicas>,
  lost: ReadonlySet<number> = new Set(),
  options: { lostBatches?: readonly LostBatch[]; lostWithNode?: ReadonlySet<number> } = {},
): { violations: Violation[]; divergedByLostHints: string[] } {
  const violations: Violation[] = [];
  const divergedByLostHints: string[] = [];
  // A write a lost batch may have taken is no floor (it may be gone from every replica); replicas must still agree.
  const inLost = writesInLostBatches(writes, options.lostBatches ?? []);
  const lostWithNode = options.lostWithNode ?? new Set();
  const newest = newestAcknowledged(writes.filter((w) => !lost.has(w.id) && !inLost.has(w.id) && !lostWithNode.has(w.id)));
  for (const [key, { replicas, cells, formerReplicas = [] }] of state) {
    const acked = newest.get(key);
    const held = replicas.map((n) => [n, cells.get(n)] as const);
    let top: Cell | undefined;
    for (const [, c] of held) if (compareVersions(c, top) > 0) top = c;
    if (held.some(([, c]) => compareVersions(c, top) !== 0)) {
      const from = top === undefined ? undefined : writeOf(writes, key, top);
      const explained =
        top !== undefined &&
        (from !== undefined ? lost.has(from.id) : isTombstone(top) && writes.some((w) => w.key === key && w.op === 'del' && lost.has(w.id)));
      if (explained) divergedByLostHints.push(key);
      else violations.push({ checker: 'replicas-differ', message: `${key}: replicas differ: ${held.map(([n, c]) => `${n}=${describeCell(c)}`).join(', ')}${acked ? `; newest acknowledged ${describeWrite(acked.write)}` : ''}` });
    }
    if (acked) {
      for (const [n, c] of held) {
        if (compareVersions(c, acked.cell) >= 0) continue;
        const checker = acked.write.op === 'del' && c !== undefined && !isTombstone(c) ? 'deleted-key-returned' : 'acknowledged-write-lost';
        violations.push({ checker, message: `${key}: ${n} holds ${describeCell(c)}, older than the acknowledged ${describeWrite(acked.write)}` });
      }
    }
    for (const [n, c] of cells) {
      if (!replicas.includes(n) && !formerReplicas.includes(n) && c !== undefined) violations.push({ checker: 'non-replica-holds-key', message: `${key}: ${n} is no replica of it but holds ${describeCell(c)}` });
      const why = traceViolation(writes, key, c);
      if (why !== undefined) violations.push({ ...why, message: `${why.message} (on ${n})` });
    }
  }
  return { violations, divergedByLostHints };
}

function traceViolation(writes: readonly WriteRecord[], key: string, cell: Cell | undefined): Violation | undefined {
  const why = untraceable(writes, key, cell);
  if (why === undefined) return undefined;
  return { checker: why.includes('refused before any replica saw it') ? 'refused-write-observed' : 'untraceable-version', message: why };
}

/**
 * Monotonic quorum reads: no quorum read returns a version older than one
 * returned by a quorum read of the same key that completed before it
 * started, nor older than an acknowledged write at a level that overlaps
 * every quorum read (QUORUM, TWO, ALL) that completed before it started.
 * Every value a read returns must trace back to a write.
 */
export function checkQuorumReads(writes: readonly WriteRecord[], reads: readonly ReadRecord[]): string[] {
  return readViolations(writes, reads).map((v) => v.message);
}

type Floor = { seq: number; cell: Cell | undefined; what: string; startMs: number; endMs: number; read: boolean };

/** Per key, the versions a later quorum read must not go below: quorum-acknowledged writes and quorum reads, at their completion. */
function quorumFloors(writes: readonly WriteRecord[], reads: readonly ReadRecord[]): Map<string, Floor[]> {
  const floors = new Map<string, Floor[]>();
  const push = (key: string, floor: Floor) => {
    const list = floors.get(key) ?? [];
    list.push(floor);
    floors.set(key, list);
  };
  for (const w of writes) {
    if (w.outcome === 'ok' && QUORUM_OVERLAPPING_WRITES.has(w.consistency)) push(w.key, { seq: w.endSeq!, cell: cellOf(w), what: describeWrite(w), startMs: w.startMs, endMs: w.endMs!, read: false });
  }
  for (const r of reads) {
    if (r.outcome === 'ok' && QUORUM_READS.has(r.consistency)) push(r.key, { seq: r.endSeq!, cell: r.cell, what: `${describeRead(r)} -> ${describeCell(r.cell)}`, startMs: r.startMs, endMs: r.endMs!, read: true });
  }
  return floors;
}

/**
 * The strongest floor of a read that started at `startSeq` and ended at
 * `endMs`. A floor whose version may have landed on a node in a batch that
 * node later lost binds no read still running after the loss (one started
 * before may ask the restarted node again): the version may then be on
 * one replica of a quorum only, until convergence puts it back (the write
 * itself is not lost: another replica that acknowledged it kept its disk).
 */
function floorBefore(floors: Map<string, Floor[]>, key: string, startSeq: number, endMs: number, lostBatches: readonly LostBatch[], ringChanges: readonly RingChange[]): Floor | undefined {
  let floor: Floor | undefined;
  for (const f of floors.get(key) ?? []) {
    if (f.seq >= startSeq || (floor !== undefined && compareVersions(f.cell, floor.cell) <= 0)) continue;
    if (lostBatches.some((b) => endMs > b.atMs && inLostBatch(f.startMs, f.endMs, b))) continue;
    if (f.read && ringChanges.some((c) => f.endMs < c.toMs && endMs > c.fromMs)) continue;
    floor = f;
  }
  return floor;
}

function describeRead(r: ReadRecord | SliceRecord): string {
  return `${'spans' in r ? 'slice' : 'read'} #${r.id} at ${r.consistency} via ${r.via} [${r.startMs.toFixed(1)}..${r.endMs?.toFixed(1) ?? '?'} ms]`;
}

/**
 * The write a returned version came from must have started before the read
 * ended: a read cannot see the future. A tombstone whose delete is not known
 * by timestamp may come from any delete of its key without one.
 */
function fromTheFuture(writes: readonly WriteRecord[], key: string, cell: Cell | undefined, endSeq: number): string | undefined {
  if (cell === undefined) return undefined;
  if (isTombstone(cell)) {
    const sources = writes.filter((w) => w.key === key && w.op === 'del' && mayExist(w) && (w.timestampMicros === cell.timestampMicros || w.timestampMicros === undefined));
    if (sources.length === 0 || sources.some((w) => w.startSeq < endSeq)) return undefined;
    return `${key}: ${describeCell(cell)} comes from a delete issued after the read ended (${describeWrite(sources[0]!)})`;
  }
  const w = writeOf(writes, key, cell);
  if (w === undefined || w.startSeq < endSeq) return undefined;
  return `${key}: ${describeCell(cell)} comes from a write issued after the read ended (${describeWrite(w)})`;
}

/**
 * The per-key last-write-wins register, read by read: every version a read
 * returns traces back to a write that may have been applied (never one
 * answered Unavailable), issued before the read ended; and a quorum read is
 * never older than an earlier completed quorum read or quorum-acknowledged
 * write of its key (monotonic reads).
 */
export function readViolations(writes: readonly WriteRecord[], reads: readonly ReadRecord[], options: { lostBatches?: readonly LostBatch[]; ringChanges?: readonly RingChange[] } = {}): Violation[] {
  const lostBatches = options.lostBatches ?? [];
  const ringChanges = options.ringChanges ?? [];
  const violations: Violation[] = [];
  const floors = quorumFloors(writes, reads);
  for (const r of reads) {
    if (r.outcome !== 'ok') continue;
    const why = traceViolation(writes, r.key, r.cell);
    if (why !== undefined) violations.push({ ...why, message: `read #${r.id}: ${why.message}` });
    const future = fromTheFuture(writes, r.key, r.cell, r.endSeq!);
    if (future !== undefined) violations.push({ checker: 'read-from-the-future', message: `${describeRead(r)}: ${future}` });
    if (!QUORUM_READS.has(r.consistency)) continue;
    const floor = floorBefore(floors, r.key, r.startSeq, r.endMs!, lostBatches, ringChanges);
    if (floor !== undefined && compareVersions(r.cell, floor.cell) < 0) {
      violations.push({ checker: 'monotonic-quorum-read', message: `${r.key}: ${describeRead(r)} returned ${describeCell(r.cell)}, older than ${describeCell(floor.cell)} of the earlier ${floor.what}` });
    }
  }
  return violations;
}

/**
 * Slices of wide partitions, row by row: each row returned traces back to a
 * write issued before the slice ended; a quorum slice returns no row older
 * than its floor (as a quorum read of the row would), and leaves out no row
 * whose floor is a live value that nothing may have removed since (no
 * delete of the row and no TTL write of it may exist: those make a missing
 * row legitimate, and slices return live rows only).
 */
export function sliceViolations(writes: readonly WriteRecord[], reads: readonly ReadRecord[], slices: readonly SliceRecord[], options: { lostBatches?: readonly LostBatch[]; ringChanges?: readonly RingChange[] } = {}): Violation[] {
  const lostBatches = options.lostBatches ?? [];
  const ringChanges = options.ringChanges ?? [];
  const violations: Violation[] = [];
  const floors = quorumFloors(writes, reads);
  for (const s of slices) {
    if (s.outcome !== 'ok') continue;
    for (const key of s.spans) {
      const cell = s.rows?.get(key);
      const why = traceViolation(writes, key, cell);
      if (why !== undefined) violations.push({ ...why, message: `${describeRead(s)}: ${why.message}` });
      const future = fromTheFuture(writes, key, cell, s.endSeq!);
      if (future !== undefined) violations.push({ checker: 'read-from-the-future', message: `${describeRead(s)}: ${future}` });
      if (!QUORUM_READS.has(s.consistency)) continue;
      const floor = floorBefore(floors, key, s.startSeq, s.endMs!, lostBatches, ringChanges);
      if (floor === undefined || floor.cell === undefined || isTombstone(floor.cell)) continue;
      if (cell !== undefined) {
        if (compareVersions(cell, floor.cell) < 0) violations.push({ checker: 'quorum-slice', message: `${key}: ${describeRead(s)} returned ${describeCell(cell)}, older than ${describeCell(floor.cell)} of the earlier ${floor.what}` });
        continue;
      }
      const mayBeGone = writes.some((w) => w.key === key && mayExist(w) && (w.op === 'del' || w.ttlSeconds !== undefined) && w.startSeq < s.endSeq!);
      if (!mayBeGone) violations.push({ checker: 'quorum-slice', message: `${key}: ${describeRead(s)} left the row out, although the earlier ${floor.what} holds ${describeCell(floor.cell)} and nothing may have removed it` });
    }
  }
  return violations;
}
