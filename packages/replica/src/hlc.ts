import type { Logger, NodeId } from '@chorus/core';
import { InvalidRequest } from '@chorus/core';

/** Default bound on how far a timestamp may lie ahead of this node's clock (`max_clock_skew`), in milliseconds. */
export const DEFAULT_MAX_CLOCK_SKEW_MS = 1_000;

/**
 * A hybrid logical clock in microseconds. Timestamps never go backwards on a
 * node, even when the wall clock steps back, and move past every timestamp
 * seen from peers, so a write issued after this node saw another write's
 * timestamp gets a larger one and wins last-write-wins.
 *
 * The logical part is folded into the microseconds (+1 per tick past the
 * wall clock), so timestamps stay plain integers that storage compares.
 *
 * A peer timestamp further ahead of our wall clock than `maxSkewMicros` is
 * not adopted: one node with a clock an hour fast would otherwise drag every
 * node's timestamps an hour ahead for good, and its writes would beat every
 * honest later write. Such timestamps are counted (`rejected`).
 */
export class HybridLogicalClock {
  private last = 0;
  rejected = 0;

  constructor(private readonly wallMicros: () => number, readonly maxSkewMicros: number = DEFAULT_MAX_CLOCK_SKEW_MS * 1000) {}

  /** A fresh timestamp, greater than every one issued or adopted before. */
  now(): number {
    const wall = this.wallMicros();
    this.last = wall > this.last ? wall : this.last + 1;
    return this.last;
  }

  /**
   * Starts the clock above a high-water mark that an earlier run of this node
   * recorded: after a restart (with the wall clock stepped back, or the clock
   * having run ahead of the wall before) every new timestamp is larger than
   * the mark, so this node's new writes win over the ones it made before.
   */
  restore(markMicros: number): void {
    if (markMicros > this.last) this.last = markMicros;
  }

  /** The largest timestamp issued or adopted so far (without ticking). */
  peek(): number {
    return Math.max(this.last, this.wallMicros());
  }

  /** Adopts a timestamp seen from a peer or a client; returns false when it lies too far ahead to be trusted. */
  observe(timestampMicros: number): boolean {
    if (timestampMicros > this.wallMicros() + this.maxSkewMicros) {
      this.rejected++;
      return false;
    }
    if (timestampMicros > this.last) this.last = timestampMicros;
    return true;
  }

  /**
   * Throws InvalidRequest for a timestamp (from a client or a peer's mutation)
   * too far in the future: beyond `boundMicros`, max_clock_skew unless given.
   */
  checkNotTooFarAhead(timestampMicros: number, what: string, boundMicros: number = this.maxSkewMicros): void {
    const wall = this.wallMicros();
    if (timestampMicros > wall + boundMicros) {
      const aheadMs = Math.round((timestampMicros - wall) / 1000);
      throw new InvalidRequest(`${what} ${timestampMicros} is ${aheadMs} ms ahead of this node's clock; the limit is ${boundMicros / 1000} ms`, {
        reason: 'TIMESTAMP_IN_FUTURE',
        timestampMicros,
        aheadMs,
        maxClockSkewMs: this.maxSkewMicros / 1000,
        limitMs: boundMicros / 1000,
      });
    }
  }
}

/** Default offset past which a peer's clock is reported (`clock_skew_warn`), in milliseconds; max_clock_skew stays the refusal bound. */
export const DEFAULT_CLOCK_SKEW_WARN_MS = 20;

export interface PeerSkew {
  /** Estimated offset of the peer's wall clock from ours, in ms (positive: the peer is ahead). */
  skewMs: number;
  /** Whether the estimate is beyond max_clock_skew (its timestamps beyond the bound are refused). */
  flagged: boolean;
  /** Whether the estimate is beyond clock_skew_warn (or max_clock_skew): worth an operator's look before writes suffer. */
  warning: boolean;
  /** Round-trip samples kept for the estimate (0: only the one-way lower bound is known). */
  samples: number;
  /** `round-trip`: NTP-style estimate, within half the round trip; `one-way`: a lower bound from the peer's requests only. */
  method: 'round-trip' | 'one-way';
}

/** One request/answer pair with a peer, as the coordinator saw it. */
export interface RoundTripSample {
  /** Our wall clock when the request went out. */
  sentWallMicros: number;
  /** The peer's wall clock in its answer. */
  peerWallMicros: number;
  /** From sending to the answer's arrival, on our monotonic clock. */
  rttMs: number;
  /** Our monotonic clock at the answer's arrival. */
  atMs: number;
}

export interface SkewTrackerOptions {
  /** Round-trip samples needed before a peer is judged (flagged, or counted toward ClockSkewed); default 5. */
  minSamples?: number;
  /** The samples judged must span at least this much time (ms), so one burst cannot decide; default 1000. */
  minSpanMs?: number;
  /** Samples with a longer round trip are dropped (their error is up to half of it); default max(20, max skew / 5). */
  maxRttMs?: number;
  /** clock_skew_warn: a judged offset beyond this is reported (logged, `warning`) though still accepted; default 20. */
  warnMs?: number;
}

type SkewLevel = 'ok' | 'warning' | 'flagged';

const WINDOW = 16;
const RTT_HISTORY = 64;
/**
 * At most one sample per peer and kind in this many ms: under load every
 * answer is a sample, and 16 of them taken within a few ms would never span
 * the time a judgement needs (and would cost a sort per answer).
 */
const SAMPLE_INTERVAL_MS = 100;

interface PeerState {
  /** Recent accepted round-trip samples, oldest first. */
  offsets: Array<{ offsetMs: number; atMs: number }>;
  /** Recent round trips, accepted or not: their minimum is the path's floor. */
  rtts: number[];
  /** Recent one-way readings (peer wall at send − ours at receipt), each a lower bound on the offset. */
  oneWay: number[];
  /** The level last logged, so each change is logged once. */
  logged: SkewLevel;
  /** When the last round-trip and one-way samples were taken (ms), for SAMPLE_INTERVAL_MS. */
  lastRoundTripAtMs: number;
  lastOneWayAtMs: number;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Per-peer clock-offset estimates.
 *
 * Round trips give the estimate, as NTP does: offset = peer's wall reading −
 * (our send time + rtt / 2), wrong by at most rtt / 2. A mailbox backlog or an
 * event-loop stall on either side lengthens the round trip, so such samples
 * are dropped (rtt over `maxRttMs`, or over three times the path's recent
 * minimum plus 5 ms) instead of making every peer look a second behind. The
 * estimate is the median of the last 16 accepted samples, and is judged only
 * with `minSamples` of them spanning `minSpanMs`: one burst never decides.
 *
 * A peer's request carries its wall clock at send time; ours at receipt is
 * later by the one-way delay plus any backlog, so that difference is a lower
 * bound on the offset. It can prove a peer ahead (what matters for refusing
 * its timestamps) but never that it is behind, so it never feeds ClockSkewed.
 */
export class SkewTracker {
  private readonly peers = new Map<NodeId, PeerState>();
  private selfAhead: { value: number | undefined } | undefined;
  private readonly minSamples: number;
  private readonly minSpanMs: number;
  private readonly maxRttMs: number;
  readonly warnMs: number;

  constructor(private readonly maxSkewMs: number, private readonly logger: Logger, options: SkewTrackerOptions = {}) {
    this.minSamples = options.minSamples ?? 5;
    this.minSpanMs = options.minSpanMs ?? 1_000;
    this.maxRttMs = options.maxRttMs ?? Math.max(20, maxSkewMs / 5);
    this.warnMs = options.warnMs ?? DEFAULT_CLOCK_SKEW_WARN_MS;
  }

  private state(peer: NodeId): PeerState {
    let s = this.peers.get(peer);
    if (s === undefined) {
      s = { offsets: [], rtts: [], oneWay: [], logged: 'ok', lastRoundTripAtMs: Number.NEGATIVE_INFINITY, lastOneWayAtMs: Number.NEGATIVE_INFINITY };
      this.peers.set(peer, s);
    }
    return s;
  }

  observeRoundTrip(peer: NodeId, sample: RoundTripSample): void {
    const s = this.state(peer);
    if (tooSoon(sample.atMs, s.lastRoundTripAtMs)) return;
    s.lastRoundTripAtMs = sample.atMs;
    this.selfAhead = undefined;
    const rtt = Math.max(0, sample.rttMs);
    push(s.rtts, rtt, RTT_HISTORY);
    const floor = Math.min(...s.rtts);
    if (rtt > this.maxRttMs || rtt > 3 * floor + 5) return;
    const offsetMs = (sample.peerWallMicros - sample.sentWallMicros) / 1000 - rtt / 2;
    push(s.offsets, { offsetMs, atMs: sample.atMs }, WINDOW);
    this.logIfChanged(peer, s);
  }

  observeOneWay(peer: NodeId, peerWallMicros: number, ourWallMicros: number): void {
    const s = this.state(peer);
    const atMs = ourWallMicros / 1000;
    if (tooSoon(atMs, s.lastOneWayAtMs)) return;
    s.lastOneWayAtMs = atMs;
    push(s.oneWay, (peerWallMicros - ourWallMicros) / 1000, WINDOW);
    this.logIfChanged(peer, s);
  }

  /** The round-trip estimate when there are enough samples over enough time to judge; undefined otherwise. */
  private judged(s: PeerState): number | undefined {
    if (s.offsets.length < this.minSamples) return undefined;
    if (s.offsets[s.offsets.length - 1]!.atMs - s.offsets[0]!.atMs < this.minSpanMs) return undefined;
    return median(s.offsets.map((o) => o.offsetMs));
  }

  private view(s: PeerState): PeerSkew {
    const lowerBound = s.oneWay.length > 0 ? Math.max(...s.oneWay) : undefined;
    const aheadProven = lowerBound !== undefined && lowerBound > this.maxSkewMs;
    const aheadPastWarn = lowerBound !== undefined && lowerBound > this.warnMs;
    if (s.offsets.length === 0) return { skewMs: lowerBound ?? 0, flagged: aheadProven, warning: aheadProven || aheadPastWarn, samples: 0, method: 'one-way' };
    const estimate = median(s.offsets.map((o) => o.offsetMs));
    const judged = this.judged(s);
    const flagged = aheadProven || (judged !== undefined && Math.abs(judged) > this.maxSkewMs);
    return {
      // The peer is at least `lowerBound` ahead, whatever older round trips said.
      skewMs: lowerBound === undefined ? estimate : Math.max(estimate, lowerBound),
      flagged,
      warning: flagged || aheadPastWarn || (judged !== undefined && Math.abs(judged) > this.warnMs),
      samples: s.offsets.length,
      method: 'round-trip',
    };
  }

  /** Logs a peer's skew level when it changes: past clock_skew_warn, past max_clock_skew, or back within. */
  private logIfChanged(peer: NodeId, s: PeerState): void {
    const v = this.view(s);
    const level: SkewLevel = v.flagged ? 'flagged' : v.warning ? 'warning' : 'ok';
    if (level === s.logged) return;
    s.logged = level;
    const fields = { peer, skewMs: Math.round(v.skewMs), method: v.method, clockSkewWarnMs: this.warnMs, maxClockSkewMs: this.maxSkewMs };
    if (level === 'flagged') this.logger.warn(fields, 'peer clock is skewed beyond max_clock_skew; timestamps from it beyond the bound are refused');
    else if (level === 'warning') this.logger.warn(fields, 'peer clock is skewed beyond clock_skew_warn; its writes still count, but last-write-wins between it and this node follows the clocks, not the order of writes');
    else this.logger.info(fields, 'peer clock is back within clock_skew_warn');
  }

  /**
   * How far this node's clock runs ahead of the median judged peer, in ms,
   * when that is beyond max_clock_skew; undefined otherwise (or before any
   * peer could be judged). Only round-trip estimates count.
   */
  selfAheadMs(): number | undefined {
    // Asked by every write: computed once per accepted round-trip sample, not per call.
    if (this.selfAhead === undefined) this.selfAhead = { value: this.computeSelfAhead() };
    return this.selfAhead.value;
  }

  private computeSelfAhead(): number | undefined {
    const offsets: number[] = [];
    for (const s of this.peers.values()) {
      const j = this.judged(s);
      if (j !== undefined) offsets.push(j);
    }
    if (offsets.length === 0) return undefined;
    offsets.sort((a, b) => a - b);
    const m = offsets[Math.floor((offsets.length - 1) / 2)]!;
    return -m > this.maxSkewMs ? -m : undefined;
  }

  snapshot(): Record<string, PeerSkew> {
    const out: Record<string, PeerSkew> = {};
    for (const [peer, s] of this.peers) out[peer] = this.view(s);
    return out;
  }
}

/** Within SAMPLE_INTERVAL_MS of the last sample; a clock that went back never blocks sampling. */
function tooSoon(atMs: number, lastAtMs: number): boolean {
  return atMs >= lastAtMs && atMs - lastAtMs < SAMPLE_INTERVAL_MS;
}

function push<T>(list: T[], item: T, max: number): void {
  list.push(item);
  if (list.length > max) list.shift();
}
