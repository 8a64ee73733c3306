import type { Scheduler, Timer } from '@chorus/core';

interface Entry {
  deadline: number;
  id: number;
}

/**
 * Ask timeouts without a timer per ask. Asks with the same timeout expire in
 * the order they were made, so each distinct timeout keeps a FIFO and one
 * timer armed for its head. Settled asks are skipped lazily when their
 * deadline comes; a burst of 100,000 asks costs a handful of timers.
 */
export class DeadlineQueues {
  private readonly queues = new Map<number, { entries: Entry[]; head: number; timer: Timer | undefined }>();

  constructor(
    private readonly scheduler: Scheduler,
    private readonly now: () => number,
    /** Called for each id whose deadline passed; ignores ids already settled. */
    private readonly expire: (id: number, timeoutMs: number) => void,
  ) {}

  add(id: number, timeoutMs: number): void {
    let queue = this.queues.get(timeoutMs);
    if (!queue) {
      queue = { entries: [], head: 0, timer: undefined };
      this.queues.set(timeoutMs, queue);
    }
    queue.entries.push({ deadline: this.now() + timeoutMs, id });
    if (!queue.timer) this.arm(timeoutMs);
  }

  cancelAll(): void {
    for (const queue of this.queues.values()) queue.timer?.cancel();
    this.queues.clear();
  }

  private arm(timeoutMs: number): void {
    const queue = this.queues.get(timeoutMs)!;
    const next = queue.entries[queue.head];
    if (!next) {
      this.queues.delete(timeoutMs);
      return;
    }
    queue.timer = this.scheduler.setTimer(Math.max(0, next.deadline - this.now()), () => {
      queue.timer = undefined;
      const now = this.now();
      while (queue.head < queue.entries.length && queue.entries[queue.head]!.deadline <= now) {
        this.expire(queue.entries[queue.head]!.id, timeoutMs);
        queue.head++;
      }
      // Compact once the expired prefix dominates, so the array does not grow without end.
      if (queue.head > 1024 && queue.head * 2 > queue.entries.length) {
        queue.entries = queue.entries.slice(queue.head);
        queue.head = 0;
      }
      this.arm(timeoutMs);
    });
  }
}
