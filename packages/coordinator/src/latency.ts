import type { NodeId } from '@chorus/core';

/** Half of a peer's latency average is from its answers of the last second. */
const DEFAULT_HALF_LIFE_MS = 1_000;
/** An average is evidence for at least this long after its last answer, and for this many times itself. */
const FRESH_FOR_MS = 2_000;
const FRESH_FOR_LATENCIES = 10;

/**
 * Recent latencies of one peer: an average that forgets by time, to rank
 * replicas by speed (the dynamic-snitch part), and a window of the last
 * samples for the p99 that decides when to retry speculatively.
 *
 * The average weighs each answer by the time since the one before (half of
 * it is older than `halfLifeMs`), as Cassandra's snitch keeps a reservoir
 * biased to the last second. Weighing each answer alike, as an EWMA of the
 * last few answers does, followed every burst of a saturated node: under
 * cold reads at 1024 in flight the estimates swung from 6 to 570 ms within
 * seconds, one peer looked twice as slow as another by chance, every
 * coordinator sent its reads to the other one, and one node served 2.5
 * times the reads of another.
 *
 * The window is long (1024 answers) so that the p99 is a percentile and not
 * the largest of a burst: with a short one, under load every burst of slow
 * answers moved it, and about one read in six was retried speculatively,
 * adding reads to the replicas that were slow already. It is found again at
 * most every `refreshEvery` samples, so recording stays O(1) amortized.
 */
export class LatencyWindow {
  private readonly samples: number[];
  private next = 0;
  private count = 0;
  private cachedP99: number | undefined;
  private sinceRefresh = 0;
  private lastAtMs = 0;
  private freshUntilMs = 0;
  averageMs: number | undefined;

  constructor(
    private readonly size = 1024,
    private readonly halfLifeMs = DEFAULT_HALF_LIFE_MS,
    private readonly refreshEvery = 32,
  ) {
    this.samples = new Array<number>(size).fill(0);
  }

  /** An answer that took `ms`, received at `atMs` (monotonic). */
  record(ms: number, atMs: number): void {
    this.samples[this.next] = ms;
    this.next = (this.next + 1) % this.size;
    if (this.count < this.size) this.count++;
    if (++this.sinceRefresh >= this.refreshEvery) this.cachedP99 = undefined;
    this.average(ms, atMs);
  }

  /** An ask that timed out after `ms`: it moves the average, not the p99 of answers. */
  recordTimeout(ms: number, atMs: number): void {
    this.average(ms, atMs);
  }

  private average(ms: number, atMs: number): void {
    if (this.averageMs === undefined) this.averageMs = ms;
    else {
      // Time, not the number of answers, gives the weight: an answer in the same instant as the last adds nothing, the first after a long silence replaces the average.
      const weight = 1 - 0.5 ** (Math.max(0, atMs - this.lastAtMs) / this.halfLifeMs);
      this.averageMs += weight * (ms - this.averageMs);
    }
    this.lastAtMs = atMs;
    this.freshUntilMs = atMs + Math.max(FRESH_FOR_MS, FRESH_FOR_LATENCIES * this.averageMs);
  }

  /**
   * The average while it is recent, else undefined: a replica the snitch
   * passes over gets few answers to refresh it, so without this a moment of
   * slowness could keep it passed over for good (Cassandra resets its scores
   * on an interval for the same reason). A slower replica's average stays
   * longer, so one that stopped answering is asked again only after ten times
   * the timeout it earned.
   */
  averageAt(nowMs: number): number | undefined {
    return nowMs <= this.freshUntilMs ? this.averageMs : undefined;
  }

  get sampleCount(): number {
    return this.count;
  }

  /** The 99th percentile of the window, or undefined before any sample. */
  p99(): number | undefined {
    if (this.count === 0) return undefined;
    if (this.cachedP99 === undefined) {
      this.sinceRefresh = 0;
      const rank = Math.min(this.count - 1, Math.ceil(0.99 * this.count) - 1);
      // The p99 of a window of at most about a thousand samples is one of its largest few, found in one pass.
      const fromTop = this.count - rank;
      this.cachedP99 = fromTop <= TOP_SCAN ? largest(this.samples, this.count, fromTop) : this.samples.slice(0, this.count).sort((a, b) => a - b)[rank]!;
    }
    return this.cachedP99;
  }
}

/** Up to this many from the top, a scan that keeps the largest few beats a sort of the window. */
const TOP_SCAN = 16;

/** The `k`-th largest (1 = the maximum) of `values[0, count)`, for a small `k`. */
function largest(values: readonly number[], count: number, k: number): number {
  // top[0] ≥ top[1] ≥ … : the k largest seen so far.
  const top: number[] = [];
  for (let i = 0; i < count; i++) {
    const v = values[i]!;
    if (top.length === k && v <= top[k - 1]!) continue;
    let j = top.length < k ? top.length : k - 1;
    while (j > 0 && top[j - 1]! < v) {
      top[j] = top[j - 1]!;
      j--;
    }
    top[j] = v;
  }
  return top[k - 1]!;
}

/** Latency windows per peer, created on first sample. */
export class PeerLatencies {
  private readonly peers = new Map<NodeId, LatencyWindow>();

  record(node: NodeId, ms: number, atMs: number): void {
    this.window(node).record(ms, atMs);
  }

  recordTimeout(node: NodeId, ms: number, atMs: number): void {
    this.window(node).recordTimeout(ms, atMs);
  }

  private window(node: NodeId): LatencyWindow {
    let w = this.peers.get(node);
    if (w === undefined) {
      w = new LatencyWindow();
      this.peers.set(node, w);
    }
    return w;
  }

  /** The peer's latency average, while it is recent enough to rank the peer by. */
  averageMs(node: NodeId, nowMs: number): number | undefined {
    return this.peers.get(node)?.averageAt(nowMs);
  }

  p99(node: NodeId): number | undefined {
    return this.peers.get(node)?.p99();
  }

  snapshot(): Record<string, { averageMs: number; p99Ms: number; samples: number }> {
    const out: Record<string, { averageMs: number; p99Ms: number; samples: number }> = {};
    for (const [node, w] of this.peers) out[node] = { averageMs: w.averageMs ?? 0, p99Ms: w.p99() ?? 0, samples: w.sampleCount };
    return out;
  }
}

/**
 * A fixed-bucket latency histogram for request stats: buckets grow by ~19%
 * (four per doubling), so percentiles are within that factor, in constant
 * memory however many requests it sees.
 */
export class LatencyHistogram {
  private readonly buckets = new Map<number, number>();
  private total = 0;
  private maxMs = 0;

  record(ms: number): void {
    const b = ms <= 0 ? -Infinity : Math.ceil(Math.log2(ms) * 4);
    this.buckets.set(b, (this.buckets.get(b) ?? 0) + 1);
    this.total++;
    if (ms > this.maxMs) this.maxMs = ms;
  }

  get count(): number {
    return this.total;
  }

  /** Upper bound of the bucket holding quantile `q` (0..1). */
  quantile(q: number): number {
    if (this.total === 0) return 0;
    const keys = [...this.buckets.keys()].sort((a, b) => a - b);
    const target = Math.ceil(q * this.total);
    let seen = 0;
    for (const k of keys) {
      seen += this.buckets.get(k)!;
      if (seen >= target) return k === -Infinity ? 0 : Math.min(this.maxMs, 2 ** (k / 4));
    }
    return this.maxMs;
  }

  summary(): { count: number; p50Ms: number; p99Ms: number; maxMs: number } {
    return { count: this.total, p50Ms: this.quantile(0.5), p99Ms: this.quantile(0.99), maxMs: this.maxMs };
  }
}
