import { nodeId } from '@chorus/core';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { ActorSystem, type MessageClock, type ReplyTo } from '../src/index.js';
import { TEST_TIMEOUT_MS, WAIT_MS, env, loopbackTransports, until } from './helpers.js';

type Msg = { type: 'note'; text: string } | { type: 'ask'; replyTo: ReplyTo<string> } | { type: 'refuse'; replyTo: ReplyTo<string> };

/** A clock that reads a fixed value and records what it was handed, with what the receiving actor had seen at that moment. */
function recordingClock(reading: number) {
  const seen: number[] = [];
  const clock: MessageClock = { stamp: () => reading, observe: (micros) => void seen.push(micros) };
  return { clock, seen, set: (v: number) => (reading = v) };
}

const packr = new Packr({ useRecords: false, mapsAsObjects: true });

function pair(clocks: { a?: MessageClock; b?: MessageClock }) {
  const net = loopbackTransports(['a', 'b']);
  const a = new ActorSystem({ env: env('a'), transport: net.transports[0], ...(clocks.a ? { clock: clocks.a } : {}) });
  const b = new ActorSystem({ env: env('b'), transport: net.transports[1], ...(clocks.b ? { clock: clocks.b } : {}) });
  return { net, a, b };
}

describe('message clocks', { timeout: TEST_TIMEOUT_MS }, () => {
  it('stamps every message and reply put on the transport, and hands each stamp to the receiving clock before the handler runs', async () => {
    const ca = recordingClock(1_000);
    const cb = recordingClock(2_000);
    const { a, b } = pair({ a: ca.clock, b: cb.clock });
    const observedBeforeHandling: number[] = [];
    b.spawn<Msg>('svc', () => ({
      receive(msg, ctx) {
        observedBeforeHandling.push(cb.seen.length);
        if (msg.type === 'ask') ctx.reply(msg.replyTo, 'yes');
        if (msg.type === 'refuse') ctx.fail(msg.replyTo, new Error('no'));
      },
    }));
    const svc = a.ref<Msg>({ node: nodeId('b'), name: 'svc' });
    svc.tell({ type: 'note', text: 'x' });
    expect(await until(() => observedBeforeHandling.length === 1)).toBe(true);
    expect(cb.seen).toEqual([1_000]);
    // The handler ran with the stamp already handed over.
    expect(observedBeforeHandling).toEqual([1]);
    ca.set(1_500);
    expect(await svc.ask<string>((replyTo) => ({ type: 'ask', replyTo }), WAIT_MS)).toBe('yes');
    await expect(svc.ask<string>((replyTo) => ({ type: 'refuse', replyTo }), WAIT_MS)).rejects.toThrow('no');
    // Both replies (the answer and the error) carried b's reading to a.
    expect(ca.seen).toEqual([2_000, 2_000]);
    expect(cb.seen).toEqual([1_000, 1_500, 1_500]);
    await a.shutdown();
    await b.shutdown();
  });

  it('stamps the error a missing actor gets back, so even a refusal moves the asking clock', async () => {
    const ca = recordingClock(10);
    const cb = recordingClock(20);
    const { a, b } = pair({ a: ca.clock, b: cb.clock });
    const ghost = a.ref<Msg>({ node: nodeId('b'), name: 'ghost' });
    await expect(ghost.ask<string>((replyTo) => ({ type: 'ask', replyTo }), WAIT_MS)).rejects.toMatchObject({ name: 'ActorNotFound' });
    expect(ca.seen).toEqual([20]);
    await a.shutdown();
    await b.shutdown();
  });

  it('works between a system with a clock and one without, in both directions', async () => {
    const cb = recordingClock(7);
    const { a, b } = pair({ b: cb.clock });
    b.spawn<Msg>('svc', () => ({ receive: (msg, ctx) => void (msg.type === 'ask' && ctx.reply(msg.replyTo, 'ok')) }));
    a.spawn<Msg>('svc', () => ({ receive: (msg, ctx) => void (msg.type === 'ask' && ctx.reply(msg.replyTo, 'ok')) }));
    expect(await a.ref<Msg>({ node: nodeId('b'), name: 'svc' }).ask<string>((replyTo) => ({ type: 'ask', replyTo }), WAIT_MS)).toBe('ok');
    expect(await b.ref<Msg>({ node: nodeId('a'), name: 'svc' }).ask<string>((replyTo) => ({ type: 'ask', replyTo }), WAIT_MS)).toBe('ok');
    // Nothing from a carried a stamp, and a frame without one is not an error.
    expect(cb.seen).toEqual([]);
    expect(b.stats().rejectedFrames).toBe(0);
    await a.shutdown();
    await b.shutdown();
  });

  it('drops a frame whose stamp is negative, fractional, too large to be exact or not a number, and never observes it', async () => {
    const cb = recordingClock(0);
    const { net, a, b } = pair({ b: cb.clock });
    const notes: string[] = [];
    b.spawn<Msg>('svc', () => ({ receive: (msg) => void (msg.type === 'note' && notes.push(msg.text)) }));
    const bad: unknown[] = [-1, 1.5, 2 ** 60, '123', null];
    for (const c of bad) net.inject('b', 'a', packr.pack({ t: 'msg', to: 'svc', msg: { type: 'note', text: 'bad' }, c }));
    net.inject('b', 'a', packr.pack({ t: 'msg', to: 'svc', msg: { type: 'note', text: 'good' }, c: 42 }));
    expect(await until(() => notes.length === 1)).toBe(true);
    expect(notes).toEqual(['good']);
    expect(cb.seen).toEqual([42]);
    expect(b.stats().rejectedFrames).toBe(bad.length);
    await a.shutdown();
    await b.shutdown();
  });

  it('keeps messages to this node off the clock: they never cross the transport', async () => {
    const ca = recordingClock(5);
    const { a, b } = pair({ a: ca.clock });
    const early = a.ref<Msg>({ node: nodeId('a'), name: 'late' });
    const notes: string[] = [];
    a.spawn<Msg>('late', () => ({ receive: (msg) => void (msg.type === 'note' && notes.push(msg.text)) }));
    early.tell({ type: 'note', text: 'local' });
    expect(await until(() => notes.length === 1)).toBe(true);
    expect(ca.seen).toEqual([]);
    await a.shutdown();
    await b.shutdown();
  });
});
