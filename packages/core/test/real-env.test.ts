import { describe, expect, it } from 'vitest';
import { nodeId, realEnv } from '../src/index.js';

const env = () => realEnv(nodeId('n1'));
/** A flush bound no busy machine reaches: the order is the subject, not the clock. */
const patientEnv = () => realEnv(nodeId('n1'), undefined, { maxFlushWaitMs: 60_000 });
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('realEnv scheduler.defer', () => {
  it('runs deferred callbacks in order, after the current turn', async () => {
    const { scheduler } = env();
    const ran: number[] = [];
    scheduler.defer(() => ran.push(1));
    scheduler.defer(() => ran.push(2));
    expect(ran).toEqual([]);
    await nextTurn();
    expect(ran).toEqual([1, 2]);
  });

  it('runs what a deferred callback defers in the same pass, before I/O that came meanwhile', async () => {
    const { scheduler } = env();
    const ran: string[] = [];
    // A chain of hand-offs, as a request takes from actor to actor.
    scheduler.defer(() => {
      ran.push('first');
      setImmediate(() => ran.push('event loop')); // house-rules-allow
      scheduler.defer(() => {
        ran.push('second');
        scheduler.defer(() => ran.push('third'));
      });
    });
    // Waits on turns of the event loop, not on a timer: on a busy machine a 5 ms timer could fire before the loop's next turn.
    while (ran.length < 4) await new Promise<void>((resolve) => setImmediate(resolve)); // house-rules-allow
    expect(ran).toEqual(['first', 'second', 'third', 'event loop']);
  });

  it('yields to the event loop after a bounded pass, and still runs the rest', async () => {
    const { scheduler } = env();
    let count = 0;
    let countWhenLoopTurned: number | undefined;
    const forever = () => {
      count++;
      if (count < 5000) scheduler.defer(forever);
    };
    scheduler.defer(() => {
      setImmediate(() => (countWhenLoopTurned = count)); // house-rules-allow
      forever();
    });
    while (count < 5000) await new Promise<void>((resolve) => setTimeout(resolve, 1)); // house-rules-allow
    expect(count).toBe(5000);
    expect(countWhenLoopTurned).toBeGreaterThan(1);
    expect(countWhenLoopTurned).toBeLessThan(5000);
  });

  it('runs a flush after the work its pass defers, while that work is quick', async () => {
    const { scheduler } = patientEnv();
    const ran: string[] = [];
    scheduler.defer(() => {
      ran.push('coordinator');
      scheduler.deferIo(() => ran.push('flush a'));
      scheduler.deferIo(() => ran.push('flush b'));
      scheduler.defer(() => {
        ran.push('replica');
        scheduler.defer(() => ran.push('store'));
      });
    });
    await nextTurn();
    expect(ran).toEqual(['coordinator', 'replica', 'store', 'flush a', 'flush b']);
  });

  it('runs a flush before the next callback once it has waited its bound', async () => {
    const { scheduler } = realEnv(nodeId('n1'), undefined, { maxFlushWaitMs: 0 });
    const ran: string[] = [];
    scheduler.defer(() => {
      ran.push('coordinator');
      scheduler.deferIo(() => ran.push('flush'));
      scheduler.defer(() => ran.push('replica'));
    });
    await nextTurn();
    expect(ran).toEqual(['coordinator', 'flush', 'replica']);
  });

  it('runs what a flush defers in the same pass', async () => {
    const { scheduler } = patientEnv();
    const ran: string[] = [];
    scheduler.deferIo(() => {
      ran.push('flush');
      scheduler.defer(() => ran.push('after'));
      scheduler.deferIo(() => ran.push('flush again'));
    });
    await nextTurn();
    expect(ran).toEqual(['flush', 'after', 'flush again']);
  });

  it('flushes at the end of a pass that stops at its bound', async () => {
    const { scheduler } = patientEnv();
    let count = 0;
    let countAtFlush: number | undefined;
    const forever = () => {
      count++;
      if (count < 5000) scheduler.defer(forever);
    };
    scheduler.defer(forever);
    scheduler.deferIo(() => (countAtFlush = count));
    while (count < 5000) await new Promise<void>((resolve) => setTimeout(resolve, 1)); // house-rules-allow
    expect(countAtFlush).toBeGreaterThan(1);
    expect(countAtFlush).toBeLessThan(5000);
  });

  it('runs the other flushes of a pass when one throws', async () => {
    const { scheduler } = env();
    const ran: string[] = [];
    const errors: unknown[] = [];
    const onError = (error: unknown) => errors.push(error);
    process.on('uncaughtException', onError);
    try {
      scheduler.deferIo(() => {
        throw new Error('socket gone');
      });
      scheduler.deferIo(() => ran.push('next flush'));
      while (ran.length === 0) await nextTurn();
    } finally {
      process.off('uncaughtException', onError);
    }
    expect(ran).toEqual(['next flush']);
    expect(errors).toHaveLength(1);
  });
});
