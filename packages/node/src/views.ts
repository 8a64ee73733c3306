import type { NodeId } from '@chorus/core';
import type { EndpointInfo, MembershipSnapshot } from '@chorus/gossip';
import { type ReplicationSpec, type RingMember, RingView } from '@chorus/ring';

/** One line of `chorus status` / `GET /v1/status`. */
export interface StatusEntry {
  name: string;
  address: string;
  hostId: string;
  state: string;
  dc: string;
  rack: string;
  tokens: number;
  /** Share of the data this node holds a replica of, for keyspace `default` (token ownership while it does not exist). */
  owns: number | null;
  load: number;
  generation: number;
  status: string;
  /** Estimated offset of the node's clock from the asked node's, in ms; absent until measured. */
  clockSkewMs?: number;
  /** The offset is beyond max_clock_skew: its timestamps are refused. */
  clockSkewed?: boolean;
}

export interface RingEntry {
  token: string;
  name: string;
  address: string;
  dc: string;
  rack: string;
  state: string;
}

const RING_STATUS: Record<string, RingMember['status'] | undefined> = { NORMAL: 'normal', shutdown: 'normal', LEAVING: 'leaving', BOOTSTRAPPING: 'joining' };
const STATE_LETTER: Record<string, string> = { NORMAL: 'N', shutdown: 'N', BOOTSTRAPPING: 'J', LEAVING: 'L', LEFT: 'L' };

/** The two-letter state of nodetool status: Up/Down, then Normal/Joining/Leaving. */
export function stateOf(e: EndpointInfo): string {
  return `${e.liveness === 'UP' ? 'U' : 'D'}${STATE_LETTER[e.status ?? ''] ?? 'J'}`;
}

/** The ring as membership describes it: every endpoint with tokens and a ring status. */
export function ringOf(view: MembershipSnapshot): RingView {
  const members: RingMember[] = [];
  for (const e of view.endpoints()) {
    const status = RING_STATUS[e.status ?? ''];
    if (!status || e.tokens.length === 0) continue;
    members.push({ node: e.node, dc: e.dc ?? 'dc1', rack: e.rack ?? 'rack1', tokens: [...e.tokens], status });
  }
  try {
    return RingView.of(members);
  } catch {
    // Two endpoints claiming a token (a replaced node not yet evicted): keep the newer generation's claim.
    const byGeneration = [...members].sort((a, b) => (view.endpoint(b.node)?.generation ?? 0) - (view.endpoint(a.node)?.generation ?? 0));
    const seen = new Set<bigint>();
    return RingView.of(byGeneration.filter((m) => m.tokens.every((t) => !seen.has(t)) && (m.tokens.forEach((t) => seen.add(t)), true)));
  }
}

export function statusView(view: MembershipSnapshot, replication: ReplicationSpec | undefined, skew: Readonly<Record<string, { skewMs: number; flagged: boolean }>> = {}): { nodes: StatusEntry[] } {
  const ring = ringOf(view);
  const ownership = ring.members.length > 0 ? ring.ownership(replication ?? { class: 'SimpleStrategy', rf: 1 }) : new Map<NodeId, number>();
  const nodes = view
    .endpoints()
    .filter((e) => e.status !== 'LEFT' && e.status !== 'REMOVED')
    .map((e) => ({
      name: e.name ?? e.node,
      address: e.node,
      hostId: e.hostId ?? '',
      state: stateOf(e),
      dc: e.dc ?? '',
      rack: e.rack ?? '',
      tokens: e.tokens.length,
      owns: ownership.get(e.node) ?? null,
      load: e.load ?? 0,
      generation: e.generation,
      status: e.status ?? 'unknown',
      ...(skew[e.node] ? { clockSkewMs: Math.round(skew[e.node]!.skewMs), clockSkewed: skew[e.node]!.flagged } : {}),
    }));
  return { nodes };
}

export function ringEntries(view: MembershipSnapshot): { tokens: RingEntry[] } {
  const entries: RingEntry[] = [];
  for (const e of view.endpoints()) {
    if (e.status === 'LEFT' || e.status === 'REMOVED') continue;
    for (const t of e.tokens) entries.push({ token: t.toString(), name: e.name ?? e.node, address: e.node, dc: e.dc ?? '', rack: e.rack ?? '', state: stateOf(e) });
  }
  entries.sort((a, b) => (BigInt(a.token) < BigInt(b.token) ? -1 : 1));
  return { tokens: entries };
}
