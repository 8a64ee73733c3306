import { ActorSystem, type ReplyTo } from '@chorus/actors';
import { type Logger, nodeId } from '@chorus/core';
import { Simulation } from '@chorus/sim';
import { Type } from '@sinclair/typebox';
import { describe, expect, it } from 'vitest';
import { MESSAGE_KINDS, wireCodec } from '../src/index.js';

const kinds = {
  ...MESSAGE_KINDS,
  'test.put': { id: 900, schema: Type.Object({ text: Type.String() }, { additionalProperties: false }), reply: 'test.done' },
  'test.done': { id: 901, schema: Type.Object({ text: Type.String() }, { additionalProperties: false }) },
  'test.get': { id: 902, schema: Type.Object({ key: Type.String() }, { additionalProperties: false }), reply: 'test.value' },
  'test.value': { id: 903, schema: Type.Object({ key: Type.String(), value: Type.String() }, { additionalProperties: false }) },
  // Told, never asked, like gossip.ack2 (which only the gossiper may receive).
  'test.note': { id: 904, schema: Type.Object({ text: Type.String() }, { additionalProperties: false }) },
};

type Done = { type: 'test.done'; text: string };
type Value = { type: 'test.value'; key: string; value: string };
type Put = { type: 'test.put'; text: string; replyTo: ReplyTo<Done> };
type Get = { type: 'test.get'; key: string; replyTo: ReplyTo<Value> };
type Held = { type: 'held'; replyTo: ReplyTo<unknown>; answer: unknown };

interface LogLine {
  level: string;
  msg: string | undefined;
  obj: Record<string, unknown>;
}

function recordingLogger(lines: LogLine[], bindings: Record<string, unknown> = {}): Logger {
  const keep = (level: string) => (obj: object, msg?: string) => void lines.push({ level, msg, obj: { ...bindings, ...obj } });
  return { debug: keep('debug'), info: keep('info'), warn: keep('warn'), error: keep('error'), child: (b) => recordingLogger(lines, { ...bindings, ...b }) };
}

/**
 * Node `a` asks, node `b` answers every ask only after `holdMs` (a slow
 * replica). Each start of `a` gets a fresh ActorSystem, as a restarted
 * process does.
 */
async function cluster(seed: number, holdMs: number, answer: (msg: Put | Get) => unknown) {
  const lines: LogLine[] = [];
  const sim = new Simulation({ seed, network: { latencyMs: 2, jitterMs: 3 }, logger: recordingLogger(lines) });
  const systems = new Map<string, ActorSystem>();
  await sim.addNode('a', ({ env, transport }) => void systems.set('a', new ActorSystem({ env, transport, codec: wireCodec({ kinds }) })));
  await sim.addNode('b', ({ env, transport }) => {
    const system = new ActorSystem({ env, transport, codec: wireCodec({ kinds }) });
    systems.set('b', system);
    system.spawn<Put | Get | Held>('slow', () => ({
      receive(msg, ctx) {
        if (msg.type === 'held') ctx.reply(msg.replyTo, msg.answer);
        else ctx.after(holdMs, { type: 'held', replyTo: msg.replyTo as ReplyTo<unknown>, answer: answer(msg) });
      },
    }));
  });
  const slow = () => systems.get('a')!.ref<Put | Get>({ node: nodeId('b'), name: 'slow' });
  return { sim, systems, lines, slow };
}

type Settled = { ok: true; value: unknown; at: number } | { ok: false; error: Error; at: number };

function watch(sim: Simulation, promise: Promise<unknown>): { settled: Settled | undefined } {
  const box: { settled: Settled | undefined } = { settled: undefined };
  promise.then(
    (value) => (box.settled = { ok: true, value, at: sim.now }),
    (error: Error) => (box.settled = { ok: false, error, at: sim.now }),
  );
  return box;
}

describe('replies and runs', () => {
  it('a restarted node does not take the late reply its previous run was owed as the answer to a new ask (seed 11)', async () => {
    // b answers every get after 3 s: the old run's get is answered while the new run's get waits.
    const { sim, systems, slow } = await cluster(11, 3_000, (msg) => (msg.type === 'test.get' ? { type: 'test.value', key: msg.key, value: `row of ${msg.key}` } : { type: 'test.done', text: msg.text }));
    void slow().ask<Value>((replyTo) => ({ type: 'test.get', key: 'old', replyTo }), 10_000);
    await sim.runFor(500);
    // The node restarts: its first ask of the new run has the same number its previous run's first ask had.
    sim.crash('a');
    await sim.runFor(500);
    await sim.restart('a');
    const fresh = watch(sim, slow().ask<Value>((replyTo) => ({ type: 'test.get', key: 'k', replyTo }), 10_000));
    await sim.run({ stopWhen: () => fresh.settled !== undefined, untilMs: 20_000 });

    // The old run's get was answered at about 3 s, with another key's row; the new one at about 4 s, with its own.
    expect(fresh.settled).toMatchObject({ ok: true, value: { type: 'test.value', key: 'k', value: 'row of k' } });
    expect(fresh.settled!.at).toBeGreaterThanOrEqual(4_000);
    expect(systems.get('a')!.stats().staleReplies).toBe(1);
  });

  it('fails an ask whose reply is of another kind than the table says, with UnexpectedReply, and logs it (seed 12)', async () => {
    // A buggy or hostile peer answers a get with a put's reply.
    const { sim, systems, lines, slow } = await cluster(12, 10, () => ({ type: 'test.done', text: 'not a value' }));
    const asked = watch(sim, slow().ask<Value>((replyTo) => ({ type: 'test.get', key: 'k', replyTo }), 5_000));
    await sim.run({ stopWhen: () => asked.settled !== undefined, untilMs: 10_000 });
    expect(asked.settled).toMatchObject({ ok: false, error: { name: 'UnexpectedReply', code: 'UNEXPECTED_REPLY', fields: { node: 'b', expected: 'test.value', received: 'test.done' } } });
    expect(asked.settled!.at).toBeLessThan(1_000);
    expect(systems.get('a')!.stats().unexpectedReplies).toBe(1);
    expect(lines.some((l) => l.level === 'warn' && l.obj.node === 'a' && l.obj.peer === 'b' && l.obj.expected === 'test.value' && l.obj.received === 'test.done')).toBe(true);
  });

  it('fails an ask of a kind that takes no reply when an answer comes anyway (seed 13)', async () => {
    const { sim, slow } = await cluster(13, 10, () => ({ type: 'test.done', text: 'x' }));
    type Note = { type: 'test.note'; text: string; replyTo: ReplyTo<unknown> };
    const ref = slow() as unknown as { ask: (build: (r: ReplyTo<unknown>) => Note, t: number) => Promise<unknown> };
    const asked = watch(sim, ref.ask((replyTo) => ({ type: 'test.note', text: 'x', replyTo }), 5_000));
    await sim.run({ stopWhen: () => asked.settled !== undefined, untilMs: 10_000 });
    expect(asked.settled).toMatchObject({ ok: false, error: { name: 'UnexpectedReply' } });
  });
});
