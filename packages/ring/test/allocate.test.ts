import { InvalidRequest, MIN_TOKEN, nodeId, type Token } from '@chorus/core';
import { describe, expect, it } from 'vitest';
import { RingView, allocateTokens, ownershipRatio, randomTokens } from '../src/index.js';
import { SeededRandom } from '@chorus/core';
import { simulateGrowth } from '../src/simulate.js';

const spacing = (tokens: readonly Token[]): bigint[] => tokens.map((t, i) => (i === 0 ? t - tokens[tokens.length - 1]! + 2n ** 64n : t - tokens[i - 1]!));

describe('token allocation', () => {
  it('spaces the first node evenly, at an offset from the random source', () => {
    const a = allocateTokens(RingView.empty(), { node: nodeId('n1') }, 16, 3, new SeededRandom(1));
    const b = allocateTokens(RingView.empty(), { node: nodeId('n1') }, 16, 3, new SeededRandom(2));
    expect(a).toHaveLength(16);
    expect(new Set(spacing(a)).size).toBe(1);
    expect(a).not.toEqual(b);
  });

  it('balances replicated ownership as a cluster grows: max/min at 12 nodes within 1.10', () => {
    const steps = simulateGrowth(12, 16, 3, 'balanced', new SeededRandom(42));
    const ratio = steps[11]!.ratio;
    expect(ratio).toBeLessThanOrEqual(1.1);
    // Random tokens for comparison are far less even; this guards against a vacuous balance figure.
    const random = simulateGrowth(12, 16, 3, 'random', new SeededRandom(42));
    expect(random[11]!.ratio).toBeGreaterThan(ratio);
  });

  it('gives distinct tokens that no other member holds', () => {
    const steps = simulateGrowth(6, 8, 3, 'balanced', new SeededRandom(3));
    const ring = steps[5]!.ring;
    const all = ring.members.flatMap((m) => m.tokens);
    expect(new Set(all).size).toBe(6 * 8);
    expect(all).not.toContain(MIN_TOKEN);
  });

  it('balances a datacenter on its own, ignoring the others', () => {
    let ring = RingView.empty();
    const random = new SeededRandom(9);
    for (let i = 1; i <= 8; i++) {
      const dc = i % 2 === 0 ? 'east' : 'west';
      const node = nodeId(`n${i}`);
      ring = ring.with({ node, dc, rack: 'r1', tokens: allocateTokens(ring, { node, dc }, 16, 2, random), status: 'normal' });
    }
    const ratio = ownershipRatio(ring.ownership({ class: 'NetworkTopologyStrategy', dcs: { east: 2, west: 2 } }));
    expect(ratio).toBeLessThanOrEqual(1.1);
  });

  it('refuses a node that already has tokens and nonsense counts', () => {
    const ring = RingView.of([{ node: nodeId('a'), dc: 'dc1', rack: 'r1', tokens: randomTokens(new SeededRandom(1), 4), status: 'normal' }]);
    expect(() => allocateTokens(ring, { node: nodeId('a') }, 4, 3, new SeededRandom(1))).toThrow(InvalidRequest);
    expect(() => allocateTokens(ring, { node: nodeId('b') }, 0, 3, new SeededRandom(1))).toThrow(/numTokens/);
    expect(() => allocateTokens(ring, { node: nodeId('b') }, 4, 0, new SeededRandom(1))).toThrow(/rf/);
  });

  it('draws distinct sorted random tokens', () => {
    const tokens = randomTokens(new SeededRandom(5), 256);
    expect(new Set(tokens).size).toBe(256);
    expect([...tokens].sort((a, b) => (a < b ? -1 : 1))).toEqual(tokens);
  });
});
