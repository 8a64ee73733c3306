import { describe, expect, it } from 'vitest';
import { type ActorRef, ActorSystem, type ReplyTo } from '../src/index.js';
import { TEST_TIMEOUT_MS, WAIT_MS, env, gate, sleep, timerCountingEnv, until } from './helpers.js';

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

describe('tell and ask', { timeout: TEST_TIMEOUT_MS }, () => {
  it('answers an ask after every earlier tell from the same sender', async () => {
    const system = new ActorSystem({ env: env() });
    const ref = system.spawn<Counter>('counter', counter);
    for (let i = 1; i <= 100; i++) ref.tell({ type: 'add', n: i });
    expect(await ref.ask<number>((replyTo) => ({ type: 'get', replyTo }), WAIT_MS)).toBe(5050);
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
    // The last message ending means every earlier one has started and ended: any overlap has happened by then.
    expect(await until(() => seen.includes('end 4'))).toBe(true);
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

  it('request hands the answer, or the error an ask would reject with, to its callback once', async () => {
    const system = new ActorSystem({ env: env() });
    const ref = system.spawn<Counter>('counter', counter);
    ref.tell({ type: 'add', n: 7 });
    const outcomes: Array<[string | undefined, number | undefined]> = [];
    ref.request<number>((replyTo) => ({ type: 'get', replyTo }), WAIT_MS, (error, answer) => outcomes.push([error?.name, answer]));
    const mute = system.spawn<{ replyTo: ReplyTo<string> }>('mute', () => ({ receive() {} }));
    mute.request<string>((replyTo) => ({ replyTo }), 30, (error, answer) => outcomes.push([error?.name, answer as undefined]));
    // A message that cannot be built fails its request, not the caller.
    ref.request<number>(() => {
      throw new TypeError('no message');
    }, WAIT_MS, (error) => outcomes.push([error?.name, undefined]));
    await until(() => outcomes.length === 3);
    await sleep(50);
    expect(outcomes).toEqual([
      ['TypeError', undefined],
      [undefined, 7],
      ['AskTimeout', undefined],
    ]);
    expect(system.stats().pendingAsks).toBe(0);
    await system.shutdown();
  });
});

describe('bounded mailboxes', { timeout: TEST_TIMEOUT_MS }, () => {
  it('rejects past capacity with MailboxFull, which the sender sees', async () => {
    const system = new ActorSystem({ env: env() });
    const hold = gate();
    let holding = false;
    const handled: number[] = [];
    const ref = system.spawn<{ i: number; replyTo?: ReplyTo<number> }>(
      'busy',
      () => ({
        async receive(msg, ctx) {
          if (msg.i === 0) {
            holding = true;
            await hold.promise;
          }
          handled.push(msg.i);
          if (msg.replyTo) ctx.reply(msg.replyTo, msg.i);
        },
      }),
      { mailbox: { capacity: 3, overflow: 'reject' } },
    );
    ref.tell({ i: 0 });
    expect(await until(() => holding)).toBe(true); // message 0 is being handled and holds the actor, so the mailbox fills
    ref.tell({ i: 1 });
    ref.tell({ i: 2 });
    ref.tell({ i: 3 });
    expect(() => ref.tell({ i: 4 })).toThrow(expect.objectContaining({ name: 'MailboxFull', fields: { capacity: 3 } }));
    await expect(ref.ask<number>((replyTo) => ({ i: 5, replyTo }), WAIT_MS)).rejects.toMatchObject({ name: 'MailboxFull' });
    hold.open();
    expect(await until(() => handled.includes(3))).toBe(true);
    // Had 4 or 5 been queued after all, they would be handled before a later message through the same mailbox.
    expect(await ref.ask<number>((replyTo) => ({ i: 6, replyTo }), WAIT_MS)).toBe(6);
    expect(handled).toEqual([0, 1, 2, 3, 6]);
    await system.shutdown();
  });

  it('drop-oldest keeps the newest messages and fails the asks it drops', async () => {
    const system = new ActorSystem({ env: env() });
    const hold = gate();
    let holding = false;
    const handled: number[] = [];
    const ref = system.spawn<{ i: number; replyTo?: ReplyTo<number> }>(
      'gossipy',
      () => ({
        async receive(msg) {
          if (msg.i === 0) {
            holding = true;
            await hold.promise;
          }
          handled.push(msg.i);
        },
      }),
      { mailbox: { capacity: 2, overflow: 'drop-oldest' } },
    );
    ref.tell({ i: 0 });
    expect(await until(() => holding)).toBe(true);
    const dropped = ref.ask<number>((replyTo) => ({ i: 1, replyTo }), WAIT_MS);
    ref.tell({ i: 2 });
    ref.tell({ i: 3 });
    await expect(dropped).rejects.toMatchObject({ name: 'MailboxFull' });
    hold.open();
    // The mailbox is in order, so 1, had it been kept, would be handled before 3.
    expect(await until(() => handled.includes(3))).toBe(true);
    expect(handled).toEqual([0, 2, 3]);
    await system.shutdown();
  });
});

describe('mailbox byte budgets', { timeout: TEST_TIMEOUT_MS }, () => {
  type Sized = { i: number; bytes: number; replyTo?: ReplyTo<number> };

  it('refuses a message that would take the queued bytes past the budget, with the numbers', async () => {
    const system = new ActorSystem({ env: env() });
    const hold = gate();
    let holding = false;
    const handled: number[] = [];
    const ref = system.spawn<Sized>(
      'sized',
      () => ({
        async receive(msg) {
          if (msg.i === 0) {
            holding = true;
            await hold.promise;
          }
          handled.push(msg.i);
        },
      }),
      { mailbox: { capacity: 1_000, overflow: 'reject', maxBytes: 100, sizeOf: (m) => m.bytes } },
    );
    ref.tell({ i: 0, bytes: 100 });
    expect(await until(() => holding)).toBe(true); // taken off the mailbox: its bytes no longer count
    ref.tell({ i: 1, bytes: 60 });
    ref.tell({ i: 2, bytes: 40 });
    expect(() => ref.tell({ i: 3, bytes: 1 })).toThrow(expect.objectContaining({ name: 'MailboxFull', fields: expect.objectContaining({ budgetBytes: 100, heldBytes: 100, requestBytes: 1 }) }));
    await expect(ref.ask<number>((replyTo) => ({ i: 4, bytes: 50, replyTo }), WAIT_MS)).rejects.toMatchObject({ name: 'MailboxFull', code: 'OVERLOADED' });
    hold.open();
    expect(await until(() => handled.includes(2))).toBe(true);
    // Once drained, the budget is free again.
    ref.tell({ i: 5, bytes: 100 });
    expect(await until(() => handled.includes(5))).toBe(true);
    expect(handled).toEqual([0, 1, 2, 5]);
    await system.shutdown();
  });

  it('takes one message larger than the whole budget when nothing is queued, so no size is refused forever', async () => {
    const system = new ActorSystem({ env: env() });
    const handled: number[] = [];
    const ref = system.spawn<Sized>('big', () => ({ receive: (msg) => void handled.push(msg.i) }), { mailbox: { maxBytes: 10, sizeOf: (m) => m.bytes } });
    ref.tell({ i: 1, bytes: 1_000 });
    expect(await until(() => handled.includes(1))).toBe(true);
    await system.shutdown();
  });

  it('cuts a batch at batchBytes: a burst of large messages is handled in several turns, in order', async () => {
    const system = new ActorSystem({ env: env() });
    const batches: number[][] = [];
    const ref = system.spawn<Sized>('batch-bytes', () => ({ receiveBatch: (msgs) => void batches.push(msgs.map((m) => m.i)) }), {
      mailbox: { sizeOf: (m) => m.bytes },
      batchBytes: 250,
    });
    for (let i = 0; i < 10; i++) ref.tell({ i, bytes: 100 });
    expect(await until(() => batches.flat().length === 10)).toBe(true);
    expect(batches).toEqual([[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]);
    await system.shutdown();
  });
});

describe('batch drain', { timeout: TEST_TIMEOUT_MS }, () => {
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
    expect(await until(() => seen.length === 10_000)).toBe(true);
    expect(seen).toEqual(Array.from({ length: 10_000 }, (_, i) => i));
    expect(batches.length).toBeLessThanOrEqual(2);
    await system.shutdown();
  });
});

describe('supervision', { timeout: TEST_TIMEOUT_MS }, () => {
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
    await expect(ref.ask<void>((replyTo) => ({ type: 'boom', replyTo }), WAIT_MS)).rejects.toMatchObject({ name: 'ActorCrashed' });
    ref.tell({ type: 'add', n: 2 });
    expect(await ref.ask<number>((replyTo) => ({ type: 'get', replyTo }), WAIT_MS)).toBe(2);
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
          // A window as long as the test, so however slowly the failures come they count together.
          supervision: { maxRestarts: 2, windowMs: TEST_TIMEOUT_MS, minBackoffMs: 1, maxBackoffMs: 2 },
        });
      },
    }), { supervision: { minBackoffMs: 1, maxBackoffMs: 2 } });
    const first = childRef!;
    for (let i = 0; i < 3; i++) {
      first.tell('fail');
      // Two restarts of the child, then the third failure escalates and the parent's restart counts.
      expect(await until(() => system.stats().restarts === i + 1)).toBe(true);
    }
    expect(await until(() => parentStarts === 2)).toBe(true);
    expect(childRef).not.toBe(first);
    expect(childRef!.address.name).toBe('parent/child');
    await system.shutdown();
  });

  it('stops a top-level actor that exceeds its restart intensity', async () => {
    const system = new ActorSystem({ env: env() });
    const ref = system.spawn<string>('doomed', () => ({ receive() { throw new Error('always'); } }), {
      supervision: { maxRestarts: 1, windowMs: TEST_TIMEOUT_MS, minBackoffMs: 1, maxBackoffMs: 1 },
    });
    ref.tell('a');
    expect(await until(() => system.stats().restarts === 1)).toBe(true);
    ref.tell('b');
    expect(await until(() => system.stats().actors === 0)).toBe(true);
    await expect(ref.ask((replyTo) => `${replyTo.id}`, 100)).rejects.toMatchObject({ name: 'ActorStopped' });
    await system.shutdown();
  });
});

describe('lifecycle', { timeout: TEST_TIMEOUT_MS }, () => {
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
            events.push('c busy');
            await hold.promise;
          },
          stopping: () => void events.push('c stopping'),
        }));
      },
      stopping: () => void events.push('p stopping'),
    }));
    child.tell({});
    expect(await until(() => events.includes('c busy'))).toBe(true);
    const queued = child.ask<void>((replyTo) => ({ replyTo }), WAIT_MS);
    const stopped = system.stop(parent);
    hold.open();
    await stopped;
    await expect(queued).rejects.toMatchObject({ name: 'ActorStopped' });
    expect(events).toEqual(['p started', 'c started', 'c busy', 'c stopping', 'p stopping']);
    expect(system.stats().actors).toBe(0);
  });

  it('cancels timers set with ctx.after when the actor stops', async () => {
    const { env: timed, liveTimers } = timerCountingEnv();
    const system = new ActorSystem({ env: timed });
    let ticks = 0;
    const ref = system.spawn<'tick'>('ticker', () => ({
      started: (ctx) => void ctx.after(20, 'tick'),
      receive: () => void ticks++,
    }));
    expect(liveTimers()).toBe(1);
    await system.stop(ref);
    expect(liveTimers()).toBe(0);
    // A timer set later for as long fires later: once the witness has its tick, the ticker's would have come.
    let witnessed = false;
    system.spawn<'tick'>('witness', () => ({
      started: (ctx) => void ctx.after(20, 'tick'),
      receive: () => void (witnessed = true),
    }));
    expect(await until(() => witnessed)).toBe(true);
    expect(ticks).toBe(0);
    await system.shutdown();
  });

  it('refuses two actors with one name', async () => {
    const system = new ActorSystem({ env: env() });
    system.spawn('same', () => ({}));
    expect(() => system.spawn('same', () => ({}))).toThrow(/already exists/);
    expect(() => system.spawn('bad name!', () => ({}))).toThrow(/invalid actor name/);
    await system.shutdown();
  });
});
