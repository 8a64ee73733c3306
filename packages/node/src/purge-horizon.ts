import type { Clock, Token } from '@chorus/core';
import { type KeyspaceDef, tombstoneGcOf } from '@chorus/ring';
import { SYSTEM_KEYSPACE } from '@chorus/storage';

export interface PurgeHorizonOptions {
  clock: Clock;
  gcGraceSeconds: number;
  /** max_clock_skew: how far this node's clock may be from the one that timed a repair. */
  maxClockSkewMs: number;
  /** The keyspace's current definition (undefined for one the schema does not know). */
  keyspace: (name: string) => KeyspaceDef | undefined;
  /**
   * When the last successful full repair of the range holding `token` in
   * `keyspace` started (micros), or undefined when none is recorded.
   */
  repairedAt: (keyspace: string, t: Token) => number | undefined;
}

/**
 * The storage sweep's purge horizon, per keyspace and token, from the
 * keyspace's `tombstone_gc`:
 * - `grace`: now − gc_grace_seconds, trusting that every replica got a
 *   tombstone within that time (hints, read repair, repairs run in time).
 * - `repair`: a tombstone stored here before a full repair of its range
 *   started was compared by that repair and so is on every replica now; the
 *   repair's start, less the clock skew bound since another node timed it,
 *   is the horizon. With no repair recorded nothing is purged: without
 *   repairs no replica can know the others have its tombstones.
 * The node's own `system` keyspace is never replicated and keeps gc grace. A
 * keyspace the schema does not know (data that arrived before its
 * definition) reads as the default, `repair`.
 */
export function purgeHorizonOf(o: PurgeHorizonOptions): (keyspace: string, t: Token) => number {
  const graceMicros = o.gcGraceSeconds * 1_000_000;
  const skewMicros = o.maxClockSkewMs * 1_000;
  return (keyspace, t) => {
    if (keyspace === SYSTEM_KEYSPACE) return o.clock.nowMicros() - graceMicros;
    const def = o.keyspace(keyspace);
    if (tombstoneGcOf(def ?? {}) === 'grace') return o.clock.nowMicros() - graceMicros;
    const repaired = o.repairedAt(keyspace, t);
    return repaired === undefined ? -Infinity : repaired - skewMicros;
  };
}
