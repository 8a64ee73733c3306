import { ActorSystem } from '@chorus/actors';
import { nodeId } from '@chorus/core';
import { Simulation } from '@chorus/sim';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { MESSAGE_KINDS, wireCodec } from '../src/index.js';
import { raw, rejection } from './frames.js';

const ack2 = { type: 'gossip.ack2', states: { '127.0.0.1:7100': { heartbeat: { generation: 1_767_225_600, version: 42 }, app: {} } } };
const NOW = 1_767_225_600_000_000;


describe('clock stamps on peer frames', () => {
  it('carries the stamp on messages, replies and error replies', () => {
    const codec = wireCodec();
    const msg = codec.encode({ t: 'msg', to: 'gossiper', msg: ack2, c: NOW });
    expect(raw.unpack(msg)).toMatchObject({ c: NOW });
    expect(codec.decode(msg)).toMatchObject({ t: 'msg', c: NOW });
    const ok = codec.encode({ t: 'ok', id: 1, run: 2, v: { type: 'replica.mutated', hlc: NOW, wallMicros: NOW }, c: NOW + 1 });
    expect(codec.decode(ok)).toMatchObject({ t: 'ok', c: NOW + 1 });
    const err = codec.encode({ t: 'err', id: 1, run: 2, e: { name: 'X', code: 'X', message: 'x', fields: {}, status: 500 }, c: NOW + 2 });
    expect(codec.decode(err)).toMatchObject({ t: 'err', c: NOW + 2 });
  });

  it('costs one integer per frame: at most 11 bytes over the same frame unstamped', () => {
    const codec = wireCodec();
    const plain = codec.encode({ t: 'msg', to: 'gossiper', msg: ack2 });
    const stamped = codec.encode({ t: 'msg', to: 'gossiper', msg: ack2, c: NOW });
    expect(stamped.byteLength - plain.byteLength).toBeLessThanOrEqual(11);
  });

  it('takes frames without a stamp, as a peer that sends none still speaks the protocol', () => {
    const frame = raw.pack({ t: 'msg', to: 'gossiper', k: MESSAGE_KINDS['gossip.ack2'].id, b: { states: {} } });
    expect(wireCodec().decode(frame)).not.toHaveProperty('c');
  });

  it('rejects a stamp that is negative, fractional, not a number, or too large to be exact, on every envelope kind', () => {
    const base = { t: 'msg', to: 'gossiper', k: MESSAGE_KINDS['gossip.ack2'].id, b: { states: {} } };
    for (const c of [-1, 0.5, '1767225600000000', true, 2 ** 60, { n: 1 }]) {
      const r = rejection(raw.pack({ ...base, c }));
      expect(r.reason).toBe('bad-clock');
      expect(r.message).toMatch(/clock stamp/);
    }
    // A 64-bit integer on the wire decodes as a bigint: refused too, never a crash.
    const big = new Packr({ useRecords: false, mapsAsObjects: true, useBigIntExtension: false });
    expect(rejection(big.pack({ ...base, c: 2n ** 62n })).reason).toBe('bad-clock');
    const ok = { t: 'ok', id: 1, run: 2, k: MESSAGE_KINDS['replica.mutated'].id, b: { hlc: NOW, wallMicros: NOW } };
    expect(rejection(raw.pack({ ...ok, c: -5 })).reason).toBe('bad-clock');
    const err = { t: 'err', id: 1, run: 2, e: { name: 'X', code: 'X', message: 'x', fields: {}, status: 500 } };
    expect(rejection(raw.pack({ ...err, c: 1.25 })).reason).toBe('bad-clock');
  });

  it('hands the stamp of a simulated peer to the receiving clock', async () => {
    type Told = { type: 'gossip.ack2'; states: Record<string, never> };
    const sim = new Simulation({ seed: 5 });
    const seen: number[] = [];
    const received: string[] = [];
    const systems = new Map<string, ActorSystem>();
    for (const n of ['a', 'b']) {
      await sim.addNode(n, ({ env, transport }) => {
        const system = new ActorSystem({ env, transport, codec: wireCodec(), clock: { stamp: () => (n === 'a' ? NOW : 0), observe: (m) => void (n === 'b' && seen.push(m)) } });
        systems.set(n, system);
        system.spawn<Told>('gossiper', () => ({ receive: (m) => void received.push(m.type) }));
      });
    }
    systems.get('a')!.ref<Told>({ node: nodeId('b'), name: 'gossiper' }).tell({ type: 'gossip.ack2', states: {} });
    await sim.run({ stopWhen: () => received.length === 1, untilMs: 5_000 });
    expect(seen).toEqual([NOW]);
    expect(systems.get('b')!.stats().rejectedFrames).toBe(0);
  });
});
