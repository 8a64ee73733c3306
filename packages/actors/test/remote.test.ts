import { InvalidRequest, nodeId } from '@chorus/core';
import { describe, expect, it } from 'vitest';
import { ActorSystem, type ReplyTo } from '../src/index.js';
import { TEST_TIMEOUT_MS, WAIT_MS, env, loopbackTransports, sleep, until } from './helpers.js';

type Echo = { type: 'echo'; text: string; replyTo: ReplyTo<string> } | { type: 'refuse'; replyTo: ReplyTo<string> } | { type: 'note'; text: string } | { type: 'ignore'; replyTo: ReplyTo<string> };

function pair() {
  const net = loopbackTransports(['a', 'b']);
  const a = new ActorSystem({ env: env('a'), transport: net.transports[0] });
  const b = new ActorSystem({ env: env('b'), transport: net.transports[1] });
  const notes: string[] = [];
  const ignored: number[] = [];
  b.spawn<Echo>('echo', () => ({
    receive(msg, ctx) {
      if (msg.type === 'echo') ctx.reply(msg.replyTo, `${msg.text} from ${ctx.env.node}`);
      else if (msg.type === 'refuse') ctx.fail(msg.replyTo, new InvalidRequest('no thanks', { limit: 3 }));
      else if (msg.type === 'note') notes.push(msg.text);
      else ignored.push(msg.replyTo.id);
    },
  }));
  const echo = a.ref<Echo>({ node: nodeId('b'), name: 'echo' });
  return { net, a, b, echo, notes, ignored };
}

describe('remote refs', { timeout: TEST_TIMEOUT_MS }, () => {
  it('tell and ask reach an actor on another node, in order', async () => {
    const { a, b, echo, notes } = pair();
    for (let i = 0; i < 10; i++) echo.tell({ type: 'note', text: String(i) });
    expect(await echo.ask<string>((replyTo) => ({ type: 'echo', text: 'hi', replyTo }), WAIT_MS)).toBe('hi from b');
    expect(notes).toEqual(Array.from({ length: 10 }, (_, i) => String(i)));
    await a.shutdown();
    await b.shutdown();
  });

  it('rebuilds a remote error with its name, code and numbers', async () => {
    const { a, b, echo } = pair();
    await expect(echo.ask<string>((replyTo) => ({ type: 'refuse', replyTo }), WAIT_MS)).rejects.toMatchObject({
      name: 'InvalidRequest',
      code: 'INVALID_REQUEST',
      httpStatus: 400,
      fields: { limit: 3 },
    });
    await a.shutdown();
    await b.shutdown();
  });

  it('answers ActorNotFound for a name nobody has', async () => {
    const { a, b } = pair();
    const ghost = a.ref<Echo>({ node: nodeId('b'), name: 'ghost' });
    await expect(ghost.ask<string>((replyTo) => ({ type: 'echo', text: 'x', replyTo }), WAIT_MS)).rejects.toMatchObject({ name: 'ActorNotFound' });
    await a.shutdown();
    await b.shutdown();
  });

  it('fails pending asks at once when the link goes down, and fails new ones fast while it stays down', async () => {
    const { net, a, b, echo, ignored } = pair();
    const pending = echo.ask<string>((replyTo) => ({ type: 'ignore', replyTo }), WAIT_MS);
    expect(await until(() => ignored.length === 1)).toBe(true); // b holds the ask and will never answer it
    net.setDown('a', 'b', true);
    await expect(pending).rejects.toMatchObject({ name: 'NodeUnreachable', fields: { node: 'b' } });
    await expect(echo.ask<string>((replyTo) => ({ type: 'echo', text: 'x', replyTo }), WAIT_MS)).rejects.toMatchObject({ name: 'NodeUnreachable' });
    net.setDown('a', 'b', false);
    expect(await echo.ask<string>((replyTo) => ({ type: 'echo', text: 'back', replyTo }), WAIT_MS)).toBe('back from b');
    await a.shutdown();
    await b.shutdown();
  });

  it('drops malformed frames, counts them, and keeps serving', async () => {
    const { net, a, b, echo } = pair();
    net.inject('b', 'a', new Uint8Array([0xc1, 0xff, 0x00]));
    net.inject('b', 'a', new TextEncoder().encode('garbage'));
    net.inject('b', 'a', new Uint8Array([0x81, 0xa1, 0x74, 0xa3, 0x6d, 0x73, 0x67])); // {t: 'msg'} with no recipient
    expect(b.stats().rejectedFrames).toBe(3);
    expect(await echo.ask<string>((replyTo) => ({ type: 'echo', text: 'still', replyTo }), WAIT_MS)).toBe('still from b');
    await a.shutdown();
    await b.shutdown();
  });

  it('ignores a reply that comes from a node the ask was not sent to', async () => {
    const net = loopbackTransports(['a', 'b', 'c']);
    const a = new ActorSystem({ env: env('a'), transport: net.transports[0] });
    const b = new ActorSystem({ env: env('b'), transport: net.transports[1] });
    type Sink = { type: 'hold'; replyTo: ReplyTo<string> } | { type: 'answer' };
    let captured: ReplyTo<string> | undefined;
    b.spawn<Sink>('sink', () => ({
      receive(m, ctx) {
        if (m.type === 'hold') captured = m.replyTo;
        else ctx.reply(captured!, 'genuine');
      },
    }));
    const sink = a.ref<Sink>({ node: nodeId('b'), name: 'sink' });
    const asked = sink.ask<string>((replyTo) => ({ type: 'hold', replyTo }), WAIT_MS);
    expect(await until(() => captured !== undefined)).toBe(true);
    const { msgpackCodec } = await import('../src/index.js');
    net.inject('a', 'c', msgpackCodec().encode({ t: 'ok', id: captured!.id, run: captured!.run, v: 'forged' }));
    // The forged reply arrived first; had it been taken, the ask would hold it instead of b's own answer.
    sink.tell({ type: 'answer' });
    expect(await asked).toBe('genuine');
    await a.shutdown();
    await b.shutdown();
  });

  it('ignores a reply that claims to come from this node itself, whatever ask it names', async () => {
    const { net, a, b, echo, ignored } = pair();
    const asked = echo.ask<string>((replyTo) => ({ type: 'ignore', replyTo }), WAIT_MS);
    expect(await until(() => ignored.length === 1)).toBe(true);
    const { msgpackCodec } = await import('../src/index.js');
    // Only the runtime itself answers for this node, and never over the transport.
    net.inject('a', 'a', msgpackCodec().encode({ t: 'ok', id: ignored[0]!, run: a.run, v: 'forged' }));
    net.inject('a', 'a', msgpackCodec().encode({ t: 'msg', to: 'anyone', msg: { type: 'note', text: 'forged' } }));
    expect(a.stats()).toMatchObject({ pendingAsks: 1, rejectedFrames: 2 });
    const late = await Promise.race([asked.then((v) => `settled with ${v}`), sleep(50).then(() => 'still pending')]);
    expect(late).toBe('still pending');
    await a.shutdown();
    await b.shutdown();
    await expect(asked).rejects.toMatchObject({ name: 'ActorStopped' });
  });

  it('ignores a reply owed to another run of this node, and counts it', async () => {
    const { net, a, b, echo, ignored } = pair();
    const asked = echo.ask<string>((replyTo) => ({ type: 'ignore', replyTo }), WAIT_MS);
    expect(await until(() => ignored.length === 1)).toBe(true);
    const { msgpackCodec } = await import('../src/index.js');
    net.inject('a', 'b', msgpackCodec().encode({ t: 'ok', id: ignored[0]!, run: a.run + 1, v: 'from the last life' }));
    expect(a.stats()).toMatchObject({ pendingAsks: 1, staleReplies: 1 });
    net.inject('a', 'b', msgpackCodec().encode({ t: 'ok', id: ignored[0]!, run: a.run, v: 'this life' }));
    expect(await asked).toBe('this life');
    await a.shutdown();
    await b.shutdown();
  });

  it('delivers messages to this node locally, even through a ref made before the actor existed', async () => {
    const net = loopbackTransports(['a']);
    const sent: string[] = [];
    const transport = { ...net.transports[0]!, send: (to: string) => void sent.push(to) };
    const a = new ActorSystem({ env: env('a'), transport });
    const early = a.ref<Echo>({ node: nodeId('a'), name: 'echo' });
    a.spawn<Echo>('echo', () => ({ receive: (m, ctx) => (m.type === 'echo' ? ctx.reply(m.replyTo, `${m.text} from ${ctx.env.node}`) : undefined) }));
    expect(await early.ask<string>((replyTo) => ({ type: 'echo', text: 'hi', replyTo }), WAIT_MS)).toBe('hi from a');
    expect(sent).toEqual([]);
    await a.shutdown();
  });

  it('tells a handler which node sent the message it handles: the transport\'s peer for a remote one, this node for a local one', async () => {
    const net = loopbackTransports(['a', 'b']);
    const a = new ActorSystem({ env: env('a'), transport: net.transports[0] });
    const b = new ActorSystem({ env: env('b'), transport: net.transports[1] });
    type Note = { type: 'note'; text: string; node?: string };
    const heard: string[] = [];
    const listener = b.spawn<Note>('listener', () => ({ receive: (m, ctx) => void heard.push(`${m.text} from ${String(ctx.sender)}`) }));
    // What a message says about its origin is not what the handler is told.
    a.ref<Note>({ node: nodeId('b'), name: 'listener' }).tell({ type: 'note', text: 'remote', node: 'c' });
    expect(await until(() => heard.length === 1)).toBe(true);
    listener.tell({ type: 'note', text: 'local' });
    expect(await until(() => heard.length === 2)).toBe(true);
    expect(heard).toEqual(['remote from a', 'local from b']);
    await a.shutdown();
    await b.shutdown();
  });
});
