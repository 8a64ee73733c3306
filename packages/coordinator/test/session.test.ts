import { nodeId } from '@chorus/core';
import { type KeyspaceDef, tokenOf } from '@chorus/ring';
import { describe, expect, it } from 'vitest';
import type { CoordinatorHandle } from '../src/index.js';
import { type Cluster, findKey, settle, startCluster, str } from './helpers.js';

const n = nodeId;
const ks: KeyspaceDef = { name: 'app', replication: { class: 'SimpleStrategy', rf: 3 } };
const THREE = [{ name: 'n1' }, { name: 'n2' }, { name: 'n3' }];

async function ok<T>(c: Cluster, p: Promise<T>): Promise<T> {
  const r = await settle(c.sim, p);
  if (!r.ok) throw r.error;
  return r.value;
}

async function localOf(c: Cluster, node: string, key: string, clustering?: string): Promise<string> {
  const cell = await ok(c, c.handle(node).local('app', key, clustering));
  if (cell === undefined) return 'absent';
  return 'value' in cell ? str(cell.value)! : 'tombstone';
}

/** `node` is cut off from the others while `work` runs, then the partition heals. */
async function whileCutOff(c: Cluster, node: string, work: () => Promise<unknown>): Promise<void> {
  const others = [...c.handles.keys()].filter((x) => x !== node).map(n);
  c.sim.network.partition([n(node)], others);
  await work();
  c.sim.network.heal();
  await c.sim.runFor(5);
}

/**
 * What `@chorus/client` sessions keep, reduced to what the coordinator
 * sees: the timestamp of the session's last write per row (its floor) and
 * the largest timestamp it wrote or read (its high-water mark).
 */
class TestSession {
  highWater = 0;
  readonly floors = new Map<string, number>();
  constructor(private readonly c: Cluster) {}

  async put(node: string, key: string, value: string, consistency: string, clustering?: string): Promise<number> {
    const { timestampMicros } = await ok(this.c, this.c.handle(node).put('app', key, clustering, value, { consistency, afterMicros: this.highWater }));
    this.wrote(key, clustering, timestampMicros);
    return timestampMicros;
  }

  wrote(key: string, clustering: string | undefined, ts: number): void {
    const row = `${key}/${clustering ?? ''}`;
    this.floors.set(row, Math.max(this.floors.get(row) ?? 0, ts));
    this.highWater = Math.max(this.highWater, ts);
  }

  get(node: string, key: string, consistency: string): ReturnType<CoordinatorHandle['get']> {
    const floor = this.floors.get(`${key}/`);
    return this.c.handle(node).get('app', key, undefined, floor === undefined ? { consistency } : { consistency, floorMicros: floor });
  }
}

describe('session reads (read your writes at ONE)', () => {
  it('seed 1300: a read at ONE whose replica missed the session\'s write asks the others, repairs it and returns the write; without the session it returns the old value', async () => {
    const seed = 1300;
    const c = await startCluster({ seed, nodes: THREE, keyspaces: [ks] });
    await ok(c, c.handle('n1').put('app', 'k', undefined, 'v1', { consistency: 'ALL' }));
    const session = new TestSession(c);
    await whileCutOff(c, 'n3', () => session.put('n1', 'k', 'v2', 'ONE'));
    expect(await localOf(c, 'n3', 'k')).toBe('v1');

    // Without the session: n3 reads its own replica at ONE, and goes back in time.
    const plain = await ok(c, c.handle('n3').get('app', 'k', undefined, { consistency: 'ONE' }));
    expect(str(plain?.value), `seed ${seed}`).toBe('v1');
    expect(c.handle('n3').stats().sessionFloor).toEqual({ escalations: 0, notMet: 0 });

    // In the session: the same read, one more round trip, the session's own write.
    const got = await ok(c, session.get('n3', 'k', 'ONE'));
    expect(str(got?.value), `seed ${seed}`).toBe('v2');
    expect(got?.timestampMicros).toBe(session.floors.get('k/'));
    expect(c.handle('n3').stats().sessionFloor).toEqual({ escalations: 1, notMet: 0 });
    // The stale replica that answered is repaired; at ONE the replica that had the write meets the level alone, so the read did not wait for it.
    expect(c.handle('n3').stats().readRepair).toMatchObject({ mismatches: 1, rowsRepaired: 1 });
    await c.sim.runFor(10);
    expect(await localOf(c, 'n3', 'k')).toBe('v2');
    // Now n3 has it, so the next session read costs one round trip again.
    expect(str((await ok(c, session.get('n3', 'k', 'ONE')))?.value)).toBe('v2');
    expect(c.handle('n3').stats().sessionFloor.escalations).toBe(1);
    expect(c.rejectedFrames()).toBe(0);
  });

  it('seed 1301: a session delete is a floor too: the read finds the tombstone, not the value it shadows', async () => {
    const seed = 1301;
    const c = await startCluster({ seed, nodes: THREE, keyspaces: [ks] });
    await ok(c, c.handle('n1').put('app', 'k', undefined, 'v1', { consistency: 'ALL' }));
    const session = new TestSession(c);
    await whileCutOff(c, 'n3', async () => {
      const { timestampMicros } = await ok(c, c.handle('n2').del('app', 'k', undefined, { consistency: 'ONE', afterMicros: session.highWater }));
      session.wrote('k', undefined, timestampMicros);
    });
    expect(str((await ok(c, c.handle('n3').get('app', 'k', undefined, { consistency: 'ONE' })))?.value)).toBe('v1');
    expect(await ok(c, session.get('n3', 'k', 'ONE')), `seed ${seed}`).toBeUndefined();
    await c.sim.runFor(10);
    expect(await localOf(c, 'n3', 'k')).toBe('tombstone');
  });

  it('seed 1302: SessionFloorNotMet when the only replica holding the write is down; the read succeeds once it is back', async () => {
    const seed = 1302;
    const c = await startCluster({ seed, nodes: THREE, keyspaces: [ks] });
    const v1 = await ok(c, c.handle('n1').put('app', 'k', undefined, 'v1', { consistency: 'ALL' }));
    const session = new TestSession(c);
    // Only n1 takes the session's write.
    c.sim.network.partition([n('n1')], [n('n2'), n('n3')]);
    const ts = await session.put('n1', 'k', 'v2', 'ONE');
    c.sim.network.heal();
    c.sim.crash('n1');
    await c.sim.runFor(5);

    for (const consistency of ['ONE', 'QUORUM']) {
      const r = await settle(c.sim, session.get('n3', 'k', consistency));
      expect(r.ok, `seed ${seed} ${consistency}`).toBe(false);
      if (r.ok) return;
      expect(r.error).toMatchObject({ name: 'SessionFloorNotMet', consistency, floorMicros: ts, foundMicros: v1.timestampMicros, answered: 2, alive: 2 });
      expect((r.error as unknown as { httpStatus: number }).httpStatus).toBe(503);
      expect(r.error.message).toMatch(/retry later/);
    }
    expect(c.handle('n3').stats().sessionFloor).toEqual({ escalations: 2, notMet: 2 });
    // Never a silent older value: a plain read at ONE still answers v1, and that is all it promises.
    expect(str((await ok(c, c.handle('n3').get('app', 'k', undefined, { consistency: 'ONE' })))?.value)).toBe('v1');

    await c.sim.restart('n1');
    await c.sim.runFor(5);
    const got = await ok(c, session.get('n3', 'k', 'ONE'));
    expect(str(got?.value), `seed ${seed}`).toBe('v2');
  });

  it('seed 1303: a floor the first answers meet costs nothing more', async () => {
    const c = await startCluster({ seed: 1303, nodes: THREE, keyspaces: [ks] });
    const session = new TestSession(c);
    await session.put('n1', 'k', 'v', 'ALL');
    for (const node of ['n1', 'n2', 'n3']) expect(str((await ok(c, session.get(node, 'k', 'ONE')))?.value)).toBe('v');
    for (const node of ['n1', 'n2', 'n3']) expect(c.handle(node).stats().sessionFloor).toEqual({ escalations: 0, notMet: 0 });
  });

  it('seed 1304: a slice in a session returns the rows the session wrote that its replica missed; floors the page does not reach cost nothing', async () => {
    const seed = 1304;
    const c = await startCluster({ seed, nodes: THREE, keyspaces: [ks] });
    const h1 = c.handle('n1');
    for (const ck of ['a', 'b', 'c']) await ok(c, h1.put('app', 'wide', ck, `${ck}1`, { consistency: 'ALL' }));
    const session = new TestSession(c);
    await whileCutOff(c, 'n3', async () => {
      await session.put('n1', 'wide', 'b2', 'ONE', 'b');
      await session.put('n1', 'wide', 'd2', 'ONE', 'd');
      const del = await ok(c, h1.del('app', 'wide', 'c', { consistency: 'ONE', afterMicros: session.highWater }));
      session.wrote('wide', 'c', del.timestampMicros);
    });
    const floors = ['b', 'c', 'd'].map((ck) => ({ clustering: ck, timestampMicros: session.floors.get(`wide/${ck}`)! }));
    const n3 = c.handle('n3');
    const rows = (page: { rows: Array<{ clustering: Uint8Array; value: Uint8Array }> }) => page.rows.map((r) => `${str(r.clustering)}=${str(r.value)}`);

    expect(rows(await ok(c, n3.slice('app', 'wide', { consistency: 'ONE' }))), `seed ${seed}`).toEqual(['a=a1', 'b=b1', 'c=c1']);
    // Up to b: only b's floor is in the page, and n3's b is older.
    const first = await ok(c, n3.slice('app', 'wide', { consistency: 'ONE', to: 'b', floors }));
    expect(rows(first)).toEqual(['a=a1', 'b=b2']);
    expect(n3.stats().sessionFloor).toEqual({ escalations: 1, notMet: 0 });
    // The whole partition: c's tombstone and d, which n3 never had.
    expect(rows(await ok(c, n3.slice('app', 'wide', { consistency: 'ONE', floors }))), `seed ${seed}`).toEqual(['a=a1', 'b=b2', 'd=d2']);
    expect(n3.stats().sessionFloor).toEqual({ escalations: 2, notMet: 0 });
    await c.sim.runFor(10);
    expect(await Promise.all(['b', 'c', 'd'].map((ck) => localOf(c, 'n3', 'wide', ck)))).toEqual(['b2', 'tombstone', 'd2']);
    // The page ends before any floor: no second round trip.
    expect(rows(await ok(c, n3.slice('app', 'wide', { consistency: 'ONE', to: 'a', floors: floors.map((f) => ({ ...f, timestampMicros: f.timestampMicros + 1 })) })))).toEqual(['a=a1']);
    expect(n3.stats().sessionFloor).toEqual({ escalations: 2, notMet: 0 });
  });
});

describe('session writes (never reordered by clock skew)', () => {
  /**
   * Five nodes; n1's clock runs 800 ms ahead (within max_clock_skew, so
   * nothing refuses it). One client writes one key alternately through n1
   * and n2 at QUORUM, each write once the previous was acknowledged. Neither
   * coordinator is a replica of the key, so n2 hears n1's clock only in the
   * replicas' answers, after it stamped its write. Returns the writes whose
   * timestamp is not above an earlier acknowledged write's: they are lost the
   * moment they are acknowledged (last write wins keeps the earlier one).
   */
  async function alternate(seed: number, withSession: boolean): Promise<{ c: Cluster; lost: number[]; last: string; writes: number }> {
    const c = await startCluster({ seed, nodes: ['n1', 'n2', 'n3', 'n4', 'n5'].map((name) => ({ name })), keyspaces: [ks] });
    const key = findKey(c.ring, ks, (r) => !r.includes(n('n1')) && !r.includes(n('n2')));
    const reader = c.ring.naturalReplicas(tokenOf(key), ks.replication)[0]!;
    c.sim.setClockSkew('n1', 800_000);
    let highWater = 0;
    let newest = 0;
    const lost: number[] = [];
    const writes = 200;
    for (let i = 0; i < writes; i++) {
      const via = i % 2 === 0 ? 'n1' : 'n2';
      const options = withSession ? { consistency: 'QUORUM', afterMicros: highWater } : { consistency: 'QUORUM' };
      const { timestampMicros } = await ok(c, c.handle(via).put('app', key, undefined, `w${i}`, options));
      if (timestampMicros <= newest) lost.push(i);
      newest = Math.max(newest, timestampMicros);
      highWater = Math.max(highWater, timestampMicros);
    }
    await c.sim.runFor(100);
    const final = await ok(c, c.handle(reader).get('app', key, undefined, { consistency: 'ALL' }));
    return { c, lost, last: str(final?.value)!, writes };
  }

  it('seed 1310: without a session some acknowledged writes are lost; in a session none is', async () => {
    const seed = 1310;
    const plain = await alternate(seed, false);
    console.log(`clock skew 800 ms, ${plain.writes} alternating QUORUM writes: ${plain.lost.length} acknowledged writes lost without a session (last value ${plain.last})`);
    expect(plain.lost.length, `seed ${seed}`).toBeGreaterThan(0);

    const session = await alternate(seed, true);
    console.log(`in a session: ${session.lost.length} lost (last value ${session.last})`);
    expect(session.lost, `seed ${seed}`).toEqual([]);
    expect(session.last).toBe(`w${session.writes - 1}`);
  });

  it('seed 1311: a write is stamped above the session\'s high-water mark; one too far ahead, or with a timestamp too, is refused', async () => {
    const c = await startCluster({ seed: 1311, nodes: THREE, keyspaces: [ks] });
    const h = c.handle('n2');
    const after = h.clock.peek() + 600_000;
    const w = await ok(c, h.put('app', 'k', undefined, 'v', { afterMicros: after }));
    expect(w.timestampMicros).toBeGreaterThan(after);
    const far = await settle(c.sim, h.put('app', 'k', undefined, 'v', { afterMicros: h.clock.peek() + 5_000_000 }));
    expect(far).toMatchObject({ ok: false, error: { name: 'InvalidRequest', fields: { reason: 'TIMESTAMP_IN_FUTURE' } } });
    const both = await settle(c.sim, h.put('app', 'k', undefined, 'v', { afterMicros: 1, timestampMicros: 2 }));
    expect(both).toMatchObject({ ok: false, error: { name: 'InvalidRequest', fields: { field: 'after' } } });
    const negative = await settle(c.sim, h.get('app', 'k', undefined, { floorMicros: -1 }));
    expect(negative).toMatchObject({ ok: false, error: { name: 'InvalidRequest', fields: { field: 'floor' } } });
  });

  it('seed 1312: a timed-out write names its timestamp, so a session can order its next write after it', async () => {
    const c = await startCluster({ seed: 1312, nodes: THREE, keyspaces: [ks], coordinator: { writeTimeoutMs: 500 } });
    for (const other of ['n2', 'n3']) c.sim.network.setLink(n('n1'), n(other), { loss: 1 });
    const r = await settle(c.sim, c.handle('n1').put('app', 'k', undefined, 'v', { consistency: 'QUORUM' }));
    expect(r).toMatchObject({ ok: false, error: { name: 'WriteTimeout', fields: { received: 1 } } });
    const ts = !r.ok ? (r.error.fields?.timestampMicros as number) : 0;
    expect(ts).toBeGreaterThan(0);
    expect(await ok(c, c.handle('n1').local('app', 'k'))).toMatchObject({ timestampMicros: ts });
  });
});
