import type { Scheduler, Timer } from '@chorus/core';

/** One timeout's FIFO: deadlines and ids side by side, so that an entry is two numbers in two arrays, not an object. */
interface Queue {
  deadlines: number[];
  ids: number[];
  head: number;
  timer: Timer | undefined;
}

/**
 * Ask timeouts without a timer per ask. Asks with the same timeout expire in
 * the order they were made, so each distinct timeout keeps a FIFO and one
 * timer armed for its head. Settled asks are skipped lazily when their
 * deadline comes; a burst of 100,000 asks costs a handful of timers. An entry
 * lives as long as its timeout, long past most asks: as an object it would be
 * promoted to the old space every time, so entries are kept as plain numbers.
 */
export class DeadlineQueues {
  private readonly queues = new Map<number, Queue>();

  constructor(
    private readonly scheduler: Scheduler,
    private readonly now: () => number,
    /** Called for each id whose deadline passed; ignores ids already settled. */
    private readonly expire: (id: number, timeoutMs: number) => void,
  ) {}

  add(id: number, timeoutMs: number): void {
    let queue = this.queues.get(timeoutMs);
    if (!queue) {
      queue = { deadlines: [], ids: [], head: 0, timer: undefined };
      this.queues.set(timeoutMs, queue);
    }
    queue.deadlines.push(this.now() + timeoutMs);
    queue.ids.push(id);
    if (!queue.timer) this.arm(timeoutMs);
  }

  cancelAll(): void {
    for (const queue of this.queues.values()) queue.timer?.cancel();
    this.queues.clear();
  }

  private arm(timeoutMs: number): void {
    const queue = this.queues.get(timeoutMs)!;
    if (queue.head >= queue.ids.length) {
      this.queues.delete(timeoutMs);
      return;
    }
    queue.timer = this.scheduler.setTimer(Math.max(0, queue.deadlines[queue.head]! - this.now()), () => {
      queue.timer = undefined;
      const now = this.now();
      while (queue.head < queue.ids.length && queue.deadlines[queue.head]! <= now) {
        this.expire(queue.ids[queue.head]!, timeoutMs);
        queue.head++;
      }
      // Compact once the expired prefix dominates, so the arrays do not grow without end.
      if (queue.head > 1024 && queue.head * 2 > queue.ids.length) {
        queue.deadlines = queue.deadlines.slice(queue.head);
        queue.ids = queue.ids.slice(queue.head);
        queue.head = 0;
      }
      this.arm(timeoutMs);
    });
  }
}
