import { InvalidRequest, MAX_TOKEN, MIN_TOKEN, type NodeId, type Token, token } from '@chorus/core';
import { type RingView, type ReplicationSpec, type TokenRange, rangeContains, rangeWidth } from '@chorus/ring';

const RING = 1n << 64n;

/** A range as inclusive bounds [lo, hi] of tokens that do not wrap. */
type Segment = readonly [bigint, bigint];

function segmentsOf(r: TokenRange): Segment[] {
  if (r.start < r.end) return [[r.start + 1n, r.end]];
  const out: Segment[] = [];
  if (r.start < MAX_TOKEN) out.push([r.start + 1n, MAX_TOKEN]);
  out.push([MIN_TOKEN, r.end]);
  return out;
}

function rangeOf([lo, hi]: Segment): TokenRange {
  // (MAX, hi] wraps to [MIN, hi]: how a segment that starts at MIN_TOKEN is written as (start, end].
  return { start: (lo === MIN_TOKEN ? MAX_TOKEN : lo - 1n) as Token, end: hi as Token };
}

/** The parts of `a` that also lie in `b`. */
export function intersect(a: TokenRange, b: TokenRange): TokenRange[] {
  const out: TokenRange[] = [];
  for (const [alo, ahi] of segmentsOf(a)) {
    for (const [blo, bhi] of segmentsOf(b)) {
      const lo = alo > blo ? alo : blo;
      const hi = ahi < bhi ? ahi : bhi;
      if (lo <= hi) out.push(rangeOf([lo, hi]));
    }
  }
  return out;
}

/** Whether every token of `inner` lies in `outer`. */
export function covers(outer: TokenRange, inner: TokenRange): boolean {
  if (!rangeContains(outer, inner.end)) return false;
  const offsetOfEnd = (((inner.end - outer.start - 1n) % RING) + RING) % RING;
  return offsetOfEnd + 1n >= rangeWidth(inner);
}

/** The token range of a repair request, checked at the edge. */
export function requestedRange(startToken: string | undefined, endToken: string | undefined): TokenRange | undefined {
  if (startToken === undefined && endToken === undefined) return undefined;
  if (startToken === undefined || endToken === undefined) throw new InvalidRequest('a token range needs both a start token and an end token', { field: startToken === undefined ? 'startToken' : 'endToken' });
  const parse = (text: string, field: string): Token => {
    try {
      return token(text);
    } catch {
      throw new InvalidRequest(`${field} must be a signed 64-bit token, got ${JSON.stringify(text).slice(0, 40)}`, { field });
    }
  };
  return { start: parse(startToken, 'startToken'), end: parse(endToken, 'endToken') };
}

/**
 * The ranges of one keyspace a repair on `self` covers: every range `self`
 * holds a replica of, or with `primaryOnly` the ranges ending at its own
 * tokens (so `--pr` on every node repairs each range once); cut to `within`
 * when given.
 */
export function rangesToRepair(ring: RingView, self: NodeId, replication: ReplicationSpec, primaryOnly: boolean, within: TokenRange | undefined): TokenRange[] {
  const mine = primaryOnly ? ring.primaryRanges(self) : ring.rangesFor(self, replication);
  return within === undefined ? mine : mine.flatMap((r) => intersect(r, within));
}
