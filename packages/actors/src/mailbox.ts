import type { NodeId } from '@chorus/core';
import type { ReplyTo } from './envelope.js';

export type OverflowPolicy = 'reject' | 'drop-oldest';

export interface MailboxOptions<M = unknown> {
  /** Most messages held at once. */
  capacity: number;
  /** `reject` refuses the new message (the sender sees MailboxFull); `drop-oldest` makes room by discarding the oldest, for traffic where the newest supersedes the rest (gossip). */
  overflow: OverflowPolicy;
  /**
   * Most bytes held at once, as `sizeOf` counts them; a message past it is
   * refused under either policy (values are not gossip: none supersedes
   * another). A message larger than the whole budget is taken when nothing
   * else is queued, so no size is refused forever.
   */
  maxBytes?: number;
  /** The bytes a message holds (its values, mostly); 0 for every message when absent. */
  sizeOf?: (msg: M) => number;
}

export interface Letter<M> {
  msg: M;
  /** Set when the message is part of an ask, so the runtime can fail it if the message is never handled. */
  replyTo: ReplyTo<unknown> | undefined;
  /** The peer the message came from, as the transport authenticated it; absent for a message sent on this node. */
  from?: NodeId;
  /** Its size as the mailbox's `sizeOf` counted it when it was queued. */
  bytes?: number;
}

/** A FIFO ring buffer with a hard capacity: memory stays bounded under any load. */
export class Mailbox<M> {
  private buffer: Array<Letter<M> | undefined>;
  private head = 0;
  private count = 0;
  private held = 0;
  /** What the last refused letter would have added: for the error its sender sees. */
  refusedBytes = 0;

  constructor(readonly options: MailboxOptions<M>) {
    if (!Number.isInteger(options.capacity) || options.capacity < 1) throw new RangeError('mailbox capacity must be a positive integer');
    if (options.maxBytes !== undefined && !(options.maxBytes >= 1)) throw new RangeError('mailbox maxBytes must be at least 1');
    this.buffer = new Array(Math.min(options.capacity, 1024));
  }

  get size(): number {
    return this.count;
  }

  /** Bytes of the letters queued, as `sizeOf` counted them. */
  get bytes(): number {
    return this.held;
  }

  /**
   * Adds a letter. Returns the letter that was evicted to make room (drop-oldest),
   * `null` when it was refused (reject), or `undefined` when it simply fit.
   */
  push(letter: Letter<M>): Letter<M> | null | undefined {
    let evicted: Letter<M> | undefined;
    const sizeOf = this.options.sizeOf;
    if (sizeOf !== undefined) {
      const bytes = Math.max(0, sizeOf(letter.msg) || 0);
      const max = this.options.maxBytes;
      if (max !== undefined && this.count > 0 && this.held + bytes > max) {
        this.refusedBytes = bytes;
        return null;
      }
      letter.bytes = bytes;
    }
    if (this.count === this.options.capacity) {
      if (this.options.overflow === 'reject') return null;
      evicted = this.shift();
    }
    if (this.count === this.buffer.length) this.grow();
    this.buffer[(this.head + this.count) % this.buffer.length] = letter;
    this.count++;
    this.held += letter.bytes ?? 0;
    return evicted;
  }

  shift(): Letter<M> | undefined {
    if (this.count === 0) return undefined;
    const letter = this.buffer[this.head];
    this.buffer[this.head] = undefined;
    this.head = (this.head + 1) % this.buffer.length;
    this.count--;
    this.held -= letter?.bytes ?? 0;
    return letter;
  }

  /** Takes up to `max` letters in arrival order, stopping before one that would take the batch past `maxBytes` (the first is always taken). */
  drain(max: number, maxBytes = Infinity): Array<Letter<M>> {
    const n = Math.min(max, this.count);
    const out: Array<Letter<M>> = [];
    let bytes = 0;
    for (let i = 0; i < n; i++) {
      const next = this.buffer[this.head]!;
      const size = next.bytes ?? 0;
      if (out.length > 0 && bytes + size > maxBytes) break;
      bytes += size;
      out.push(this.shift()!);
    }
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
