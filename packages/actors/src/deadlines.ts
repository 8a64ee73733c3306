import type { Scheduler, Timer } from '@chorus/core';

/** Entries a queue holds before its first growth, and the least it shrinks back to. */
const MIN_CAPACITY = 256;
/**
 * How late an ask may expire, as a share of its timeout. Asks made a
 * millisecond apart have deadlines a millisecond apart, and a timer armed
 * for the exact head fired once per ask under a steady trickle of them (one
 * write at a time: each of three nodes armed a timer 1.2 times per write).
 * Re-armed no sooner than this share of the timeout, a queue's timer fires
 * at most 50 times per timeout, and a 2 s ask expires at most 40 ms late.
 */
const LATENESS_SHARE = 1 / 50;

/**
 * One timeout's FIFO, as a ring over two typed arrays: an entry is two
 * numbers, and the arrays' memory lies outside the V8 heap. A queue holds a
 * timeout's worth of asks (tens of thousands under load), each long past
 * its ask: as objects, or as the backing stores of growing JS arrays, they
 * were copied by every scavenge, promoted, and left for full collections.
 */
class Queue {
  deadlines = new Float64Array(MIN_CAPACITY);
  /** Ids are integers below 2^53: a double holds each exactly. */
  ids = new Float64Array(MIN_CAPACITY);
  head = 0;
  size = 0;
  timer: Timer | undefined = undefined;

  push(deadline: number, id: number): void {
    if (this.size === this.deadlines.length) this.resize(this.deadlines.length * 2);
    const at = (this.head + this.size) % this.deadlines.length;
    this.deadlines[at] = deadline;
    this.ids[at] = id;
    this.size++;
  }

  /** The oldest entry's deadline; the queue must not be empty. */
  get firstDeadline(): number {
    return this.deadlines[this.head]!;
  }

  /** Drops the oldest entry and returns its id; the queue must not be empty. */
  shift(): number {
    const id = this.ids[this.head]!;
    this.head = (this.head + 1) % this.deadlines.length;
    this.size--;
    return id;
  }

  /** Gives back the room of a burst once it has drained. */
  shrinkIfSparse(): void {
    const capacity = this.deadlines.length;
    if (capacity > MIN_CAPACITY && this.size * 4 <= capacity) this.resize(Math.max(MIN_CAPACITY, capacity / 2));
  }

  private resize(capacity: number): void {
    const deadlines = new Float64Array(capacity);
    const ids = new Float64Array(capacity);
    for (let i = 0; i < this.size; i++) {
      const from = (this.head + i) % this.deadlines.length;
      deadlines[i] = this.deadlines[from]!;
      ids[i] = this.ids[from]!;
    }
    this.deadlines = deadlines;
    this.ids = ids;
    this.head = 0;
  }
}

/**
 * Ask timeouts without a timer per ask. Asks with the same timeout expire in
 * the order they were made, so each distinct timeout keeps a FIFO and one
 * timer armed for its head. Settled asks are skipped lazily when their
 * deadline comes; a burst of 100,000 asks costs a handful of timers.
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
      queue = new Queue();
      this.queues.set(timeoutMs, queue);
    }
    queue.push(this.now() + timeoutMs, id);
    if (!queue.timer) this.arm(timeoutMs, queue);
  }

  cancelAll(): void {
    for (const queue of this.queues.values()) queue.timer?.cancel();
    this.queues.clear();
  }

  private arm(timeoutMs: number, queue: Queue): void {
    if (queue.size === 0) {
      this.queues.delete(timeoutMs);
      return;
    }
    const delayMs = Math.max(queue.firstDeadline - this.now(), timeoutMs * LATENESS_SHARE);
    queue.timer = this.scheduler.setTimer(delayMs, () => {
      queue.timer = undefined;
      const now = this.now();
      // An expiry may cancel every queue, this one included, or add to this one (and arm it).
      const current = () => this.queues.get(timeoutMs) === queue;
      while (queue.size > 0 && queue.firstDeadline <= now && current()) this.expire(queue.shift(), timeoutMs);
      queue.shrinkIfSparse();
      if (queue.timer === undefined && current()) this.arm(timeoutMs, queue);
    });
  }
}
