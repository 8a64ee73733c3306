import type { LinkState, NodeId, Transport } from '@chorus/core';
import type { SeededRandom } from '@chorus/core';
import type { EventQueue } from './scheduler.js';

/** How one direction of a link misbehaves. */
export interface LinkFaults {
  /** Base one-way delay. */
  latencyMs: number;
  /** Extra delay, uniform in [0, jitterMs). */
  jitterMs: number;
  /** Probability that a frame is lost. */
  loss: number;
  /** Probability that a frame is delivered twice. */
  duplicate: number;
  /** Probability that a frame may overtake the ones sent before it. */
  reorder: number;
}

export const PERFECT_LINK: LinkFaults = { latencyMs: 1, jitterMs: 0, loss: 0, duplicate: 0, reorder: 0 };

export interface NetworkStats {
  sent: number;
  delivered: number;
  dropped: number;
  duplicated: number;
}

interface Endpoint {
  epoch: number;
  onFrame: Array<(from: NodeId, frame: Uint8Array) => void>;
  onLink: Array<(peer: NodeId, state: LinkState) => void>;
  /** Link state as this endpoint last heard it, per peer; absent means up. */
  downPeers: Set<NodeId>;
}

/**
 * An in-memory network between simulated nodes. It carries encoded bytes, so
 * the codec runs exactly as over a socket. Faults are per directed link, and
 * every random choice comes from the simulation's seed.
 */
export class MemoryNetwork {
  private readonly endpoints = new Map<NodeId, Endpoint>();
  private readonly linkFaults = new Map<string, LinkFaults>();
  private readonly lastDelivery = new Map<string, number>();
  private readonly cut = new Set<string>();
  private defaults: LinkFaults;
  private readonly counters: NetworkStats = { sent: 0, delivered: 0, dropped: 0, duplicated: 0 };

  constructor(private readonly queue: EventQueue, private readonly random: SeededRandom, defaults: Partial<LinkFaults> = {}) {
    this.defaults = { ...PERFECT_LINK, ...defaults };
  }

  stats(): NetworkStats {
    return { ...this.counters };
  }

  setDefaults(faults: Partial<LinkFaults>): void {
    this.defaults = { ...this.defaults, ...faults };
  }

  /** Faults for frames from `from` to `to` only. */
  setLink(from: NodeId, to: NodeId, faults: Partial<LinkFaults>): void {
    this.linkFaults.set(key(from, to), { ...this.faults(from, to), ...faults });
  }

  /** Cuts every link between the two groups, in both directions. Both sides see the other go down. */
  partition(sideA: readonly NodeId[], sideB: readonly NodeId[]): void {
    for (const a of sideA) for (const b of sideB) {
      if (a === b) continue;
      this.cut.add(key(a, b));
      this.cut.add(key(b, a));
      this.report(a, b, 'down');
      this.report(b, a, 'down');
    }
  }

  /** Restores every cut link. */
  heal(): void {
    const pairs = [...this.cut].map((k) => k.split('\u0000') as [NodeId, NodeId]);
    this.cut.clear();
    for (const [a, b] of pairs) if (this.endpoints.has(b)) this.report(a, b, 'up');
  }

  isCut(from: NodeId, to: NodeId): boolean {
    return this.cut.has(key(from, to));
  }

  /** Attaches a node's transport for its current epoch; peers that saw it down see it up again. */
  attach(node: NodeId, epoch: number): Transport {
    const endpoint: Endpoint = { epoch, onFrame: [], onLink: [], downPeers: new Set() };
    this.endpoints.set(node, endpoint);
    for (const peer of this.endpoints.keys()) if (peer !== node && !this.isCut(peer, node)) this.report(peer, node, 'up');
    const network = this;
    return {
      localNode: node,
      send: (to, frame) => network.send(node, epoch, to, frame),
      onFrame: (handler) => void endpoint.onFrame.push(handler),
      onLinkState: (handler) => void endpoint.onLink.push(handler),
      // Every simulated node runs this build.
      readsPositionalFrames: () => true,
      readsKind: () => true,
      async close() {
        if (network.endpoints.get(node) === endpoint) network.detach(node);
      },
    };
  }

  /** The node vanished (crash or close): frames in flight to it are lost and every peer sees it down. */
  detach(node: NodeId): void {
    this.endpoints.delete(node);
    for (const peer of this.endpoints.keys()) this.report(peer, node, 'down');
  }

  private faults(from: NodeId, to: NodeId): LinkFaults {
    return this.linkFaults.get(key(from, to)) ?? this.defaults;
  }

  private send(from: NodeId, epoch: number, to: NodeId, frame: Uint8Array): void {
    const sender = this.endpoints.get(from);
    if (!sender || sender.epoch !== epoch) return;
    this.counters.sent++;
    if (!this.endpoints.has(to) || this.isCut(from, to)) {
      this.counters.dropped++;
      this.report(from, to, 'down');
      return;
    }
    const faults = this.faults(from, to);
    if (faults.loss > 0 && this.random.next() < faults.loss) {
      this.counters.dropped++;
      return;
    }
    const copies = faults.duplicate > 0 && this.random.next() < faults.duplicate ? 2 : 1;
    if (copies === 2) this.counters.duplicated++;
    const bytes = frame.slice();
    const link = key(from, to);
    for (let i = 0; i < copies; i++) {
      let at = this.queue.now + faults.latencyMs + (faults.jitterMs > 0 ? this.random.next() * faults.jitterMs : 0);
      const mayOvertake = faults.reorder > 0 && this.random.next() < faults.reorder;
      // A link is FIFO like a TCP stream unless this frame was chosen to overtake.
      if (!mayOvertake) at = Math.max(at, this.lastDelivery.get(link) ?? 0);
      this.lastDelivery.set(link, Math.max(at, this.lastDelivery.get(link) ?? 0));
      const target = this.endpoints.get(to)!;
      const targetEpoch = target.epoch;
      const deliver = (): void => {
        const endpoint = this.endpoints.get(to);
        // Frames die with the connection: a crash or a cut in the meantime loses them.
        if (!endpoint || endpoint.epoch !== targetEpoch || this.isCut(from, to)) {
          this.counters.dropped++;
          return;
        }
        if (this.queue.isPaused(to)) {
          this.queue.hold(to, `deliver ${from}>${to} (held)`, deliver);
          return;
        }
        this.counters.delivered++;
        for (const handler of endpoint.onFrame) handler(from, bytes);
      };
      this.queue.at(at, undefined, `deliver ${from}>${to} ${bytes.byteLength}B ${checksum(bytes)}`, deliver);
    }
  }

  /** Tells `observer` that `peer` changed state, once per change, as a queued event. */
  private report(observer: NodeId, peer: NodeId, state: LinkState): void {
    const endpoint = this.endpoints.get(observer);
    if (!endpoint) return;
    const isDown = endpoint.downPeers.has(peer);
    if ((state === 'down') === isDown) return;
    if (state === 'down') endpoint.downPeers.add(peer);
    else endpoint.downPeers.delete(peer);
    const epoch = endpoint.epoch;
    this.queue.at(this.queue.now, { node: observer, epoch }, `link ${peer} ${state}`, () => {
      for (const handler of endpoint.onLink) handler(peer, state);
    });
  }
}

function key(from: NodeId, to: NodeId): string {
  return `${from}\u0000${to}`;
}

/** A cheap content fingerprint for the trace (FNV-1a over the bytes). */
function checksum(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i]!;
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16);
}
