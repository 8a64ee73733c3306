import type { NodeId } from '@chorus/core';
import type { ReplyTo } from './envelope.js';

export type OverflowPolicy = 'reject' | 'drop-oldest';

export interface MailboxOptions {
  /** Most messages held at once. */
  capacity: number;
  /** `reject` refuses the new message (the sender sees MailboxFull); `drop-oldest` makes room by discarding the oldest, for traffic where the newest supersedes the rest (gossip). */
  overflow: OverflowPolicy;
}

export interface Letter<M> {
  msg: M;
  /** Set when the message is part of an ask, so the runtime can fail it if the message is never handled. */
  replyTo: ReplyTo<unknown> | undefined;
  /** The peer the message came from, as the transport authenticated it; absent for a message sent on this node. */
  from?: NodeId;
}

/** A FIFO ring buffer with a hard capacity: memory stays bounded under any load. */
export class Mailbox<M> {
  private buffer: Array<Letter<M> | undefined>;
  private head = 0;
  private count = 0;

  constructor(readonly options: MailboxOptions) {
    if (!Number.isInteger(options.capacity) || options.capacity < 1) throw new RangeError('mailbox capacity must be a positive integer');
    this.buffer = new Array(Math.min(options.capacity, 1024));
  }

  get size(): number {
    return this.count;
  }

  /**
   * Adds a letter. Returns the letter that was evicted to make room (drop-oldest),
   * `null` when it was refused (reject), or `undefined` when it simply fit.
   */
  push(letter: Letter<M>): Letter<M> | null | undefined {
    let evicted: Letter<M> | undefined;
    if (this.count === this.options.capacity) {
      if (this.options.overflow === 'reject') return null;
      evicted = this.shift();
    }
    if (this.count === this.buffer.length) this.grow();
    this.buffer[(this.head + this.count) % this.buffer.length] = letter;
    this.count++;
    return evicted;
  }

  shift(): Letter<M> | undefined {
    if (this.count === 0) return undefined;
    const letter = this.buffer[this.head];
    this.buffer[this.head] = undefined;
    this.head = (this.head + 1) % this.buffer.length;
    this.count--;
    return letter;
  }

  /** Takes up to `max` letters in arrival order. */
  drain(max: number): Array<Letter<M>> {
    const n = Math.min(max, this.count);
    const out = new Array<Letter<M>>(n);
    for (let i = 0; i < n; i++) out[i] = this.shift()!;
    return out;
  }

  private grow(): void {
    const size = Math.min(this.options.capacity, this.buffer.length * 2);
    const next = new Array<Letter<M> | undefined>(size);
    for (let i = 0; i < this.count; i++) next[i] = this.buffer[(this.head + i) % this.buffer.length];
    this.buffer = next;
    this.head = 0;
  }
}
