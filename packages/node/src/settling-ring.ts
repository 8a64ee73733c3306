import type { Env, NodeId } from '@chorus/core';
import type { RingView } from '@chorus/ring';

/** Gossip intervals a member that finished joining stays pending in the ring requests are planned on (Cassandra's RING_DELAY is 30 s). */
export const JOIN_SETTLE_ROUNDS = 30;

/**
 * The ring requests are planned on. Coordinators hear that a joining node
 * became NORMAL at different moments, and one that has not heard yet reads a
 * quorum of the old replicas, one of which the new ring drops: a write
 * acknowledged by a quorum of the new replicas alone could be missed. So a
 * member this node saw turn NORMAL from joining stays pending here for
 * `settleMs` more: writes still go to the old replicas and to it, counting it
 * as one more (a quorum of the old replicas keeps every write), and reads
 * still go to the old replicas, which the late coordinators' writes reach.
 * Streaming, repair and the views keep the ring as it is.
 */
export class SettlingRing {
  private readonly joinedAt = new Map<NodeId, number>();
  private previous: RingView | undefined;
  private made: { base: RingView; settling: string; ring: RingView } | undefined;

  constructor(
    private readonly env: Env,
    private readonly settleMs: number,
  ) {}

  /** Notes the members that went from joining to normal since the last ring seen. */
  observe(ring: RingView): void {
    const before = this.previous;
    if (before === ring) return;
    this.previous = ring;
    if (before === undefined) return;
    const now = this.env.clock.monotonicMs();
    for (const m of ring.members) if (m.status === 'normal' && before.member(m.node)?.status === 'joining') this.joinedAt.set(m.node, now);
  }

  /** `ring`, with the members still settling shown as joining. */
  of(ring: RingView): RingView {
    this.observe(ring);
    if (this.joinedAt.size === 0) return ring;
    const now = this.env.clock.monotonicMs();
    const settling: NodeId[] = [];
    for (const [node, at] of this.joinedAt) {
      if (now - at >= this.settleMs || ring.member(node)?.status !== 'normal') this.joinedAt.delete(node);
      else settling.push(node);
    }
    if (settling.length === 0) return ring;
    const key = settling.join(',');
    if (this.made?.base === ring && this.made.settling === key) return this.made.ring;
    let out = ring;
    for (const node of settling) out = out.with({ ...ring.member(node)!, status: 'joining' });
    this.made = { base: ring, settling: key, ring: out };
    return out;
  }
}
