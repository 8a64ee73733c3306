import { createHash, type Hash } from 'node:crypto';
import type { NodeId, Scheduler, Timer } from '@chorus/core';

/** Who an event belongs to: a crash bumps the node's epoch and voids every event of the old one. */
export interface Owner {
  node: NodeId;
  epoch: number;
}

interface SimEvent {
  time: number;
  seq: number;
  owner: Owner | undefined;
  label: string;
  run: () => void;
  cancelled: boolean;
}

export interface RunOptions {
  /** Stop when virtual time would pass this many milliseconds. */
  untilMs?: number;
  /** Stop after this many events. */
  maxEvents?: number;
  /** Checked after every event. */
  stopWhen?: () => boolean;
}

/**
 * The one event queue of a simulation: message deliveries, timers and actor
 * turns of every node, ordered by (virtual time, insertion order). Virtual
 * time jumps to the next event. Every executed event is folded into a
 * SHA-256 trace, so two runs can be compared by one hash.
 */
export class EventQueue {
  private heap: SimEvent[] = [];
  private seq = 0;
  private nowMs = 0;
  private executed = 0;
  private readonly trace: Hash = createHash('sha256');
  private readonly epochs = new Map<NodeId, number>();
  /** Events of paused nodes, in the order they came due, run again on resume. */
  private readonly held = new Map<NodeId, SimEvent[]>();
  /** Receives every trace line as it is folded into the hash (`--trace`). */
  onTrace: ((line: string) => void) | undefined;

  get now(): number {
    return this.nowMs;
  }

  get eventsExecuted(): number {
    return this.executed;
  }

  get pendingEvents(): number {
    return this.heap.length;
  }

  epochOf(node: NodeId): number {
    return this.epochs.get(node) ?? 0;
  }

  /** Voids every queued event of the node's current epoch. */
  bumpEpoch(node: NodeId): number {
    const next = this.epochOf(node) + 1;
    this.epochs.set(node, next);
    this.held.delete(node);
    return next;
  }

  isPaused(node: NodeId): boolean {
    return this.held.has(node);
  }

  /**
   * The node's process stops running, as in a long garbage collection or a
   * SIGSTOP: its timers, turns and incoming frames wait, its connections stay
   * open, and its clock keeps moving. Nothing is lost.
   */
  pause(node: NodeId): void {
    if (!this.held.has(node)) this.held.set(node, []);
  }

  /** Everything that came due while the node was paused runs now, in the order it came due. */
  resume(node: NodeId): void {
    const events = this.held.get(node);
    if (events === undefined) return;
    this.held.delete(node);
    for (const event of events) this.push({ ...event, time: this.nowMs, seq: this.seq++ });
  }

  /** Holds work for a paused node (a frame delivered to it) until it resumes. */
  hold(node: NodeId, label: string, run: () => void): void {
    this.held.get(node)?.push({ time: this.nowMs, seq: this.seq++, owner: undefined, label, run, cancelled: false });
  }

  at(time: number, owner: Owner | undefined, label: string, run: () => void): Timer {
    const event: SimEvent = { time: Math.max(time, this.nowMs), seq: this.seq++, owner, label, run, cancelled: false };
    this.push(event);
    return { cancel: () => (event.cancelled = true) };
  }

  /** Adds a line to the trace that is not an event (a scenario's own milestones). */
  note(line: string): void {
    this.record(`${this.nowMs}|${line}`);
  }

  traceHash(): string {
    return this.trace.copy().digest('hex');
  }

  /** A node's view of the queue: what its Env hands to its actors. */
  schedulerFor(owner: Owner): Scheduler {
    return {
      setTimer: (delayMs, fn) => this.at(this.nowMs + Math.max(0, delayMs), owner, 'timer', fn),
      defer: (fn) => void this.at(this.nowMs, owner, 'turn', fn),
      // A flush is a turn like any other here: the seed orders it among the rest.
      deferIo: (fn) => void this.at(this.nowMs, owner, 'turn', fn),
      track: (work) => work,
    };
  }

  /**
   * Runs events in order. After each one it yields to Node's own queue once,
   * so promise chains the event started (async actor turns, in-memory storage)
   * finish before virtual time moves on: the same seed gives the same history.
   */
  async run(options: RunOptions = {}): Promise<void> {
    const until = options.untilMs ?? Infinity;
    const maxEvents = options.maxEvents ?? Infinity;
    let ran = 0;
    await yieldToNode();
    while (ran < maxEvents) {
      if (options.stopWhen?.()) return;
      const next = this.heap[0];
      if (!next || next.time > until) {
        if (until !== Infinity) this.nowMs = Math.max(this.nowMs, until);
        return;
      }
      this.pop();
      if (next.cancelled) continue;
      if (next.owner && next.owner.epoch !== this.epochOf(next.owner.node)) continue;
      if (next.owner && this.held.has(next.owner.node)) {
        this.held.get(next.owner.node)!.push(next);
        continue;
      }
      this.nowMs = next.time;
      this.executed++;
      ran++;
      this.record(`${next.time}|${next.owner?.node ?? '-'}|${next.label}`);
      next.run();
      await yieldToNode();
    }
  }

  private record(line: string): void {
    this.trace.update(`${line}\n`);
    this.onTrace?.(line);
  }

  private push(event: SimEvent): void {
    const heap = this.heap;
    heap.push(event);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i]!, heap[parent]!)) break;
      [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
      i = parent;
    }
  }

  private pop(): void {
    const heap = this.heap;
    const last = heap.pop()!;
    if (heap.length === 0) return;
    heap[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && before(heap[l]!, heap[m]!)) m = l;
      if (r < heap.length && before(heap[r]!, heap[m]!)) m = r;
      if (m === i) return;
      [heap[i], heap[m]] = [heap[m]!, heap[i]!];
      i = m;
    }
  }
}

function before(a: SimEvent, b: SimEvent): boolean {
  return a.time < b.time || (a.time === b.time && a.seq < b.seq);
}

function yieldToNode(): Promise<void> {
  // The simulator's run loop is the one place that must hand control back to Node's real event loop.
  return new Promise((resolve) => setImmediate(resolve)); // house-rules-allow
}
