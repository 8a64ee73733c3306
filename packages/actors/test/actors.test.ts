import { describe, expect, it } from 'vitest';
import { type ActorRef, ActorSystem, type ReplyTo } from '../src/index.js';
import { env, gate, sleep } from './helpers.js';

type Counter = { type: 'add'; n: number } | { type: 'get'; replyTo: ReplyTo<number> };

const counter = () => {
  let total = 0;
  return {
    receive(msg: Counter, ctx: { reply<R>(to: ReplyTo<R>, v: R): void }) {
      if (msg.type === 'add') total += msg.n;
      else ctx.reply(msg.replyTo, total);
    },
  };
};

describe('tell and ask', () => {
  it('answers an ask after every earlier tell from the same sender', async () => {
    const system = new ActorSystem({ env: env() });
    const ref = system.spawn<Counter>('counter', counter);
    for (let i = 1; i <= 100; i++) ref.tell({ type: 'add', n: i });
    expect(await ref.ask<number>((replyTo) => ({ type: 'get', replyTo }), 1_000)).toBe(5050);
    await system.shutdown();
  });

  it('handles one message at a time, even when the handler awaits', async () => {
    const system = new ActorSystem({ env: env() });
    const seen: string[] = [];
    let inside = 0;
    let overlapped = false;
    const ref = system.spawn<{ i: number }>('slow', () => ({
      async receive(msg) {
        if (inside++ > 0) overlapped = true;
        seen.push(`start ${msg.i}`);
        await sleep(1);
        seen.push(`end ${msg.i}`);
        inside--;
      },
    }));
    for (let i = 0; i < 5; i++) ref.tell({ i });
    await sleep(50);
    expect(overlapped).toBe(false);
    expect(seen).toEqual([0, 1, 2, 3, 4].flatMap((i) => [`start ${i}`, `end ${i}`]));
    await system.shutdown();
  });

  it('rejects an unanswered ask with AskTimeout after its timeout', async () => {
    const system = new ActorSystem({ env: env() });
    const ref = system.spawn<{ replyTo: ReplyTo<string> }>('mute', () => ({ receive() {} }));
    const started = Date.now();
    await expect(ref.ask<string>((replyTo) => ({ replyTo }), 30)).rejects.toMatchObject({ name: 'AskTimeout', fields: { timeoutMs: 30 } });
    expect(Date.now() - started).toBeGreaterThanOrEqual(25);
    expect(system.stats().pendingAsks).toBe(0);
    await system.shutdown();
  });
});

describe('bounded mailboxes', () => {
  it('rejects past capacity with MailboxFull, which the sender sees', async () => {
    const system = new ActorSystem({ env: env() });
    const hold = gate();
    const handled: number[] = [];
    const ref = system.spawn<{ i: number; replyTo?: ReplyTo<number> }>(
      'busy',
      () => ({
        async receive(msg, ctx) {
          if (msg.i === 0) await hold.promise;
          handled.push(msg.i);
          if (msg.replyTo) ctx.reply(msg.replyTo, msg.i);
        },
      }),
      { mailbox: { capacity: 3, overflow: 'reject' } },
    );
    ref.tell({ i: 0 });
    await sleep(5); // message 0 is now being handled and holds the actor
    ref.tell({ i: 1 });
    ref.tell({ i: 2 });
    ref.tell({ i: 3 });
    expect(() => ref.tell({ i: 4 })).toThrow(expect.objectContaining({ name: 'MailboxFull', fields: { capacity: 3 } }));
    await expect(ref.ask<number>((replyTo) => ({ i: 5, replyTo }), 1_000)).rejects.toMatchObject({ name: 'MailboxFull' });
    hold.open();
    await sleep(10);
    expect(handled).toEqual([0, 1, 2, 3]);
    await system.shutdown();
  });

  it('drop-oldest keeps the newest messages and fails the asks it drops', async () => {
    const system = new ActorSystem({ env: env() });
    const hold = gate();
    const handled: number[] = [];
    const ref = system.spawn<{ i: number; replyTo?: ReplyTo<number> }>(
      'gossipy',
      () => ({
        async receive(msg) {
          if (msg.i === 0) await hold.promise;
          handled.push(msg.i);
        },
      }),
      { mailbox: { capacity: 2, overflow: 'drop-oldest' } },
    );
    ref.tell({ i: 0 });
    await sleep(5);
    const dropped = ref.ask<number>((replyTo) => ({ i: 1, replyTo }), 1_000);
    ref.tell({ i: 2 });
    ref.tell({ i: 3 });
    await expect(dropped).rejects.toMatchObject({ name: 'MailboxFull' });
    hold.open();
    await sleep(10);
    expect(handled).toEqual([0, 2, 3]);
    await system.shutdown();
  });
});

describe('batch drain', () => {
  it('hands 10,000 messages told in one tick to far fewer turns, in order', async () => {
    const system = new ActorSystem({ env: env() });
    const batches: number[] = [];
    const seen: number[] = [];
    const ref = system.spawn<number>(
      'batcher',
      () => ({
        receiveBatch(msgs) {
          batches.push(msgs.length);
          seen.push(...msgs);
        },
      }),
      { mailbox: { capacity: 20_000 }, batchLimit: 20_000 },
    );
    for (let i = 0; i < 10_000; i++) ref.tell(i);
    await sleep(20);
    expect(seen).toEqual(Array.from({ length: 10_000 }, (_, i) => i));
    expect(batches.length).toBeLessThanOrEqual(2);
    await system.shutdown();
  });
});

describe('supervision', () => {
  it('restarts a failing actor with fresh state and fails the ask that crashed it', async () => {
    const system = new ActorSystem({ env: env(), defaultSupervision: { minBackoffMs: 1, maxBackoffMs: 5 } });
    let starts = 0;
    type Msg = { type: 'add'; n: number } | { type: 'boom'; replyTo: ReplyTo<void> } | { type: 'get'; replyTo: ReplyTo<number> };
    const ref: ActorRef<Msg> = system.spawn<Msg>('fragile', () => {
      let total = 0;
      return {
        started: () => void starts++,
        receive(msg, ctx) {
          if (msg.type === 'boom') throw new Error('kaboom');
          if (msg.type === 'add') total += msg.n;
          else ctx.reply(msg.replyTo, total);
        },
      };
    });
    ref.tell({ type: 'add', n: 5 });
    await expect(ref.ask<void>((replyTo) => ({ type: 'boom', replyTo }), 1_000)).rejects.toMatchObject({ name: 'ActorCrashed' });
    ref.tell({ type: 'add', n: 2 });
    expect(await ref.ask<number>((replyTo) => ({ type: 'get', replyTo }), 1_000)).toBe(2);
    expect(starts).toBe(2);
    expect(system.stats().restarts).toBe(1);
    await system.shutdown();
  });

  it('escalates to the parent when a child fails too often, and the parent rebuilds it', async () => {
    const system = new ActorSystem({ env: env() });
    let parentStarts = 0;
    let childRef: ActorRef<string> | undefined;
    system.spawn<never>('parent', () => ({
      started(ctx) {
        parentStarts++;
        childRef = ctx.spawn<string>('child', () => ({ receive() { throw new Error('always'); } }), {
          supervision: { maxRestarts: 2, windowMs: 10_000, minBackoffMs: 1, maxBackoffMs: 2 },
        });
      },
    }), { supervision: { minBackoffMs: 1, maxBackoffMs: 2 } });
    const first = childRef!;
    for (let i = 0; i < 3; i++) {
      first.tell('fail');
      await sleep(15);
    }
    expect(parentStarts).toBe(2);
    expect(childRef).not.toBe(first);
    expect(childRef!.address.name).toBe('parent/child');
    await system.shutdown();
  });

  it('stops a top-level actor that exceeds its restart intensity', async () => {
    const system = new ActorSystem({ env: env() });
    const ref = system.spawn<string>('doomed', () => ({ receive() { throw new Error('always'); } }), {
      supervision: { maxRestarts: 1, windowMs: 10_000, minBackoffMs: 1, maxBackoffMs: 1 },
    });
    ref.tell('a');
    await sleep(10);
    ref.tell('b');
    await sleep(10);
    expect(system.stats().actors).toBe(0);
    await expect(ref.ask((replyTo) => `${replyTo.id}`, 100)).rejects.toMatchObject({ name: 'ActorStopped' });
    await system.shutdown();
  });
});

describe('lifecycle', () => {
  it('stops children before their parent, runs hooks, and fails what was queued', async () => {
    const system = new ActorSystem({ env: env() });
    const events: string[] = [];
    const hold = gate();
    let child!: ActorRef<{ replyTo?: ReplyTo<void> }>;
    const parent = system.spawn<never>('p', () => ({
      started(ctx) {
        events.push('p started');
        child = ctx.spawn('c', () => ({
          started: () => void events.push('c started'),
          async receive() {
            await hold.promise;
          },
          stopping: () => void events.push('c stopping'),
        }));
      },
      stopping: () => void events.push('p stopping'),
    }));
    child.tell({});
    await sleep(5);
    const queued = child.ask<void>((replyTo) => ({ replyTo }), 1_000);
    const stopped = system.stop(parent);
    hold.open();
    await stopped;
    await expect(queued).rejects.toMatchObject({ name: 'ActorStopped' });
    expect(events).toEqual(['p started', 'c started', 'c stopping', 'p stopping']);
    expect(system.stats().actors).toBe(0);
  });

  it('cancels timers set with ctx.after when the actor stops', async () => {
    const system = new ActorSystem({ env: env() });
    let ticks = 0;
    const ref = system.spawn<'tick'>('ticker', () => ({
      started: (ctx) => void ctx.after(20, 'tick'),
      receive: () => void ticks++,
    }));
    await system.stop(ref);
    await sleep(40);
    expect(ticks).toBe(0);
  });

  it('refuses two actors with one name', async () => {
    const system = new ActorSystem({ env: env() });
    system.spawn('same', () => ({}));
    expect(() => system.spawn('same', () => ({}))).toThrow(/already exists/);
    expect(() => system.spawn('bad name!', () => ({}))).toThrow(/invalid actor name/);
    await system.shutdown();
  });
});
