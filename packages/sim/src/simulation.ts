import { type Env, type Logger, type NodeId, type Transport, nodeId, silentLogger } from '@chorus/core';
import { type LinkFaults, MemoryNetwork } from './network.js';
import { SeededRandom } from '@chorus/core';
import { EventQueue, type RunOptions } from './scheduler.js';

export interface SimulationOptions {
  seed: number;
  /** Default faults of every link. */
  network?: Partial<LinkFaults>;
  /** Wall-clock time at virtual time zero, in microseconds since the epoch. */
  startMicros?: number;
  logger?: Logger;
  /** Receives every line of the event trace as it happens. */
  trace?: (line: string) => void;
}

/** What a simulated node's boot function gets each time the node (re)starts. */
export interface SimNodeContext {
  readonly env: Env;
  readonly transport: Transport;
  /** Survives crashes: where a node keeps its in-memory disks (memory-level instances). */
  readonly disk: Map<string, unknown>;
  /** How many times this node has started before. */
  readonly restarts: number;
}

export type Boot = (node: SimNodeContext) => void | Promise<void>;

interface SimNode {
  id: NodeId;
  boot: Boot;
  disk: Map<string, unknown>;
  up: boolean;
  starts: number;
  /** Offset of this node's wall clock from true virtual time, for clock-skew scenarios. */
  skewMicros: number;
  transport: Transport | undefined;
}

/**
 * A whole cluster in one process: one event queue, one seeded random source,
 * one in-memory network. The same seed and scenario give the same trace hash.
 */
export class Simulation {
  readonly queue = new EventQueue();
  readonly random: SeededRandom;
  readonly network: MemoryNetwork;
  private readonly nodes = new Map<NodeId, SimNode>();
  private readonly startMicros: number;
  private readonly logger: Logger;

  constructor(readonly options: SimulationOptions) {
    this.random = new SeededRandom(options.seed, 'simulation');
    this.network = new MemoryNetwork(this.queue, this.random.fork('network'), options.network);
    this.startMicros = options.startMicros ?? 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
    this.logger = options.logger ?? silentLogger;
    this.queue.onTrace = options.trace;
  }

  get now(): number {
    return this.queue.now;
  }

  nodeIds(): NodeId[] {
    return [...this.nodes.keys()];
  }

  isUp(id: NodeId | string): boolean {
    return this.nodes.get(id as NodeId)?.up ?? false;
  }

  /** Adds a node and boots it at the current virtual time. */
  async addNode(id: string, boot: Boot): Promise<void> {
    const nid = nodeId(id);
    if (this.nodes.has(nid)) throw new Error(`node ${id} already exists`);
    this.nodes.set(nid, { id: nid, boot, disk: new Map(), up: false, starts: 0, skewMicros: 0, transport: undefined });
    await this.start(nid);
  }

  /** Every actor, timer and in-flight message of the node vanishes at once; its disk stays. */
  crash(id: string): void {
    const node = this.node(id);
    if (!node.up) return;
    node.up = false;
    this.queue.bumpEpoch(node.id);
    this.network.detach(node.id);
    this.queue.note(`crash ${id}`);
  }

  /** Boots a crashed node again from its disk. */
  async restart(id: string): Promise<void> {
    const node = this.node(id);
    if (node.up) throw new Error(`node ${id} is running`);
    this.queue.note(`restart ${id}`);
    await this.start(node.id);
  }

  /** The node stops running but stays connected (a long GC pause, SIGSTOP); its clock keeps moving. A crash ends the pause. */
  pause(id: string): void {
    const node = this.node(id);
    if (!node.up) return;
    this.queue.pause(node.id);
    this.queue.note(`pause ${id}`);
  }

  resume(id: string): void {
    const node = this.node(id);
    if (!this.queue.isPaused(node.id)) return;
    this.queue.note(`resume ${id}`);
    this.queue.resume(node.id);
  }

  isPaused(id: string): boolean {
    return this.queue.isPaused(id as NodeId);
  }

  setClockSkew(id: string, skewMicros: number): void {
    this.node(id).skewMicros = skewMicros;
  }

  run(options: RunOptions): Promise<void> {
    return this.queue.run(options);
  }

  /** Runs for `ms` of virtual time. */
  runFor(ms: number): Promise<void> {
    return this.queue.run({ untilMs: this.queue.now + ms });
  }

  /** Schedules scenario code (partitions, crashes, workload steps) at a virtual time. */
  at(timeMs: number, label: string, action: () => void | Promise<void>): void {
    this.queue.at(timeMs, undefined, `scenario ${label}`, () => void action());
  }

  traceHash(): string {
    return this.queue.traceHash();
  }

  private node(id: string): SimNode {
    const node = this.nodes.get(id as NodeId);
    if (!node) throw new Error(`unknown node ${id}`);
    return node;
  }

  private async start(id: NodeId): Promise<void> {
    const node = this.node(id);
    const epoch = this.queue.bumpEpoch(id);
    const owner = { node: id, epoch };
    const queue = this.queue;
    const startMicros = this.startMicros;
    const env: Env = {
      node: id,
      clock: {
        nowMicros: () => Math.floor(startMicros + queue.now * 1000 + node.skewMicros),
        monotonicMs: () => queue.now,
      },
      scheduler: queue.schedulerFor(owner),
      random: this.random.fork(`${id}#${epoch}`),
      logger: this.logger.child({ node: id }),
    };
    node.transport = this.network.attach(id, epoch);
    node.up = true;
    const restarts = node.starts++;
    await node.boot({ env, transport: node.transport, disk: node.disk, restarts });
  }
}
