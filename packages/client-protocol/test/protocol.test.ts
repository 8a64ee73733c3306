import { describe, expect, it } from 'vitest';
import * as protocol from '../src/index.js';

describe('protocol validation', () => {
  it('never throws on an op of any type msgpack can carry (a BigInt op once crashed the node)', () => {
    let deep: unknown = 0;
    for (let i = 0; i < 10_000; i++) deep = [deep];
    for (const op of [10n, 2n ** 64n - 1n, deep, { toJSON: 'x' }, new Uint8Array(3), null, 1.5, 'x'.repeat(100_000)]) {
      const checked = protocol.validateRequest({ id: 7, op });
      expect(checked).toMatchObject({ ok: false, id: 7, field: 'op' });
      expect((checked as { message: string }).message.length).toBeLessThan(200);
    }
  });

  it('accepts every op in its documented shape', () => {
    const good: unknown[] = [
      { id: 1, op: 'hello', v: 1 },
      { id: 2, op: 'put', ks: 'default', key: 'k', value: new Uint8Array([1]), ck: 'c', cl: 'QUORUM', ttl: 10, ts: 123 },
      { id: 3, op: 'get', ks: 'default', key: new Uint8Array([1, 2]) },
      { id: 4, op: 'del', ks: 'default', key: 'k', ts: 5 },
      { id: 5, op: 'slice', ks: 'default', key: 'p', from: 'a', to: 'z', limit: 10, page: new Uint8Array(3), reverse: true, cl: 'ONE' },
      { id: 6, op: 'local', ks: 'default', key: 'k' },
      { id: 7, op: 'ring' },
      { id: 8, op: 'put', ks: 'default', key: 'k', value: 'v', after: 1_700_000_000_000_000 },
      { id: 9, op: 'del', ks: 'default', key: 'k', after: 0 },
      { id: 10, op: 'get', ks: 'default', key: 'k', floor: 1_700_000_000_000_000 },
      { id: 11, op: 'slice', ks: 'default', key: 'p', floors: [{ ck: 'a', ts: 1 }, { ck: new Uint8Array([1]), ts: 2 }] },
      { id: protocol.MAX_REQUEST_ID, op: 'stats' },
    ];
    for (const item of good) expect(protocol.validateRequest(item)).toMatchObject({ ok: true });
  });

  it('refuses, naming the field and keeping the id when it is usable', () => {
    const cases: Array<[unknown, number, string | undefined]> = [
      [{ id: 1, op: 'nope' }, 1, 'op'],
      [{ op: 'ring' }, 0, 'id'],
      [{ id: 0, op: 'ring' }, 0, 'id'],
      [{ id: 1.5, op: 'ring' }, 0, 'id'],
      [{ id: 2 ** 32, op: 'ring' }, 0, 'id'],
      [{ id: 9, op: 'get', ks: '', key: 'k' }, 9, 'ks'],
      [{ id: 9, op: 'get', ks: 'default' }, 9, 'key'],
      [{ id: 9, op: 'get', ks: 'default', key: 'k', bogus: 1 }, 9, undefined],
      [{ id: 9, op: 'put', ks: 'default', key: 'k', value: { a: 1 } }, 9, 'value'],
      [{ id: 9, op: 'put', ks: 'default', key: 'k', value: 'v', ttl: 0 }, 9, 'ttl'],
      [{ id: 9, op: 'put', ks: 'default', key: 'k', value: 'v', ts: -1 }, 9, 'ts'],
      [{ id: 9, op: 'slice', ks: 'default', key: 'k', limit: 100_000 }, 9, 'limit'],
      [{ id: 9, op: 'put', ks: 'default', key: 'k', value: 'v', after: -1 }, 9, 'after'],
      [{ id: 9, op: 'get', ks: 'default', key: 'k', floor: 1.5 }, 9, 'floor'],
      [{ id: 9, op: 'get', ks: 'default', key: 'k', after: 1 }, 9, undefined],
      [{ id: 9, op: 'slice', ks: 'default', key: 'k', floors: [{ ck: 'a' }] }, 9, 'floors'],
      [{ id: 9, op: 'slice', ks: 'default', key: 'k', floors: Array.from({ length: 1001 }, () => ({ ck: 'a', ts: 1 })) }, 9, 'floors'],
      [{ id: 9, op: 'get', ks: 'default', key: new Uint8Array(70_000) }, 9, 'key'],
      ['text', 0, undefined],
      [null, 0, undefined],
      [[{ id: 1, op: 'ring' }], 0, undefined],
    ];
    for (const [item, id, field] of cases) {
      const result = protocol.validateRequest(item);
      expect(result.ok, JSON.stringify(item)?.slice(0, 80)).toBe(false);
      if (result.ok) continue;
      expect(result.id).toBe(id);
      if (field) expect(result.field).toBe(field);
      expect(result.message.length).toBeGreaterThan(0);
    }
  });
});
