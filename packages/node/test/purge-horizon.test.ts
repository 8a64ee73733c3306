import { type Token, token } from '@chorus/core';
import type { KeyspaceDef } from '@chorus/ring';
import { describe, expect, it } from 'vitest';
import { purgeHorizonOf } from '../src/purge-horizon.js';

const NOW = 1_700_000_000_000_000;
const GRACE_SECONDS = 3_600;
const SKEW_MS = 500;
const simple = { class: 'SimpleStrategy', rf: 3 } as const;

function horizonWith(keyspaces: KeyspaceDef[], repairedAt: (keyspace: string, t: Token) => number | undefined) {
  const defs = new Map(keyspaces.map((k) => [k.name, k]));
  return purgeHorizonOf({ clock: { nowMicros: () => NOW, monotonicMs: () => 0 }, gcGraceSeconds: GRACE_SECONDS, maxClockSkewMs: SKEW_MS, keyspace: (name) => defs.get(name), repairedAt });
}

describe('purge horizon per keyspace', () => {
  const keyspaces: KeyspaceDef[] = [
    { name: 'g', replication: simple, tombstoneGc: 'grace' },
    { name: 'r', replication: simple, tombstoneGc: 'repair' },
    // Stored before the option existed: repair.
    { name: 'old', replication: simple },
  ];

  it('grace: now less gc grace, whatever the repairs', () => {
    const horizon = horizonWith(keyspaces, () => NOW - 1);
    expect(horizon('g', token(0n))).toBe(NOW - GRACE_SECONDS * 1_000_000);
  });

  it('repair: nothing without a recorded repair of the token, so tombstones stay however old', () => {
    const horizon = horizonWith(keyspaces, () => undefined);
    for (const ks of ['r', 'old']) expect(horizon(ks, token(42n))).toBe(-Infinity);
  });

  it('repair: the start of the last repair of the token less the clock skew bound', () => {
    const repaired = NOW - 60_000_000;
    const horizon = horizonWith(keyspaces, (ks, t) => (ks === 'r' && t <= 0n ? repaired : undefined));
    expect(horizon('r', token(-5n))).toBe(repaired - SKEW_MS * 1_000);
    expect(horizon('r', token(5n))).toBe(-Infinity);
    expect(horizon('old', token(-5n))).toBe(-Infinity);
  });

  it('the system keyspace purges on gc grace, and a keyspace the schema does not know (yet) as repair', () => {
    const horizon = horizonWith(keyspaces, () => NOW);
    expect(horizon('system', token(0n))).toBe(NOW - GRACE_SECONDS * 1_000_000);
    expect(horizon('unknown', token(0n))).toBe(NOW - SKEW_MS * 1_000);
    expect(horizonWith(keyspaces, () => undefined)('unknown', token(0n))).toBe(-Infinity);
  });

  it('follows schema changes: the mode is read at each call', () => {
    const defs = new Map<string, KeyspaceDef>([['ks', { name: 'ks', replication: simple, tombstoneGc: 'grace' }]]);
    const horizon = purgeHorizonOf({ clock: { nowMicros: () => NOW, monotonicMs: () => 0 }, gcGraceSeconds: GRACE_SECONDS, maxClockSkewMs: SKEW_MS, keyspace: (name) => defs.get(name), repairedAt: () => undefined });
    expect(horizon('ks', token(0n))).toBe(NOW - GRACE_SECONDS * 1_000_000);
    defs.set('ks', { name: 'ks', replication: simple, tombstoneGc: 'repair' });
    expect(horizon('ks', token(0n))).toBe(-Infinity);
  });
});
