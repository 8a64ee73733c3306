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

  /** Throws InvalidRequest for a timestamp (from a client or a peer's mutation) too far in the future. */
  checkNotTooFarAhead(timestampMicros: number, what: string): void {
    const wall = this.wallMicros();
    if (timestampMicros > wall + this.maxSkewMicros) {
      throw new InvalidRequest(
        `${what} ${timestampMicros} is ${Math.round((timestampMicros - wall) / 1000)} ms ahead of this node's clock; the limit (max_clock_skew) is ${this.maxSkewMicros / 1000} ms`,
        { reason: 'TIMESTAMP_IN_FUTURE', timestampMicros, maxClockSkewMs: this.maxSkewMicros / 1000 },
      );
    }
  }
}

export interface PeerSkew {
  /** Estimated offset of the peer's wall clock from ours, in ms (positive: the peer is ahead). */
  skewMs: number;
  /** Whether the estimate is beyond max_clock_skew. */
  flagged: boolean;
  samples: number;
}

/**
 * Per-peer clock-offset estimates from the wall-clock readings peers put in
 * their messages. A reading is taken at send time and compared with ours at
 * receipt, so the estimate is biased by one-way latency (milliseconds, far
 * below the skew bound); smoothing keeps one delayed frame from flagging a peer.
 */
export class SkewTracker {
  private readonly peers = new Map<NodeId, PeerSkew & { warned: boolean }>();

  constructor(private readonly maxSkewMs: number, private readonly logger: Logger) {}

  observe(peer: NodeId, peerWallMicros: number, ourWallMicros: number): void {
    const sample = (peerWallMicros - ourWallMicros) / 1000;
    let s = this.peers.get(peer);
    if (s === undefined) {
      s = { skewMs: sample, flagged: false, samples: 0, warned: false };
      this.peers.set(peer, s);
    } else {
      s.skewMs += 0.3 * (sample - s.skewMs);
    }
    s.samples++;
    s.flagged = Math.abs(s.skewMs) > this.maxSkewMs;
    if (s.flagged && !s.warned) {
      s.warned = true;
      this.logger.warn(
        { peer, skewMs: Math.round(s.skewMs), maxClockSkewMs: this.maxSkewMs },
        'peer clock is skewed beyond max_clock_skew; timestamps from it beyond the bound are refused',
      );
    }
  }

  /**
   * How far this node's clock runs ahead of the median peer, in ms, when that
   * is beyond max_clock_skew; undefined otherwise (or with no estimates).
   */
  selfAheadMs(): number | undefined {
    const offsets = [...this.peers.values()].map((s) => s.skewMs).sort((a, b) => a - b);
    if (offsets.length === 0) return undefined;
    const median = offsets[Math.floor((offsets.length - 1) / 2)]!;
    return -median > this.maxSkewMs ? -median : undefined;
  }

  snapshot(): Record<string, PeerSkew> {
    const out: Record<string, PeerSkew> = {};
    for (const [peer, s] of this.peers) out[peer] = { skewMs: s.skewMs, flagged: s.flagged, samples: s.samples };
    return out;
  }
}
