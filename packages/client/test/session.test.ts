import { MAX_SLICE_FLOORS } from '@chorus/client-protocol';
import { describe, expect, it } from 'vitest';
import { WriteTimeout } from '../src/errors.js';
import type { Bytes, DelOptions, GetOptions, PutOptions, SliceOptions } from '../src/options.js';
import { Session, type SessionCalls } from '../src/session.js';

const text = (b: Bytes | undefined): string | undefined => (b === undefined ? undefined : typeof b === 'string' ? b : new TextDecoder().decode(b));

/** What a session sends, with a server whose clock is a counter. */
class FakeCalls implements SessionCalls {
  clock = 1_000;
  readonly sent: Array<Record<string, unknown>> = [];
  rows: Array<{ clustering: Uint8Array; value: Uint8Array; timestamp: number }> = [];
  nextPage: Uint8Array | undefined;
  failWrite: Error | undefined;

  async putIn(ks: string, key: Bytes, _value: Bytes, options: PutOptions, after: number | undefined) {
    this.sent.push({ op: 'put', ks, key: text(key), ck: text(options.clustering), after });
    if (this.failWrite) throw this.failWrite;
    return { timestamp: options.timestamp ?? Math.max(++this.clock, (after ?? 0) + 1) };
  }
  async delIn(ks: string, key: Bytes, options: DelOptions, after: number | undefined) {
    this.sent.push({ op: 'del', ks, key: text(key), after });
    return { timestamp: Math.max(++this.clock, (after ?? 0) + 1) };
  }
  async getIn(ks: string, key: Bytes, options: GetOptions, floor: number | undefined) {
    this.sent.push({ op: 'get', ks, key: text(key), ck: text(options.clustering), floor });
    return { value: new Uint8Array([1]), timestamp: this.clock };
  }
  async sliceIn(ks: string, partition: Bytes, options: SliceOptions, floors: Array<{ ck: Uint8Array; ts: number }> | undefined) {
    this.sent.push({ op: 'slice', ks, key: text(partition), from: text(options.from), to: text(options.to), floors: floors?.map((f) => `${text(f.ck)}@${f.ts}`) });
    return this.nextPage === undefined ? { rows: this.rows } : { rows: this.rows, nextPage: this.nextPage };
  }
}

describe('sessions', () => {
  it('reads carry the floor of the row the session wrote; writes carry the high-water mark', async () => {
    const calls = new FakeCalls();
    const s = new Session(calls);
    const a = await s.put('ks', 'a', 'v');
    expect(calls.sent.at(-1)).toMatchObject({ op: 'put', after: 0 });
    await s.get('ks', 'a');
    expect(calls.sent.at(-1)).toEqual({ op: 'get', ks: 'ks', key: 'a', ck: undefined, floor: a.timestamp });
    // Another row, another clustering key, another keyspace: no floor.
    for (const [ks, key, ck] of [['ks', 'b', undefined], ['ks', 'a', 'c'], ['other', 'a', undefined]] as const) {
      await s.get(ks, key, ck === undefined ? {} : { clustering: ck });
      expect(calls.sent.at(-1)).toMatchObject({ floor: undefined });
    }
    const b = await s.put('ks', 'a', 'v', { clustering: 'c' });
    expect(calls.sent.at(-1)).toMatchObject({ after: a.timestamp });
    expect(s.floorOf('ks', 'a', 'c')).toBe(b.timestamp);
    expect(s.floorOf('ks', new TextEncoder().encode('a'), new TextEncoder().encode('c'))).toBe(b.timestamp);
    const d = await s.del('ks', 'a');
    expect(calls.sent.at(-1)).toMatchObject({ op: 'del', after: b.timestamp });
    expect(s.floorOf('ks', 'a')).toBe(d.timestamp);
    expect(s.highWaterMicros).toBe(d.timestamp);
  });

  it('the high-water mark follows reads too, and a timed-out write that names its timestamp', async () => {
    const calls = new FakeCalls();
    const s = new Session(calls);
    calls.clock = 5_000;
    await s.get('ks', 'x');
    expect(s.highWaterMicros).toBe(5_000);
    calls.failWrite = new WriteTimeout('timed out', { consistency: 'QUORUM', required: 2, received: 1, timestampMicros: 9_000 });
    await expect(s.put('ks', 'x', 'v')).rejects.toBeInstanceOf(WriteTimeout);
    expect(s.highWaterMicros).toBe(9_000);
    expect(s.floorOf('ks', 'x')).toBeUndefined();
    calls.failWrite = undefined;
    await s.put('ks', 'x', 'v');
    expect(calls.sent.at(-1)).toMatchObject({ after: 9_000 });
    // A write with the client's own timestamp is not stamped by the session.
    await s.put('ks', 'y', 'v', { timestamp: 42 });
    expect(calls.sent.at(-1)).toMatchObject({ after: undefined });
    expect(s.floorOf('ks', 'y')).toBe(42);
  });

  it('keeps at most maxKeys rows, dropping the least recently used', async () => {
    const calls = new FakeCalls();
    const s = new Session(calls, { maxKeys: 3 });
    for (const k of ['a', 'b', 'c']) await s.put('ks', k, 'v');
    await s.get('ks', 'a'); // a is used again: b is now the oldest
    await s.put('ks', 'd', 'v');
    expect(s.size).toBe(3);
    expect(['a', 'b', 'c', 'd'].map((k) => s.floorOf('ks', k) !== undefined)).toEqual([true, false, true, true]);
    await s.get('ks', 'b');
    expect(calls.sent.at(-1)).toMatchObject({ floor: undefined });
    // Writing a row it remembers does not grow the session.
    await s.put('ks', 'c', 'v2');
    expect(s.size).toBe(3);
    expect(() => new Session(calls, { maxKeys: 0 })).toThrow(TypeError);
  });

  it('a slice carries the floors of the rows of its partition in its bounds, in scan order', async () => {
    const calls = new FakeCalls();
    const s = new Session(calls);
    const ts: Record<string, number> = {};
    for (const ck of ['d', 'b', 'a', 'c']) ts[ck] = (await s.put('ks', 'p', 'v', { clustering: ck })).timestamp;
    await s.put('ks', 'other', 'v', { clustering: 'b' });
    await s.slice('ks', 'p', { from: 'b', to: 'c' });
    expect(calls.sent.at(-1)!.floors).toEqual([`b@${ts.b}`, `c@${ts.c}`]);
    await s.slice('ks', 'p', { reverse: true, page: new TextEncoder().encode('c') });
    expect(calls.sent.at(-1)!.floors).toEqual([`b@${ts.b}`, `a@${ts.a}`]);
    await s.slice('ks', 'nothing');
    expect(calls.sent.at(-1)!.floors).toBeUndefined();
    calls.clock = 7_777;
    calls.rows = [{ clustering: new Uint8Array([97]), value: new Uint8Array(), timestamp: 7_777 }];
    await s.slice('ks', 'p');
    expect(s.highWaterMicros).toBe(7_777);
  });

  it('a slice over more rows than one request may carry floors for is narrowed to the last floor it carries, and resumes after it', async () => {
    const calls = new FakeCalls();
    const s = new Session(calls, { maxKeys: MAX_SLICE_FLOORS + 10 });
    const key = (i: number) => `r${String(i).padStart(5, '0')}`;
    for (let i = 0; i < MAX_SLICE_FLOORS + 5; i++) await s.put('ks', 'p', 'v', { clustering: key(i) });
    const first = await s.slice('ks', 'p', { to: 'zzz' });
    const sent = calls.sent.at(-1)!;
    expect((sent.floors as string[]).length).toBe(MAX_SLICE_FLOORS);
    expect(sent.to).toBe(key(MAX_SLICE_FLOORS - 1));
    expect(text(first.nextPage)).toBe(key(MAX_SLICE_FLOORS - 1));
    await s.slice('ks', 'p', { to: 'zzz', page: first.nextPage! });
    expect(calls.sent.at(-1)).toMatchObject({ to: 'zzz' });
    expect((calls.sent.at(-1)!.floors as string[]).map((f) => f.split('@')[0])).toEqual([0, 1, 2, 3, 4].map((i) => key(MAX_SLICE_FLOORS + i)));
    // A server's own next page, before the narrowed bound, is kept.
    calls.nextPage = new TextEncoder().encode(key(10));
    expect(text((await s.slice('ks', 'p')).nextPage)).toBe(key(10));
  });
});
