import type { NodeId, Token } from '@chorus/core';
import type { KeyspaceDef, ReplicationSpec, RingView, TokenRange } from '@chorus/ring';

/** One range of one keyspace to copy onto `target`, from the first of `sources` that works. */
export interface RangeTask {
  readonly keyspace: string;
  readonly range: TokenRange;
  /** In order of preference: the replicas losing the range first (consistent range movement), then the other current replicas. */
  readonly sources: readonly NodeId[];
  readonly target: NodeId;
}

/** A range whose replicas differ before and after a topology change. */
export interface RangeChange {
  readonly range: TokenRange;
  readonly before: readonly NodeId[];
  readonly after: readonly NodeId[];
}

/**
 * The ranges whose replicas change between two rings, finest first: every
 * token of either ring bounds a range, so each piece has one replica list
 * before and one after; adjacent pieces with the same lists are merged back.
 */
export function rangeChanges(before: RingView, after: RingView, replication: ReplicationSpec): RangeChange[] {
  const tokens = [...new Set<Token>([...before.tokens, ...after.tokens])].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (tokens.length === 0) return [];
  const pieces: RangeChange[] = tokens.map((end, i) => ({
    range: { start: tokens[(i - 1 + tokens.length) % tokens.length]!, end },
    before: before.naturalReplicas(end, replication),
    after: after.naturalReplicas(end, replication),
  }));
  const same = (a: readonly NodeId[], b: readonly NodeId[]) => a.length === b.length && a.every((n, i) => n === b[i]);
  const merged: RangeChange[] = [];
  for (const p of pieces) {
    const last = merged[merged.length - 1];
    if (last !== undefined && same(last.before, p.before) && same(last.after, p.after)) merged[merged.length - 1] = { ...last, range: { start: last.range.start, end: p.range.end } };
    else merged.push(p);
  }
  // The first and last pieces meet across the wrap; merge them too unless they are the whole ring already.
  if (merged.length > 1) {
    const first = merged[0]!;
    const last = merged[merged.length - 1]!;
    if (same(first.before, last.before) && same(first.after, last.after)) {
      merged.pop();
      merged[0] = { ...first, range: { start: last.range.start, end: first.range.end } };
    }
  }
  return merged.filter((c) => !(c.after.length === c.before.length && c.after.every((n) => c.before.includes(n))));
}

/**
 * What `node` must copy to become a replica of every range it gains between
 * `before` and `after` (bootstrap: `after` is `before.afterPendingChanges()`).
 * Each range's sources are the replicas that lose it first (Cassandra's
 * consistent range movement: a write only the losing replica acknowledged
 * is then not missed), then the replicas that keep it.
 */
export function rangesToFetch(before: RingView, after: RingView, keyspaces: readonly KeyspaceDef[], node: NodeId): RangeTask[] {
  const out: RangeTask[] = [];
  for (const ks of keyspaces) {
    for (const c of rangeChanges(before, after, ks.replication)) {
      if (!c.after.includes(node) || c.before.includes(node)) continue;
      const losing = c.before.filter((n) => !c.after.includes(n));
      const keeping = c.before.filter((n) => c.after.includes(n));
      out.push({ keyspace: ks.name, range: c.range, sources: [...losing, ...keeping], target: node });
    }
  }
  return out;
}

/**
 * What must be copied so that every node gaining a range of `node`'s holds
 * it: decommission (`node` is the source, the preferred one) and removenode
 * (`node` is dead; the surviving replicas are the sources). One task per
 * gaining node and range; the other current replicas follow `node` as
 * sources.
 */
export function rangesToHandOver(before: RingView, after: RingView, keyspaces: readonly KeyspaceDef[], node: NodeId): RangeTask[] {
  const out: RangeTask[] = [];
  for (const ks of keyspaces) {
    for (const c of rangeChanges(before, after, ks.replication)) {
      if (!c.before.includes(node)) continue;
      const others = c.before.filter((n) => n !== node);
      for (const target of c.after.filter((n) => !c.before.includes(n))) out.push({ keyspace: ks.name, range: c.range, sources: [node, ...others], target });
    }
  }
  return out;
}
