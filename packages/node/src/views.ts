import type { HostId, NodeId } from '@chorus/core';
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
  /** The offset is beyond clock_skew_warn (default 20 ms): worth fixing before writes through these two nodes are ordered by their clocks instead of by time. */
  clockSkewed?: boolean;
  /** The offset is beyond max_clock_skew: its timestamps beyond the bound are refused. */
  clockSkewRefused?: boolean;
  /** While the node joins or leaves: percent of its range movement streamed, as it last announced. */
  streaming?: number;
  /** The asked node refused hints for this node (its hint window passed, or its hints reached their cap): it missed writes only a repair brings back. */
  needsRepair: boolean;
}

/** One target of `GET /v1/hints`: the hints the asked node holds for one host id. */
export interface HintsEntry {
  hostId: string;
  /** The node's name as gossip announces it; its address when it is no longer known. */
  name: string;
  address: string;
  hints: number;
  bytes: number;
  /** When the oldest undelivered hint was written (µs); null without hints. */
  oldestMicros: number | null;
  needsRepair: boolean;
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

/** The other nodes that hold tokens in the ring as membership describes it, sorted. */
export function ringPeersOf(view: MembershipSnapshot): NodeId[] {
  return view
    .endpoints()
    .filter((e) => !e.isSelf && e.tokens.length > 0 && RING_STATUS[e.status ?? ''] !== undefined)
    .map((e) => e.node)
    .sort();
}

export function statusView(
  view: MembershipSnapshot,
  replication: ReplicationSpec | undefined,
  skew: Readonly<Record<string, { skewMs: number; flagged: boolean; warning: boolean }>> = {},
  needsRepair: (hostId: HostId) => boolean = () => false,
): { nodes: StatusEntry[] } {
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
      ...((e.status === 'BOOTSTRAPPING' || e.status === 'LEAVING') && e.streaming !== undefined ? { streaming: e.streaming } : {}),
      ...(skew[e.node] ? { clockSkewMs: Math.round(skew[e.node]!.skewMs), clockSkewed: skew[e.node]!.warning, clockSkewRefused: skew[e.node]!.flagged } : {}),
      needsRepair: e.hostId !== undefined && needsRepair(e.hostId),
    }));
  return { nodes };
}

/** The hint store's targets, named as membership knows them now. */
export function hintsView(view: MembershipSnapshot, targets: ReadonlyArray<{ hostId: HostId; node: NodeId; hints: number; bytes: number; oldestMicros?: number; needsRepair: boolean }>): { targets: HintsEntry[] } {
  const byHostId = new Map(view.endpoints().filter((e) => e.hostId !== undefined).map((e) => [e.hostId!, e]));
  return {
    targets: targets.map((t) => {
      const e = byHostId.get(t.hostId);
      return { hostId: t.hostId, name: e?.name ?? e?.node ?? t.node, address: e?.node ?? t.node, hints: t.hints, bytes: t.bytes, oldestMicros: t.oldestMicros ?? null, needsRepair: t.needsRepair };
    }),
  };
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

/** The live peers that publish a schema version other than `mine` (peers whose version gossip has not told yet are left out). */
export function peersWithOtherSchema(view: MembershipSnapshot, mine: string | undefined): Array<{ node: NodeId; schema: string }> {
  const out: Array<{ node: NodeId; schema: string }> = [];
  for (const e of view.endpoints()) if (!e.isSelf && e.liveness === 'UP' && e.schema !== undefined && e.schema !== mine) out.push({ node: e.node, schema: e.schema });
  return out;
}
