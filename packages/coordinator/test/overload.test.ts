import { describe, expect, it } from 'vitest';
import { settle, startCluster } from './helpers.js';

const ks = { name: 'app', replication: { class: 'SimpleStrategy', rf: 3 } } as const;
const MiB = 1024 * 1024;

describe('coordinated request bytes', () => {
  it('refuses a write that would take the bytes coordinated at once past the budget with Overloaded, and takes it again once they are answered', async () => {
    const c = await startCluster({ seed: 31, nodes: [{ name: 'n1' }, { name: 'n2' }, { name: 'n3' }], keyspaces: [ks], coordinator: { maxInFlightBytes: 4 * MiB } });
    const h = c.handle('n1');
    const value = new Uint8Array(MiB);
    // Started in one turn: none is answered before the next starts, so the budget decides.
    const writes = Array.from({ length: 8 }, (_, i) => h.put('app', `big${i}`, undefined, value));
    const outcomes = await Promise.all(writes.map((w) => settle(c.sim, w)));
    const refused = outcomes.filter((o) => !o.ok);
    expect(outcomes.filter((o) => o.ok).length).toBe(3);
    expect(refused).toHaveLength(5);
    for (const o of refused) {
      expect(o.ok === false && o.error).toMatchObject({ name: 'Overloaded', code: 'OVERLOADED', httpStatus: 503, fields: expect.objectContaining({ budgetBytes: 4 * MiB }) });
    }
    // The budget is free again once the writes in flight are answered.
    expect((await settle(c.sim, h.put('app', 'after', undefined, value))).ok).toBe(true);
  });
});
