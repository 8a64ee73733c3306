import { MAX_TOKEN, MIN_TOKEN, nodeId, token, type Token } from '@chorus/core';
import fc from 'fast-check';
import { RingView, type MemberStatus, type RingMember } from '../src/index.js';

export const tokenArb: fc.Arbitrary<Token> = fc.bigInt({ min: MIN_TOKEN, max: MAX_TOKEN }).map((t) => token(t));

interface MemberDraft {
  dc: number;
  rack: number;
  tokens: Token[];
  status: MemberStatus;
}

/** Members whose tokens are distinct across the ring, as a valid snapshot requires. */
export function ringArb(options: { maxNodes?: number; dcs?: number; racks?: number; statuses?: MemberStatus[] } = {}): fc.Arbitrary<RingView> {
  const { maxNodes = 10, dcs = 2, racks = 3, statuses = ['normal'] } = options;
  const draft: fc.Arbitrary<MemberDraft> = fc.record({
    dc: fc.integer({ min: 1, max: dcs }),
    rack: fc.integer({ min: 1, max: racks }),
    tokens: fc.array(tokenArb, { minLength: 1, maxLength: 6 }),
    status: fc.constantFrom(...statuses),
  });
  return fc.array(draft, { minLength: 1, maxLength: maxNodes }).map((drafts) => {
    const used = new Set<Token>();
    const members: RingMember[] = [];
    drafts.forEach((d, i) => {
      const tokens = d.tokens.filter((t) => !used.has(t));
      tokens.forEach((t) => used.add(t));
      if (tokens.length === 0) return;
      members.push({ node: nodeId(`n${i + 1}`), dc: `dc${d.dc}`, rack: `r${d.rack}`, tokens, status: d.status });
    });
    return RingView.of(members);
  });
}

export const owning = (ring: RingView): RingMember[] => ring.members.filter((m) => m.status !== 'joining');
