import { describe, expect, it } from 'vitest';
import { VolatileLevel } from '../src/disk.js';

/** LevelDB's `sync` option: memory-level's types leave it out, and the store passes it the same way. */
const SYNC = { sync: true } as never;
const b = (s: string) => new TextEncoder().encode(s);
const text = (v: Uint8Array | undefined) => (v === undefined ? undefined : new TextDecoder().decode(v));

async function contents(db: VolatileLevel): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for await (const [k, v] of db.iterator()) out[text(k)!] = text(v)!;
  return out;
}

describe('the simulated disk: a power failure loses the writes since the last sync', () => {
  it('puts, deletes and chained batches after the last sync are undone; synced ones stay, and a sync makes every earlier write durable', async () => {
    let now = 0;
    const db = new VolatileLevel().clock(() => now);
    await db.open();
    await db.put(b('a'), b('1'));
    await db.put(b('b'), b('1'));
    now = 5;
    await db.put(b('c'), b('1'), SYNC);
    expect(db.lastSyncMs).toBe(5);
    now = 7;
    await db.put(b('a'), b('2'));
    await db.del(b('b'));
    const batch = db.batch();
    batch.put(b('d'), b('1'));
    batch.put(b('a'), b('3'));
    await batch.write();
    expect(await contents(db)).toEqual({ a: '3', c: '1', d: '1' });
    expect(db.unsyncedKeys).toBe(3);
    expect(db.powerLoss()).toBe(3);
    expect(await contents(db)).toEqual({ a: '1', b: '1', c: '1' });
    // A write a dead process still issues lands nowhere until the machine is on again.
    await db.put(b('e'), b('1'), SYNC);
    expect(await contents(db)).toEqual({ a: '1', b: '1', c: '1' });
    db.powerOn();
    await db.batch([{ type: 'put', key: b('e'), value: b('1') }], SYNC);
    await db.put(b('f'), b('1'));
    db.powerLoss();
    expect(await contents(db)).toEqual({ a: '1', b: '1', c: '1', e: '1' });
  });
});
