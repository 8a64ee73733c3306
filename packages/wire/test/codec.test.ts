import { ActorSystem, type Envelope, type ReplyTo } from '@chorus/actors';
import { nodeId } from '@chorus/core';
import { Simulation } from '@chorus/sim';
import { Type } from '@sinclair/typebox';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LIMITS } from '@chorus/model';
import { FrameRejected, MAX_BATCH_ITEMS, MAX_HANDOFF_HINTS, MESSAGE_KINDS, wireCodec } from '../src/index.js';
import { raw, rejection } from './frames.js';

const syn = { type: 'gossip.syn', cluster: 'test', digests: [{ node: '127.0.0.1:7100', generation: 1_767_225_600, maxVersion: 42 }] };
/** A kind that is told, not asked. */
const shutdown = { type: 'gossip.shutdown', node: '127.0.0.1:7100', generation: 1_767_225_600 };


describe('wire codec', () => {
  it('round-trips a message, sending its kind by number', () => {
    const codec = wireCodec();
    const frame = codec.encode({ t: 'msg', to: 'gossiper', msg: syn, r: { node: nodeId('a'), id: 3, run: 4 } });
    expect(raw.unpack(frame)).toMatchObject({ t: 'msg', to: 'gossiper', k: MESSAGE_KINDS['gossip.syn'].id, r: { id: 3, run: 4 } });
    expect(codec.decode(frame)).toEqual({ t: 'msg', to: 'gossiper', msg: syn, r: { node: '', id: 3, run: 4 } });
  });

  it('sends positional frames to a peer that reads them: arrays without field names, decoded to the same envelopes as maps', () => {
    const codec = wireCodec();
    const mutation = { keyspace: 'app', token: -42n, partition: Uint8Array.of(1, 2), cell: { value: Uint8Array.of(7), timestampMicros: 1_767_225_600_000_000 } };
    const envelopes: Envelope[] = [
      { t: 'msg', to: 'replica', msg: { type: 'replica.mutate', mutation, hlc: 5, wallMicros: 6 }, r: { node: nodeId('a'), id: 3, run: 4 }, c: 1_767_225_600_000_001 },
      { t: 'msg', to: 'gossiper', msg: shutdown },
      { t: 'ok', id: 3, run: 4, v: { type: 'replica.mutated', hlc: 7, wallMicros: 8 }, c: 9 },
      // A trailing optional field left out, as a map leaves it out.
      { t: 'msg', to: 'replica', msg: { type: 'replica.read', keyspace: 'app', token: 1n, partition: Uint8Array.of(1), clustering: Uint8Array.of(), hlc: 1, wallMicros: 2 }, r: { node: nodeId('a'), id: 1, run: 1 } },
    ];
    for (const envelope of envelopes) {
      const positional = codec.encode(envelope, true);
      const asMap = codec.encode(envelope);
      expect(Array.isArray(raw.unpack(positional))).toBe(true);
      expect(positional.byteLength).toBeLessThan(asMap.byteLength);
      expect(Buffer.from(positional).includes(Buffer.from('wallMicros'))).toBe(false);
      expect(codec.decode(positional)).toEqual(codec.decode(asMap));
    }
    expect(raw.unpack(codec.encode(envelopes[1]!, true))).toEqual([0, 'gossiper', null, null, MESSAGE_KINDS['gossip.shutdown'].id, [shutdown.node, shutdown.generation]]);
  });

  it('carries a replica batch and its answer, with failed items and their errors', () => {
    const codec = wireCodec();
    const mutation = { keyspace: 'app', token: -42n, partition: Uint8Array.of(1, 2), cell: { value: Uint8Array.of(7), timestampMicros: 1_767_225_600_000_000 } };
    const row = { keyspace: 'app', token: 5n, partition: Uint8Array.of(3), clustering: Uint8Array.of() };
    const batch = { type: 'replica.batch', mutations: [mutation, mutation], digests: [row], hlc: 1, wallMicros: 2 };
    const error = { name: 'ClockSkewed', code: 'CLOCK_SKEWED', message: 'write timestamp too far ahead', fields: { offsetMs: 12 }, status: 503 };
    const batched = { type: 'replica.batched', digests: [Uint8Array.of(9, 9)], failures: [{ index: 1, error }], hlc: 3, wallMicros: 4 };
    const request: Envelope = { t: 'msg', to: 'replica', msg: batch, r: { node: nodeId('a'), id: 1, run: 1 } };
    const answer: Envelope = { t: 'ok', id: 1, run: 1, v: batched };
    expect(codec.decode(codec.encode(request, true))).toEqual(codec.decode(codec.encode(request)));
    expect(codec.decode(codec.encode(answer, true))).toEqual(codec.decode(codec.encode(answer)));
    const decoded = codec.decode(codec.encode(request, true)) as Extract<Envelope, { t: 'msg' }>;
    const { mutations, digests } = decoded.msg as typeof batch;
    expect(mutations.map((m) => m.cell.timestampMicros)).toEqual([mutation.cell.timestampMicros, mutation.cell.timestampMicros]);
    expect(digests.map((d) => [d.token, [...d.partition]])).toEqual([[5n, [3]]]);
    expect((codec.decode(codec.encode(answer, true)) as Extract<Envelope, { t: 'ok' }>).v).toMatchObject({ failures: [{ index: 1, error }], hlc: 3 });
    const tooMany = { ...batch, digests: Array.from({ length: MAX_BATCH_ITEMS + 1 }, () => row) };
    expect(rejection(codec.encode({ t: 'msg', to: 'replica', msg: tooMany, r: { node: nodeId('a'), id: 1, run: 1 } })).reason).toBe('invalid-fields');
    const badError = { ...batched, failures: [{ index: 0, error: { ...error, status: 'five hundred' } }] };
    expect(rejection(codec.encode({ t: 'ok', id: 1, run: 1, v: badError })).reason).toBe('invalid-fields');
  });

  it('rejects a positional frame of the wrong length, tag, body or reply address, each with its reason', () => {
    const k = MESSAGE_KINDS['gossip.syn'].id;
    expect(rejection(raw.pack([0, 'gossiper', null, null, k, ['c', [], 'extra']])).reason).toBe('invalid-fields');
    expect(rejection(raw.pack([0, 'gossiper', null, null, k, { cluster: 'c', digests: [] }])).reason).toBe('invalid-fields');
    expect(rejection(raw.pack([0, 'gossiper', null, null, k, [7, []]])).reason).toBe('invalid-fields');
    expect(rejection(raw.pack([0, 'gossiper', null, null, k])).reason).toBe('not-an-envelope');
    expect(rejection(raw.pack([2, 'gossiper', null, null, k, ['c', []]])).reason).toBe('not-an-envelope');
    expect(rejection(raw.pack([0, 'gossiper', 1, null, k, ['c', []]])).reason).toBe('not-an-envelope');
    expect(rejection(raw.pack([0, 'gossiper', null, null, k, ['c', []], -1])).reason).toBe('bad-clock');
    expect(rejection(raw.pack([0, 'replica', null, null, k, ['c', []]])).reason).toBe('wrong-actor');
    expect(rejection(raw.pack([1, 1, 1, 9_999, []])).reason).toBe('unknown-kind');
    expect(wireCodec().decode(raw.pack([0, 'gossiper', 1, 2, k, ['c', []]]))).toEqual({ t: 'msg', to: 'gossiper', msg: { type: 'gossip.syn', cluster: 'c', digests: [] }, r: { node: '', id: 1, run: 2 } });
  });

  it('refuses to encode a message of no known kind', () => {
    expect(() => wireCodec().encode({ t: 'msg', to: 'x', msg: { type: 'nope' } })).toThrow(FrameRejected);
  });

  it('rejects unknown kinds, wrong field types, extra fields, oversize frames and garbage, each with its reason', () => {
    expect(rejection(raw.pack({ t: 'msg', to: 'g', k: 9_999, b: {} })).reason).toBe('unknown-kind');
    expect(rejection(raw.pack({ t: 'msg', to: 'g', k: 1, b: { cluster: 7, digests: [] } })).reason).toBe('invalid-fields');
    expect(rejection(raw.pack({ t: 'msg', to: 'g', k: 1, b: { cluster: 'c', digests: [], extra: 1 } })).reason).toBe('invalid-fields');
    expect(rejection(raw.pack({ t: 'msg', to: 'g', k: 1, b: { cluster: 'c', digests: [{ node: 'bad node!', generation: 1, maxVersion: 1 }] } })).reason).toBe('invalid-fields');
    expect(rejection(raw.pack({ t: 'msg', to: 'g', k: 1, b: { cluster: 'c', digests: [{ node: 'n', generation: -1, maxVersion: 1 }] } })).reason).toBe('invalid-fields');
    expect(rejection(new Uint8Array(5 * 1024 * 1024)).reason).toBe('too-large');
    expect(rejection(wireCodec().encode({ t: 'msg', to: 'g', msg: syn }).subarray(0, 12)).reason).toBe('undecodable');
    expect(rejection(raw.pack('just a string')).reason).toBe('not-an-envelope');
    expect(rejection(raw.pack({ t: 'what' })).reason).toBe('not-an-envelope');
  });

  it('checks a hint hand-off at the edge: how many hints, their target host ids and the mutations\' sizes', () => {
    const codec = wireCodec();
    const hint = (value: Uint8Array, targetHostId = 'aaaaaaaa-0000-4000-8000-000000000001') => ({
      targetHostId,
      targetNode: '127.0.0.1:7102',
      createdAtMicros: 1_767_225_600_000_000,
      mutation: { keyspace: 'app', token: -42n, partition: Uint8Array.of(1), cell: { value, timestampMicros: 1_767_225_600_000_000 } },
    });
    const msg = (hints: unknown[]) => ({ type: 'hints.handoff', hints });
    const frame = (hints: unknown[]) => raw.pack({ t: 'msg', to: 'hints', r: { id: 1, run: 1 }, k: MESSAGE_KINDS['hints.handoff'].id, b: { hints } });
    const first = hint(Uint8Array.of(7));
    const ok = msg([first]);
    const decoded = codec.decode(codec.encode({ t: 'msg', to: 'hints', msg: ok, r: { node: nodeId('a'), id: 1, run: 1 } }));
    const [back] = (decoded as { msg: { hints: Array<ReturnType<typeof hint>> } }).msg.hints;
    expect(back).toMatchObject({ targetHostId: first.targetHostId, createdAtMicros: first.createdAtMicros, mutation: { token: -42n } });
    expect([...back!.mutation.cell.value]).toEqual([7]);
    expect(codec.decode(codec.encode({ t: 'ok', id: 1, run: 7, v: { type: 'hints.stored', stored: 3 } }))).toEqual({ t: 'ok', id: 1, run: 7, v: { type: 'hints.stored', stored: 3 } });
    expect(codec.decode(frame(Array.from({ length: MAX_HANDOFF_HINTS }, () => hint(Uint8Array.of(7))))).t).toBe('msg');
    expect(rejection(frame(Array.from({ length: MAX_HANDOFF_HINTS + 1 }, () => hint(Uint8Array.of(7))))).reason).toBe('invalid-fields');
    expect(rejection(frame([])).reason).toBe('invalid-fields');
    expect(rejection(frame([hint(Uint8Array.of(7), 'n3')])).reason).toBe('invalid-fields');
    expect(rejection(frame([hint(new Uint8Array(LIMITS.maxValueBytes + 1))])).reason).toBe('invalid-fields');
    expect(rejection(raw.pack({ t: 'ok', id: 1, k: MESSAGE_KINDS['hints.stored'].id, b: { stored: -1 } })).reason).toBe('invalid-fields');
  });

  it('survives hostile nesting depth', () => {
    const deep = new Uint8Array(200_000).fill(0x91); // [[[[…]]]]
    expect(rejection(deep).reason).toBe('undecodable');
  });

  it('never throws anything but FrameRejected on random or mutated frames (fuzz)', () => {
    const codec = wireCodec();
    const valid = [
      codec.encode({ t: 'msg', to: 'gossiper', msg: syn }),
      codec.encode({ t: 'msg', to: 'gossiper', msg: { type: 'gossip.ack2', states: { n1: { heartbeat: { generation: 1, version: 2 }, app: { STATUS: { value: 'NORMAL', version: 1 } } } } } }),
      codec.encode({ t: 'err', id: 3, run: 7, e: { name: 'X', code: 'X', message: 'm', fields: {}, status: 500 } }),
      codec.encode({ t: 'msg', to: 'gossiper', msg: syn, r: { node: nodeId('a'), id: 3, run: 4 }, c: 5 }, true),
      codec.encode({ t: 'ok', id: 3, run: 7, v: { type: 'hints.stored', stored: 3 } }, true),
    ];
    const mutated = fc.tuple(fc.constantFrom(...valid), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 })).map(([frame, edits]) => {
      const copy = frame.slice();
      for (const [at, byte] of edits) copy[at % copy.length] = byte;
      return copy;
    });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 512 }), mutated), (frame) => {
        try {
          const envelope: Envelope = codec.decode(frame);
          expect(['msg', 'ok', 'err']).toContain(envelope.t);
        } catch (error) {
          expect(error).toBeInstanceOf(FrameRejected);
        }
      }),
      { numRuns: 5_000 },
    );
  });

  it('carries asks between simulated nodes and answers with the reply to the real sender', async () => {
    const kinds = {
      ...MESSAGE_KINDS,
      'test.ask': { id: 900, schema: Type.Object({ text: Type.String() }), reply: 'test.answer' },
      'test.answer': { id: 901, schema: Type.Object({ text: Type.String() }) },
    };
    type Ask = { type: 'test.ask'; text: string; replyTo: ReplyTo<{ type: 'test.answer'; text: string }> };
    const sim = new Simulation({ seed: 3 });
    const systems = new Map<string, ActorSystem>();
    for (const n of ['a', 'b']) {
      await sim.addNode(n, ({ env, transport }) => {
        const system = new ActorSystem({ env, transport, codec: wireCodec({ kinds }) });
        systems.set(n, system);
        system.spawn<Ask>('upper', () => ({ receive: (m, ctx) => ctx.reply(m.replyTo, { type: 'test.answer', text: m.text.toUpperCase() }) }));
      });
    }
    let answer: unknown;
    systems.get('a')!.ref<Ask>({ node: nodeId('b'), name: 'upper' }).ask<{ type: 'test.answer'; text: string }>((replyTo) => ({ type: 'test.ask', text: 'hi', replyTo }), 1_000).then((v) => (answer = v));
    await sim.run({ stopWhen: () => answer !== undefined, untilMs: 5_000 });
    expect(answer).toEqual({ type: 'test.answer', text: 'HI' });
  });

  it('refuses a reply kind sent as a message to an actor, and a message of an asked kind without a reply address, before any actor sees them', async () => {
    const mutated = { type: 'replica.mutated', hlc: 1, wallMicros: 1 };
    expect(rejection(wireCodec().encode({ t: 'msg', to: 'replica', msg: mutated })).reason).toBe('not-a-request');
    // A reply kind is fine as a reply.
    expect(wireCodec().decode(wireCodec().encode({ t: 'ok', id: 1, run: 2, v: mutated }))).toMatchObject({ t: 'ok', v: mutated });

    // An asked kind told without a reply address reaches no actor: its handler would have nobody to answer.
    const sim = new Simulation({ seed: 4 });
    const systems = new Map<string, ActorSystem>();
    const received: unknown[] = [];
    for (const n of ['a', 'b']) {
      await sim.addNode(n, ({ env, transport }) => {
        const system = new ActorSystem({ env, transport, codec: wireCodec() });
        systems.set(n, system);
        system.spawn<{ type: string; replyTo?: ReplyTo<unknown> }>('gossiper', () => ({ receive: (m) => void received.push(m) }));
      });
    }
    systems.get('a')!.ref<typeof syn>({ node: nodeId('b'), name: 'gossiper' }).tell(syn);
    await sim.run({ untilMs: 1_000 });
    expect(received).toEqual([]);
    expect(systems.get('b')!.stats().rejectedFrames).toBe(1);
  });

  it("refuses a message to another actor than its kind's (a told gossip message reached the replica, which has nobody to answer)", () => {
    const shutdown = { type: 'gossip.shutdown', node: '127.0.0.1:7101', generation: 1 };
    for (const to of ['replica', 'repair-validator', 'hints', 'schema', 'nobody']) {
      expect(rejection(wireCodec().encode({ t: 'msg', to, msg: shutdown })).reason, to).toBe('wrong-actor');
    }
    expect(wireCodec().decode(wireCodec().encode({ t: 'msg', to: 'gossiper', msg: shutdown }))).toMatchObject({ t: 'msg', to: 'gossiper' });
    const read = { type: 'replica.read', keyspace: 'app', token: 1n, partition: Uint8Array.of(1), clustering: new Uint8Array(0), hlc: 1, wallMicros: 1 };
    expect(rejection(wireCodec().encode({ t: 'msg', to: 'gossiper', msg: read, r: { node: nodeId('a'), id: 1, run: 1 } })).reason).toBe('wrong-actor');
    expect(wireCodec().decode(wireCodec().encode({ t: 'msg', to: 'replica', msg: read, r: { node: nodeId('a'), id: 1, run: 1 } }))).toMatchObject({ t: 'msg', to: 'replica' });
  });

  it('checks every endpoint state of a gossip message, also under a key that is no node name (a null state under such a key made the gossiper throw)', () => {
    const frame = (states: Record<string, unknown>) => raw.pack({ t: 'msg', to: 'gossiper', k: MESSAGE_KINDS['gossip.ack2'].id, b: { states } });
    const good = { heartbeat: { generation: 1, version: 1 }, app: {} };
    expect(wireCodec().decode(frame({ '127.0.0.1:7101': good }))).toMatchObject({ t: 'msg' });
    expect(rejection(frame({ 'Ba/Vc_': null })).reason).toBe('invalid-fields');
    expect(rejection(frame({ 'not a node': good })).reason).toBe('invalid-fields');
    expect(rejection(frame({ '127.0.0.1:7101': { heartbeat: { generation: 1, version: 1 }, app: { '': { value: 'v', version: 1 } } } })).reason).toBe('invalid-fields');
  });
});
