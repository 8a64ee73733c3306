/**
 * Phi-accrual failure detection (Hayashibara et al.), in the simplified form
 * Cassandra uses: inter-arrival times are taken as exponentially distributed,
 * so phi = (t_now − t_last) / mean / ln 10. Phi grows linearly with silence;
 * a threshold of 8 convicts after about 18.4 mean intervals without news.
 *
 * Pure: time is passed in, nothing is scheduled.
 */

export interface PhiOptions {
  /** Suspicion level at which a node is convicted. Cassandra's `phi_convict_threshold`, 8 by default. */
  threshold: number;
  /** How many inter-arrival intervals the mean is taken over. */
  windowSize: number;
  /**
   * Seeds every new window as its first sample, so a node heard once is
   * judged against this instead of against nothing (and one short early
   * interval cannot make it look silent at once).
   */
  initialIntervalMs: number;
  /**
   * Intervals longer than this are not recorded: a pause, a partition or a
   * restart would otherwise inflate the mean and slow every later detection.
   */
  maxIntervalMs: number;
  /**
   * When the checker itself was not run for this long (GC pause, stalled
   * event loop), the silence it measures is its own: skip one conviction round.
   */
  maxLocalPauseMs: number;
}

export const DEFAULT_PHI_OPTIONS: PhiOptions = {
  threshold: 8,
  windowSize: 1_000,
  initialIntervalMs: 2_000,
  maxIntervalMs: 2_000,
  maxLocalPauseMs: 5_000,
};

const PHI_FACTOR = 1 / Math.LN10;

/** A bounded ring of intervals with a running sum. */
class ArrivalWindow {
  private readonly intervals: Float64Array;
  private next = 0;
  private count = 0;
  private sum = 0;
  last: number;

  constructor(size: number, firstArrival: number, initialInterval: number) {
    this.intervals = new Float64Array(size);
    this.last = firstArrival;
    this.add(initialInterval);
  }

  add(interval: number): void {
    if (this.count === this.intervals.length) this.sum -= this.intervals[this.next]!;
    else this.count++;
    this.intervals[this.next] = interval;
    this.sum += interval;
    this.next = (this.next + 1) % this.intervals.length;
  }

  mean(): number {
    return this.sum / this.count;
  }

  samples(): number {
    return this.count;
  }
}

export class PhiAccrualFailureDetector<K = string> {
  readonly options: PhiOptions;
  private readonly windows = new Map<K, ArrivalWindow>();
  private lastCheck: number | undefined;

  constructor(options: Partial<PhiOptions> = {}) {
    this.options = { ...DEFAULT_PHI_OPTIONS, ...options };
    if (!(this.options.windowSize >= 1)) throw new RangeError('windowSize must be at least 1');
    if (!(this.options.initialIntervalMs > 0)) throw new RangeError('initialIntervalMs must be positive');
  }

  /** Records a sign of life of `key` (a newer heartbeat) at `nowMs`. */
  report(key: K, nowMs: number): void {
    const window = this.windows.get(key);
    if (!window) {
      this.windows.set(key, new ArrivalWindow(this.options.windowSize, nowMs, this.options.initialIntervalMs));
      return;
    }
    const interval = nowMs - window.last;
    if (interval >= 0 && interval <= this.options.maxIntervalMs) window.add(interval);
    window.last = Math.max(window.last, nowMs);
  }

  /** Suspicion of `key` at `nowMs`; 0 for a key never heard from. */
  phi(key: K, nowMs: number): number {
    const window = this.windows.get(key);
    if (!window) return 0;
    return (PHI_FACTOR * Math.max(0, nowMs - window.last)) / window.mean();
  }

  isAvailable(key: K, nowMs: number): boolean {
    return this.phi(key, nowMs) < this.options.threshold;
  }

  /** Milliseconds since the last sign of life of `key`; undefined for a key never heard from. */
  silenceMs(key: K, nowMs: number): number | undefined {
    const window = this.windows.get(key);
    return window === undefined ? undefined : Math.max(0, nowMs - window.last);
  }

  /** Mean inter-arrival time of `key`, for diagnostics. */
  meanIntervalMs(key: K): number | undefined {
    return this.windows.get(key)?.mean();
  }

  samples(key: K): number {
    return this.windows.get(key)?.samples() ?? 0;
  }

  /**
   * The keys among `candidates` whose phi has reached the threshold. Returns
   * none when the previous check is longer ago than `maxLocalPauseMs`: the
   * caller was paused, not the peers.
   */
  convict(candidates: Iterable<K>, nowMs: number): K[] {
    const previous = this.lastCheck;
    this.lastCheck = nowMs;
    if (previous !== undefined && nowMs - previous > this.options.maxLocalPauseMs) return [];
    const out: K[] = [];
    for (const key of candidates) if (this.windows.has(key) && !this.isAvailable(key, nowMs)) out.push(key);
    return out;
  }

  /** Forgets `key`'s history: a restarted node starts a fresh window. */
  forget(key: K): void {
    this.windows.delete(key);
  }
}
