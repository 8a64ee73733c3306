import { type Env, IdTable, type LinkState, type Logger, type NodeId, type Timer, type Transport } from '@chorus/core';
import { type ActorAddress, type Codec, type Envelope, type ReplyTo, msgpackCodec } from './envelope.js';
import { ActorCrashed, ActorNotFound, ActorStopped, AskTimeout, MailboxFull, NodeUnreachable, UnexpectedReply, fromWireError, toWireError } from './errors.js';
import { DeadlineQueues } from './deadlines.js';
import { type Letter, Mailbox, type MailboxOptions } from './mailbox.js';

/**
 * What an actor does. State lives in the closure of the factory that builds
 * the behavior, so a restart (a fresh call of the factory) starts clean.
 *
 * Contract: handlers run one at a time; when a handler returns a promise, the
 * actor takes no other message until it settles. A handler that throws (or
 * whose promise rejects) fails the actor, and its supervisor decides.
 */
export interface Behavior<M> {
  started?(ctx: ActorContext<M>): void | Promise<void>;
  /** Handles one message. */
  receive?(msg: M, ctx: ActorContext<M>): void | Promise<void>;
  /** Handles every message queued when the turn began (up to `batchLimit`), in arrival order. Takes precedence over `receive`. */
  receiveBatch?(msgs: M[], ctx: ActorContext<M>): void | Promise<void>;
  /** Runs when the actor stops or is about to be restarted; its children are already stopped. */
  stopping?(ctx: ActorContext<M>): void | Promise<void>;
}

export interface SupervisionOptions {
  /** Restarts allowed within `windowMs` before the failure escalates to the parent. */
  maxRestarts: number;
  windowMs: number;
  /** Delay before the first restart in a window; doubles with each further one, up to `maxBackoffMs`, with jitter. */
  minBackoffMs: number;
  maxBackoffMs: number;
}

export interface SpawnOptions<M = unknown> {
  mailbox?: Partial<MailboxOptions<M>>;
  supervision?: Partial<SupervisionOptions>;
  /** Most messages one `receiveBatch` call gets; single-message behaviors handle up to this many per turn before yielding. */
  batchLimit?: number;
  /** Most bytes (as the mailbox's `sizeOf` counts them) one `receiveBatch` call gets; always at least one message. */
  batchBytes?: number;
}

export interface ActorRef<M> {
  readonly address: ActorAddress;
  /** Fire and forget. Throws MailboxFull when a local actor's mailbox rejects it. */
  tell(msg: M): void;
  /** Sends the message built around a reply address and waits at most `timeoutMs` for the answer. */
  ask<R>(build: (replyTo: ReplyTo<R>) => M, timeoutMs: number): Promise<R>;
  /**
   * `ask` without a promise, for callers that make asks by the thousand (a coordinator's replica requests):
   * the answer, or the error `ask` would reject with, goes to `answered`, exactly once. It runs outside the
   * asking actor's turn, like any reply, and may run before `request` returns when the ask fails at once
   * (an unreachable node, a full mailbox): a callback that touches actor state should only tell its actor.
   */
  request<R>(build: (replyTo: ReplyTo<R>) => M, timeoutMs: number, answered: Answered<R>): void;
}

/** Where `ActorRef.request` hands its outcome: an error, or undefined and the answer. */
export type Answered<R> = (error: Error | undefined, answer: R | undefined) => void;

export interface ActorContext<M> {
  readonly self: ActorRef<M>;
  readonly env: Env;
  readonly log: Logger;
  readonly system: ActorSystem;
  /**
   * The node that sent the message `receive` is handling: the peer the
   * transport authenticated for a message from another node (never what the
   * message says about itself), this node for a local one. Undefined outside
   * `receive` (in `started`, `stopping` and `receiveBatch`).
   */
  readonly sender: NodeId | undefined;
  spawn<C>(name: string, factory: () => Behavior<C>, options?: SpawnOptions): ActorRef<C>;
  reply<R>(to: ReplyTo<R>, value: R): void;
  fail(to: ReplyTo<unknown>, error: Error): void;
  /** Sends `msg` to this actor after `delayMs`; cancelled when the actor stops or restarts. */
  after(delayMs: number, msg: M): Timer;
  /** Stops this actor (after the current turn) and its children. */
  stop(): void;
}

/**
 * The node's hybrid logical clock as the runtime sees it. Called from the
 * runtime only, synchronously, on the thread that sends or receives; neither
 * call may block. `observe` decides for itself what to adopt: a stamp further
 * ahead than the clock trusts must be refused there, since any peer (or a
 * broken one) can put any number in the frame.
 */
export interface MessageClock {
  /** The reading every envelope to another node carries; a read, not a tick. */
  stamp(): number;
  /** A stamp that came with a frame from another node, handed over before the frame is delivered. */
  observe(micros: number): void;
}

export interface ActorSystemOptions {
  env: Env;
  /**
   * Stamps every envelope put on the transport (messages, replies and
   * errors) and advances on every stamp received, so whatever this node
   * does after hearing from a peer is ordered after what the peer had seen.
   * Without one, envelopes go unstamped and stamps received are ignored.
   */
  clock?: MessageClock;
  /** Without a transport the system is alone: messages to other nodes fail as unreachable. */
  transport?: Transport;
  codec?: Codec;
  defaultMailbox?: Partial<MailboxOptions>;
  defaultSupervision?: Partial<SupervisionOptions>;
}

export interface SystemStats {
  actors: number;
  pendingAsks: number;
  deadLetters: number;
  rejectedFrames: number;
  restarts: number;
  /** Replies that matched no pending ask of this run: late, owed to a previous run of this node, or from a node the ask was not sent to. */
  staleReplies: number;
  /** Replies of another kind than their ask takes; each failed its ask with UnexpectedReply. */
  unexpectedReplies: number;
}

const DEFAULT_MAILBOX: MailboxOptions = { capacity: 10_000, overflow: 'reject' };
const DEFAULT_SUPERVISION: SupervisionOptions = { maxRestarts: 5, windowMs: 10_000, minBackoffMs: 10, maxBackoffMs: 1_000 };
const DEFAULT_BATCH_LIMIT = 1_000;
const NAME = /^[A-Za-z0-9_.:-]{1,64}$/;
/** Refs kept per peer: the long-lived actors a node addresses (repair sessions name theirs, so the map is bounded). */
const MAX_REMOTE_REFS_PER_NODE = 256;
const MAX_REMOTE_REF_NODES = 1024;

interface PendingAsk {
  node: NodeId;
  actor: string;
  /** The kind the reply must have (null: none is due), when the codec knows kinds; checked on replies from other nodes. */
  expect: string | null | undefined;
  settle: Answered<unknown>;
}

type CellState = 'starting' | 'running' | 'restarting' | 'stopping' | 'stopped';

class ActorCell<M> {
  state: CellState = 'starting';
  behavior!: Behavior<M>;
  readonly mailbox: Mailbox<M>;
  readonly children = new Map<string, ActorCell<unknown>>();
  readonly ref: ActorRef<M>;
  readonly ctx: ActorContext<M>;
  readonly log: Logger;
  readonly supervision: SupervisionOptions;
  readonly batchLimit: number;
  readonly batchBytes: number;
  private turnScheduled = false;
  private busy = false;
  private restartTimes: number[] = [];
  private timers = new Set<Timer>();
  private stopped: Promise<void> | undefined;
  private idle: (() => void) | undefined;
  /** The letter `receive` is handling, or handled last while its promise is pending: what `ctx.sender` reads. */
  private current: Letter<M> | undefined;

  constructor(
    readonly system: ActorSystem,
    readonly path: string,
    readonly parent: ActorCell<unknown> | undefined,
    private readonly factory: () => Behavior<M>,
    options: SpawnOptions<M>,
    private readonly internals: SystemInternals,
  ) {
    this.mailbox = new Mailbox<M>({ ...(internals.defaultMailbox as MailboxOptions<M>), ...options.mailbox });
    this.supervision = { ...internals.defaultSupervision, ...options.supervision };
    this.batchLimit = options.batchLimit ?? DEFAULT_BATCH_LIMIT;
    this.batchBytes = options.batchBytes ?? Infinity;
    this.log = internals.env.logger.child({ actor: path });
    this.ref = new LocalRef<M>(this, internals);
    const cell = this;
    this.ctx = {
      self: this.ref,
      env: internals.env,
      log: this.log,
      system,
      get sender() {
        const letter = cell.current;
        return letter ? (letter.from ?? internals.env.node) : undefined;
      },
      spawn: (name, f, o) => cell.spawnChild(name, f, o),
      reply: (to, value) => internals.reply(to, value),
      fail: (to, error) => internals.replyError(to, error),
      after(delayMs, msg) {
        const timer = internals.env.scheduler.setTimer(delayMs, () => {
          cell.timers.delete(timer);
          if (cell.state === 'running' || cell.state === 'starting') cell.enqueue({ msg, replyTo: undefined });
        });
        cell.timers.add(timer);
        return { cancel: () => (timer.cancel(), cell.timers.delete(timer)) };
      },
      stop: () => void cell.stop(),
    };
  }

  start(): void {
    this.behavior = this.factory();
    this.state = 'starting';
    this.runExclusive(() => this.behavior.started?.(this.ctx), () => {
      if (this.state !== 'starting') return;
      this.state = 'running';
      this.scheduleTurn();
    });
  }

  spawnChild<C>(name: string, factory: () => Behavior<C>, options: SpawnOptions<C> = {}): ActorRef<C> {
    if (this.state === 'stopping' || this.state === 'stopped') throw new ActorStopped(this.path);
    return this.internals.spawn(this as ActorCell<unknown>, name, factory, options);
  }

  /** Returns false when the mailbox refused the letter. */
  enqueue(letter: Letter<M>): boolean {
    if (this.state === 'stopping' || this.state === 'stopped') {
      this.internals.deadLetter(this.path, letter, new ActorStopped(this.path));
      return true;
    }
    const evicted = this.mailbox.push(letter);
    if (evicted === null) return false;
    if (evicted?.replyTo) this.internals.replyError(evicted.replyTo, new MailboxFull(this.path, this.mailbox.options.capacity));
    this.scheduleTurn();
    return true;
  }

  /** The error a sender sees for the letter the mailbox just refused: by count, or by bytes with the numbers. */
  full(): MailboxFull {
    const { capacity, maxBytes } = this.mailbox.options;
    if (maxBytes !== undefined && this.mailbox.size < capacity) return new MailboxFull(this.path, maxBytes, { heldBytes: this.mailbox.bytes, requestBytes: this.mailbox.refusedBytes });
    return new MailboxFull(this.path, capacity);
  }

  private scheduleTurn(): void {
    if (this.turnScheduled || this.busy || this.state !== 'running' || this.mailbox.size === 0) return;
    this.turnScheduled = true;
    this.internals.env.scheduler.defer(() => {
      this.turnScheduled = false;
      this.turn();
    });
  }

  private turn(): void {
    if (this.busy || this.state !== 'running' || this.mailbox.size === 0) return;
    if (this.behavior.receiveBatch) {
      const letters = this.mailbox.drain(this.batchLimit, this.batchBytes);
      this.runExclusive(() => this.behavior.receiveBatch!(letters.map((l) => l.msg), this.ctx), () => this.scheduleTurn(), letters);
    } else {
      this.receiveSome(this.batchLimit);
    }
  }

  /** Handles messages one by one, synchronously while handlers are synchronous, until the turn's budget is spent. */
  private receiveSome(budget: number): void {
    while (budget-- > 0 && this.state === 'running') {
      const letter = this.mailbox.shift();
      if (!letter) break;
      let result: void | Promise<void>;
      this.current = letter;
      try {
        result = this.behavior.receive?.(letter.msg, this.ctx);
      } catch (error) {
        this.current = undefined;
        this.failed(error, [letter]);
        return;
      }
      if (result instanceof Promise) {
        this.busy = true;
        // The letter stays current until the promise settles: the actor takes nothing else meanwhile.
        this.internals.env.scheduler.track(result).then(
          () => this.settled(() => this.receiveSome(budget)),
          (error: unknown) => this.settled(() => this.failed(error, [letter])),
        );
        return;
      }
      this.current = undefined;
    }
    this.scheduleTurn();
  }

  /** Runs a handler with the actor marked busy until it (and any promise it returns) settles. */
  private runExclusive(run: () => void | Promise<void>, then: () => void, letters: Array<Letter<M>> = []): void {
    let result: void | Promise<void>;
    try {
      result = run();
    } catch (error) {
      this.failed(error, letters);
      return;
    }
    if (result instanceof Promise) {
      this.busy = true;
      this.internals.env.scheduler.track(result).then(
        () => this.settled(then),
        (error: unknown) => this.settled(() => this.failed(error, letters)),
      );
    } else {
      then();
    }
  }

  private settled(next: () => void): void {
    this.busy = false;
    this.current = undefined;
    if (this.idle) {
      const wake = this.idle;
      this.idle = undefined;
      wake();
      return;
    }
    next();
  }

  private failed(error: unknown, letters: Array<Letter<M>>): void {
    if (this.state === 'stopping' || this.state === 'stopped') return;
    for (const letter of letters) if (letter.replyTo) this.internals.replyError(letter.replyTo, new ActorCrashed(this.path, error));
    this.log.error({ err: error }, 'actor failed');
    const now = this.internals.env.clock.monotonicMs();
    this.restartTimes = this.restartTimes.filter((t) => now - t < this.supervision.windowMs);
    if (this.restartTimes.length >= this.supervision.maxRestarts) {
      this.log.error({ restarts: this.restartTimes.length, windowMs: this.supervision.windowMs }, 'restart intensity exceeded; escalating');
      if (this.parent) this.parent.childEscalated(this.path, error);
      else void this.stop();
      return;
    }
    this.restartTimes.push(now);
    this.internals.restarts++;
    void this.restart();
  }

  /** A child gave up: this actor fails in turn, which restarts it (and so rebuilds its children) or escalates further. */
  childEscalated(child: string, error: unknown): void {
    this.failed(new ActorCrashed(child, error), []);
  }

  private async restart(): Promise<void> {
    this.state = 'restarting';
    this.cancelTimers();
    await this.stopChildren();
    await this.callStopping();
    const n = this.restartTimes.length;
    const base = Math.min(this.supervision.maxBackoffMs, this.supervision.minBackoffMs * 2 ** (n - 1));
    const delay = base / 2 + this.internals.env.random.next() * (base / 2);
    this.internals.env.scheduler.setTimer(delay, () => {
      if (this.state !== 'restarting') return;
      this.start();
    });
  }

  stop(): Promise<void> {
    this.stopped ??= this.doStop();
    return this.stopped;
  }

  private async doStop(): Promise<void> {
    const wasBusy = this.busy;
    this.state = 'stopping';
    if (wasBusy) await new Promise<void>((resolve) => (this.idle = resolve));
    this.cancelTimers();
    await this.stopChildren();
    await this.callStopping();
    for (let letter = this.mailbox.shift(); letter; letter = this.mailbox.shift()) {
      this.internals.deadLetter(this.path, letter, new ActorStopped(this.path));
    }
    this.state = 'stopped';
    this.internals.unregister(this as ActorCell<unknown>);
  }

  private async stopChildren(): Promise<void> {
    await Promise.all([...this.children.values()].map((c) => c.stop()));
  }

  private async callStopping(): Promise<void> {
    try {
      await this.internals.env.scheduler.track(Promise.resolve(this.behavior?.stopping?.(this.ctx)));
    } catch (error) {
      this.log.warn({ err: error }, 'stopping hook failed');
    }
  }

  private cancelTimers(): void {
    for (const t of this.timers) t.cancel();
    this.timers.clear();
  }
}

/** The parts of the system that cells and refs call; kept off the public class. */
interface SystemInternals {
  env: Env;
  defaultMailbox: MailboxOptions;
  defaultSupervision: SupervisionOptions;
  restarts: number;
  spawn<C>(parent: ActorCell<unknown> | undefined, name: string, factory: () => Behavior<C>, options: SpawnOptions<C>): ActorRef<C>;
  unregister(cell: ActorCell<unknown>): void;
  reply(to: ReplyTo<unknown>, value: unknown): void;
  replyError(to: ReplyTo<unknown>, error: Error): void;
  deadLetter(actor: string, letter: Letter<unknown>, reason: Error): void;
  /** `deliver` sends the message and returns the kind its reply must have, when that is known. */
  ask<R>(address: ActorAddress, deliver: (replyTo: ReplyTo<R>) => string | null | undefined | void, timeoutMs: number, answered: Answered<R>): void;
}

class LocalRef<M> implements ActorRef<M> {
  readonly address: ActorAddress;
  constructor(private readonly cell: ActorCell<M>, private readonly internals: SystemInternals) {
    this.address = { node: internals.env.node, name: cell.path };
  }
  tell(msg: M): void {
    if (!this.cell.enqueue({ msg, replyTo: undefined })) throw this.cell.full();
  }
  ask<R>(build: (replyTo: ReplyTo<R>) => M, timeoutMs: number): Promise<R> {
    return promised((answered) => this.request(build, timeoutMs, answered));
  }
  request<R>(build: (replyTo: ReplyTo<R>) => M, timeoutMs: number, answered: Answered<R>): void {
    this.internals.ask<R>(
      this.address,
      (replyTo) => {
        if (!this.cell.enqueue({ msg: build(replyTo), replyTo })) this.internals.replyError(replyTo, this.cell.full());
      },
      timeoutMs,
      answered,
    );
  }
}

class RemoteRef<M> implements ActorRef<M> {
  constructor(readonly address: ActorAddress, private readonly system: ActorSystem, private readonly internals: SystemInternals) {}
  tell(msg: M): void {
    this.system.sendEnvelope(this.address.node, { t: 'msg', to: this.address.name, msg });
  }
  ask<R>(build: (replyTo: ReplyTo<R>) => M, timeoutMs: number): Promise<R> {
    return promised((answered) => this.request(build, timeoutMs, answered));
  }
  request<R>(build: (replyTo: ReplyTo<R>) => M, timeoutMs: number, answered: Answered<R>): void {
    this.internals.ask<R>(
      this.address,
      (replyTo) => {
        const msg = build(replyTo);
        this.system.sendEnvelope(this.address.node, { t: 'msg', to: this.address.name, msg, r: replyTo });
        return this.system.replyKindOf(msg);
      },
      timeoutMs,
      answered,
    );
  }
}

function promised<R>(start: (answered: Answered<R>) => void): Promise<R> {
  return new Promise<R>((resolve, reject) => start((error, answer) => (error === undefined ? resolve(answer as R) : reject(error))));
}

/**
 * One node's actors. Refs to actors on other nodes look the same as local
 * ones; the system encodes their messages with the codec, sends them over
 * the transport and matches replies to asks.
 */
export class ActorSystem {
  readonly node: NodeId;
  /**
   * This system's run: 48 random bits drawn from the Env when it starts,
   * carried in every reply address and echoed in every reply, so a reply
   * owed to a previous run of this node never settles an ask of this one.
   */
  readonly run: number;
  private readonly env: Env;
  private readonly codec: Codec;
  private readonly transport: Transport | undefined;
  private readonly clock: MessageClock | undefined;
  private readonly cells = new Map<string, ActorCell<unknown>>();
  private readonly topLevel = new Map<string, ActorCell<unknown>>();
  /** Asks by id: a table of slots, not a Map (see IdTable: a Map of short-lived asks promotes them all). */
  private readonly pending = new IdTable<PendingAsk>();
  private readonly remoteRefs = new Map<NodeId, Map<string, RemoteRef<unknown>>>();
  private readonly down = new Set<NodeId>();
  private nextAskId = 1;
  private nextAnonymous = 1;
  private deadLetters = 0;
  private rejectedFrames = 0;
  private staleReplies = 0;
  private unexpectedReplies = 0;
  private shuttingDown = false;
  private readonly internals: SystemInternals;
  private readonly deadlines: DeadlineQueues;

  constructor(options: ActorSystemOptions) {
    this.env = options.env;
    this.deadlines = new DeadlineQueues(options.env.scheduler, () => options.env.clock.monotonicMs(), (id, timeoutMs) => {
      const ask = this.pending.get(id);
      if (!ask) return;
      this.pending.delete(id);
      ask.settle(new AskTimeout(`${ask.node}/${ask.actor}`, timeoutMs), undefined);
    });
    this.node = options.env.node;
    this.run = runOf(options.env.random.bytes(6));
    this.codec = options.codec ?? msgpackCodec();
    this.transport = options.transport;
    this.clock = options.clock;
    const system = this;
    this.internals = {
      env: this.env,
      defaultMailbox: { ...DEFAULT_MAILBOX, ...options.defaultMailbox },
      defaultSupervision: { ...DEFAULT_SUPERVISION, ...options.defaultSupervision },
      restarts: 0,
      spawn: (parent, name, factory, opts) => system.spawnCell(parent, name, factory, opts),
      unregister(cell) {
        system.cells.delete(cell.path);
        if (cell.parent) cell.parent.children.delete(cell.path);
        else system.topLevel.delete(cell.path);
      },
      reply: (to, value) => system.deliverReply(to, { ok: true, value }),
      replyError: (to, error) => system.deliverReply(to, { ok: false, error }),
      deadLetter(actor, letter, reason) {
        system.deadLetters++;
        if (letter.replyTo) system.deliverReply(letter.replyTo, { ok: false, error: reason });
        else system.env.logger.debug({ actor }, 'dead letter');
      },
      ask: (address, deliver, timeoutMs, answered) => system.ask(address, deliver, timeoutMs, answered),
    };
    this.transport?.onFrame((from, frame) => {
      // Messages to this node never cross the transport (sendEnvelope keeps them local), so a frame claiming to be from here is forged.
      if (from === this.node) {
        this.rejectedFrames++;
        this.env.logger.warn({ peer: from, bytes: frame.byteLength }, 'dropped a frame that claims to come from this node');
        return;
      }
      this.receiveFrame(from, frame);
    });
    this.transport?.onLinkState((peer, state) => {
      if (peer !== this.node) this.linkChanged(peer, state);
    });
  }

  spawn<M>(name: string, factory: () => Behavior<M>, options: SpawnOptions<M> = {}): ActorRef<M> {
    return this.spawnCell<M>(undefined, name, factory, options);
  }

  /** A ref to the named actor on any node, this one included. */
  ref<M>(address: ActorAddress): ActorRef<M> {
    if (address.node === this.node) {
      const cell = this.cells.get(address.name);
      if (cell) return cell.ref as ActorRef<M>;
      return new RemoteRef<M>(address, this, this.internals);
    }
    // A coordinator asks for the refs of the same few replicas for every request: one each, not one per request.
    let byName = this.remoteRefs.get(address.node);
    if (byName === undefined) {
      // Bounded whatever node ids come and go over a long life (replaced and removed hosts).
      if (this.remoteRefs.size >= MAX_REMOTE_REF_NODES) this.remoteRefs.clear();
      this.remoteRefs.set(address.node, (byName = new Map()));
    }
    let ref = byName.get(address.name);
    if (ref === undefined) {
      if (byName.size >= MAX_REMOTE_REFS_PER_NODE) byName.clear();
      byName.set(address.name, (ref = new RemoteRef<unknown>({ node: address.node, name: address.name }, this, this.internals)));
    }
    return ref as ActorRef<M>;
  }

  async stop(ref: ActorRef<unknown>): Promise<void> {
    await this.cells.get(ref.address.name)?.stop();
  }

  /** Stops every actor (children before parents) and fails every pending ask. */
  async shutdown(): Promise<void> {
    this.shuttingDown = true;
    await Promise.all([...this.topLevel.values()].map((c) => c.stop()));
    for (const [id, ask] of this.pending.entries()) {
      this.pending.delete(id);
      ask.settle(new ActorStopped(ask.actor), undefined);
    }
    this.deadlines.cancelAll();
  }

  stats(): SystemStats {
    return {
      actors: this.cells.size,
      pendingAsks: this.pending.size,
      deadLetters: this.deadLetters,
      rejectedFrames: this.rejectedFrames,
      restarts: this.internals.restarts,
      staleReplies: this.staleReplies,
      unexpectedReplies: this.unexpectedReplies,
    };
  }

  /**
   * Whether `node` reads `kind`, a message kind added after the protocol
   * version (see `Transport.readsKind`): this node always does; a peer only
   * once its link said so.
   */
  readsKind(node: NodeId, kind: string): boolean {
    return node === this.node || this.transport?.readsKind?.(node, kind) === true;
  }

  /** @internal used by remote refs */
  sendEnvelope(to: NodeId, envelope: Envelope): void {
    if (to === this.node) {
      // A ref made before its actor was spawned: encoded as it would be for a peer, but delivered here, never over the transport.
      let frame: Uint8Array;
      try {
        frame = this.codec.encode(envelope, true);
      } catch (error) {
        if (envelope.t === 'msg' && envelope.r) this.deliverReply(envelope.r, { ok: false, error: error instanceof Error ? error : new Error(String(error)) });
        return;
      }
      this.env.scheduler.defer(() => this.receiveFrame(this.node, frame));
      return;
    }
    if (!this.transport) {
      if (envelope.t === 'msg' && envelope.r) this.deliverReply(envelope.r, { ok: false, error: new NodeUnreachable(to) });
      return;
    }
    // Every envelope is built for this one send, so the stamp goes on it rather than on a copy.
    if (this.clock) envelope.c = this.clock.stamp();
    this.transport.send(to, this.codec.encode(envelope, this.transport.readsPositionalFrames?.(to) === true));
  }

  private spawnCell<M>(parent: ActorCell<unknown> | undefined, name: string, factory: () => Behavior<M>, options: SpawnOptions<M>): ActorRef<M> {
    if (this.shuttingDown) throw new ActorStopped(name);
    const local = name === '' ? `$${this.nextAnonymous++}` : name;
    if (!NAME.test(local)) throw new TypeError(`invalid actor name ${JSON.stringify(name)}`);
    const path = parent ? `${parent.path}/${local}` : local;
    if (this.cells.has(path)) throw new TypeError(`an actor named ${path} already exists`);
    const cell = new ActorCell<M>(this, path, parent, factory, options, this.internals);
    this.cells.set(path, cell as ActorCell<unknown>);
    (parent ? parent.children : this.topLevel).set(path, cell as ActorCell<unknown>);
    cell.start();
    return cell.ref;
  }

  /** @internal the kind a reply to `msg` must have, as the codec knows it. */
  replyKindOf(msg: unknown): string | null | undefined {
    return this.codec.replyKindOf?.(msg);
  }

  private ask<R>(address: ActorAddress, deliver: (replyTo: ReplyTo<R>) => string | null | undefined | void, timeoutMs: number, answered: Answered<R>): void {
    if (address.node !== this.node && this.down.has(address.node)) {
      answered(new NodeUnreachable(address.node), undefined);
      return;
    }
    const id = this.nextAskId++;
    const ask: PendingAsk = { node: address.node, actor: address.name, expect: undefined, settle: answered as Answered<unknown> };
    this.pending.set(id, ask);
    this.deadlines.add(id, timeoutMs);
    let expect: string | null | undefined | void;
    try {
      expect = deliver({ node: this.node, id, run: this.run });
    } catch (error) {
      // As the promise of `ask` did: a message that cannot be built or sent fails its ask, not the caller.
      if (this.pending.delete(id)) answered(error instanceof Error ? error : new Error(String(error)), undefined);
      return;
    }
    if (expect !== undefined) ask.expect = expect;
  }

  private deliverReply(to: ReplyTo<unknown>, outcome: { ok: true; value: unknown } | { ok: false; error: Error }): void {
    if (to.node === this.node) {
      this.settleLocal(to, outcome);
      return;
    }
    const envelope: Envelope = outcome.ok ? { t: 'ok', id: to.id, run: to.run, v: outcome.value } : { t: 'err', id: to.id, run: to.run, e: toWireError(outcome.error) };
    this.sendEnvelope(to.node, envelope);
  }

  /** A reply made in this process: by a local actor, or by the runtime failing an ask (timeout, unreachable, dead letter). */
  private settleLocal(to: ReplyTo<unknown>, outcome: { ok: true; value: unknown } | { ok: false; error: Error }): void {
    const ask = to.run === this.run ? this.pending.get(to.id) : undefined;
    if (!ask) return;
    this.pending.delete(to.id);
    if (outcome.ok) ask.settle(undefined, outcome.value);
    else ask.settle(outcome.error, undefined);
  }

  /**
   * A reply that came over the transport. It settles an ask only if it is
   * owed to this run and comes from the node the ask was sent to, as the
   * transport authenticated it; a success must also be of the kind the ask
   * takes.
   */
  private settleRemote(from: NodeId, id: number, run: number, outcome: { ok: true; value: unknown } | { ok: false; error: Error }): void {
    const ask = run === this.run ? this.pending.get(id) : undefined;
    if (!ask || ask.node !== from) {
      this.staleReplies++;
      this.env.logger.debug({ peer: from, id, ownRun: run === this.run }, 'ignored a reply that matches no ask of this run');
      return;
    }
    this.pending.delete(id);
    if (!outcome.ok) {
      ask.settle(outcome.error, undefined);
      return;
    }
    if (ask.expect !== undefined) {
      const received = this.codec.kindOf?.(outcome.value);
      if (ask.expect === null || received !== ask.expect) {
        this.unexpectedReplies++;
        this.env.logger.warn({ peer: from, actor: ask.actor, expected: ask.expect, received: received ?? null }, 'a peer answered an ask with a reply of the wrong kind');
        ask.settle(new UnexpectedReply(from, ask.actor, ask.expect, received), undefined);
        return;
      }
    }
    ask.settle(undefined, outcome.value);
  }

  private receiveFrame(from: NodeId, frame: Uint8Array): void {
    let envelope: Envelope;
    try {
      envelope = this.codec.decode(frame);
    } catch (error) {
      this.rejectedFrames++;
      this.env.logger.warn({ peer: from, bytes: frame.byteLength, err: error }, 'dropped a malformed frame');
      this.transport?.penalize?.(from);
      return;
    }
    // Before delivery: whatever the message makes this node do is then stamped above what its sender had seen.
    if (envelope.c !== undefined && from !== this.node) this.clock?.observe(envelope.c);
    switch (envelope.t) {
      case 'ok':
        this.settleRemote(from, envelope.id, envelope.run, { ok: true, value: envelope.v });
        return;
      case 'err': {
        const e = envelope.e;
        this.settleRemote(from, envelope.id, envelope.run, { ok: false, error: fromWireError(e) });
        return;
      }
      case 'msg': {
        // The reply goes to the peer the frame came from, whatever the frame claims.
        const replyTo = envelope.r && ({ node: from, id: envelope.r.id, run: envelope.r.run } as ReplyTo<unknown>);
        if (replyTo && typeof envelope.msg === 'object' && envelope.msg !== null) (envelope.msg as { replyTo?: unknown }).replyTo = replyTo;
        const cell = this.cells.get(envelope.to);
        if (!cell) {
          this.deadLetters++;
          if (replyTo) this.deliverReply(replyTo, { ok: false, error: new ActorNotFound(envelope.to) });
          return;
        }
        if (!cell.enqueue({ msg: envelope.msg, replyTo, from: from === this.node ? undefined : from })) {
          const full = cell.full();
          if (replyTo) this.deliverReply(replyTo, { ok: false, error: full });
          else this.env.logger.warn({ actor: cell.path, peer: from }, 'mailbox full; dropped a message');
        }
      }
    }
  }

  private linkChanged(peer: NodeId, state: LinkState): void {
    if (state === 'up') {
      this.down.delete(peer);
      return;
    }
    this.down.add(peer);
    for (const [id, ask] of this.pending.entries()) {
      if (ask.node !== peer) continue;
      this.pending.delete(id);
      ask.settle(new NodeUnreachable(peer), undefined);
    }
  }
}

/** 48 random bits as a safe integer: a reply owed to another run carries this run's number with odds of 2^-48. */
function runOf(bytes: Uint8Array): number {
  let run = 0;
  for (const b of bytes.subarray(0, 6)) run = run * 256 + b;
  return run;
}

