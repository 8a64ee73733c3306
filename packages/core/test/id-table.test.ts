import { describe, expect, it } from 'vitest';
import { IdTable, SeededRandom } from '../src/index.js';

describe('IdTable', () => {
  it('holds what a Map holds under random sets and deletes of increasing ids, with long-lived stragglers and growth', () => {
    for (let seed = 1; seed <= 10; seed++) {
      const random = new SeededRandom(seed);
      const table = new IdTable<{ id: number }>();
      const model = new Map<number, { id: number }>();
      let next = seed * 1_000_003; // ids need not start at zero
      const live: number[] = [];
      let wrong = 0;
      for (let step = 0; step < 10_000; step++) {
        const r = random.next();
        if (r < 0.5 || live.length === 0) {
          // A burst now and then grows the table past its first capacity.
          const burst = random.next() < 0.002 ? 3_000 : 1;
          for (let i = 0; i < burst; i++) {
            const id = next++;
            const value = { id };
            table.set(id, value);
            model.set(id, value);
            live.push(id);
          }
        } else if (r < 0.95) {
          // Mostly the newest entries end; some stay for thousands of ids (stragglers).
          const at = random.next() < 0.9 ? live.length - 1 - Math.floor(random.next() * Math.min(live.length, 64)) : Math.floor(random.next() * live.length);
          const id = live[at]!;
          live.splice(at, 1);
          if (!table.delete(id)) wrong++;
          model.delete(id);
        } else {
          // Deleting or overwriting something absent or present.
          const id = random.next() < 0.5 ? next + 5 : live[Math.floor(random.next() * live.length)]!;
          if (model.has(id)) {
            const value = { id };
            table.set(id, value);
            model.set(id, value);
          } else if (table.delete(id)) wrong++;
        }
      }
      expect(wrong, `seed ${seed}: deletes that disagreed with the model`).toBe(0);
      expect(table.size, `seed ${seed}`).toBe(model.size);
      expect([...model].filter(([id, value]) => table.get(id) !== value), `seed ${seed}`).toEqual([]);
      expect(new Map(table.entries()), `seed ${seed}`).toEqual(model);
      expect(table.has(next + 1), `seed ${seed}`).toBe(false);
    }
  });

  it('lets the entry being visited be deleted', () => {
    const table = new IdTable<string>();
    for (let id = 0; id < 5_000; id++) table.set(id, `v${id}`);
    let seen = 0;
    for (const [id] of table.entries()) {
      table.delete(id);
      seen++;
    }
    expect(seen).toBe(5_000);
    expect(table.size).toBe(0);
  });

  it('forgets everything on clear, stragglers included', () => {
    const table = new IdTable<number>();
    table.set(1, 1);
    for (let id = 2; id < 10_000; id++) {
      table.set(id, id);
      table.delete(id);
    }
    table.set(1 + 1024, 1025); // takes the first entry's slot: the first becomes a straggler
    table.clear();
    expect(table.size).toBe(0);
    expect(table.get(1)).toBeUndefined();
    expect(table.get(1025)).toBeUndefined();
    expect([...table.entries()]).toEqual([]);
  });

  it('gives back the slots of a burst once it is over, keeping what is still there', () => {
    const table = new IdTable<number>();
    const first = table.capacity;
    for (let id = 0; id < 100_000; id++) table.set(id, id);
    expect(table.capacity).toBeGreaterThanOrEqual(200_000);
    // The burst ends but for a few long-lived entries; the steady load that follows has 10 in flight.
    for (let id = 0; id < 100_000; id++) if (id % 10_000 !== 0) table.delete(id);
    for (let id = 100_000; id < 300_000; id++) {
      table.set(id, id);
      if (id >= 100_010) table.delete(id - 10);
    }
    expect(table.capacity).toBe(first);
    expect(table.size).toBe(20);
    const expected = [...Array.from({ length: 10 }, (_, i) => i * 10_000), ...Array.from({ length: 10 }, (_, i) => 299_990 + i)];
    expect([...table.entries()].map(([id]) => id).sort((a, b) => a - b)).toEqual(expected);
    for (const id of expected) expect(table.get(id)).toBe(id);
    table.clear();
    expect(table.capacity).toBe(first);
  });
});
