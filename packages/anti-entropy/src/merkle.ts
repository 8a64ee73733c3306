import { createHash } from 'node:crypto';
import type { Token } from '@chorus/core';
import { type TokenRange, rangeWidth } from '@chorus/ring';
import { MAX_REPAIR_TREE_DEPTH } from '@chorus/wire';
import MerkleTools from 'merkle-tools';

/**
 * Deepest tree a range is compared with: 2^16 = 65,536 leaves (Cassandra's
 * `repair_session_max_tree_depth` defaulted to 20 with whole-leaf streaming;
 * our leaves are synced row by row, so a leaf of a few dozen rows costs a few
 * dozen digests, not a few dozen rows, and 16 keeps a replica's tree at 2 MiB).
 */
export const MAX_TREE_DEPTH = MAX_REPAIR_TREE_DEPTH;
/** Rows a leaf should hold: the depth of a range's tree is chosen so that its leaves hold about this many. */
export const ROWS_PER_LEAF = 16;
export const HASH_BYTES = 32;

const FINE_LEAVES = 1 << MAX_TREE_DEPTH;
const RING = 1n << 64n;

/** The depth whose leaves hold about ROWS_PER_LEAF of `rows`; 0 (the root alone) for a small range. */
export function depthFor(rows: number): number {
  if (rows <= ROWS_PER_LEAF) return 0;
  return Math.min(MAX_TREE_DEPTH, Math.ceil(Math.log2(rows / ROWS_PER_LEAF)));
}

/** Where `t` lies in `range`, counted from its first token (0 … width-1). */
function offsetOf(range: TokenRange, t: Token): bigint {
  return (((t - range.start - 1n) % RING) + RING) % RING;
}

/** The leaf of a tree of `depth` over `range` that holds token `t`. */
export function leafIndexOf(range: TokenRange, t: Token, depth: number): number {
  return Number((offsetOf(range, t) << BigInt(depth)) / rangeWidth(range));
}

const ceilDiv = (a: bigint, b: bigint): bigint => (a + b - 1n) / b;

/**
 * The tokens leaf `index` of a tree of `depth` over `range` covers, as a range
 * of its own; undefined when it covers none (a range narrower than its leaves).
 * Exactly the tokens `leafIndexOf` maps to the leaf.
 */
export function leafRange(range: TokenRange, depth: number, index: number): TokenRange | undefined {
  return blockRange(range, depth, index, index + 1);
}

/** The tokens of leaves [from, to) of a tree of `depth`, as one range; undefined when they cover none. */
export function blockRange(range: TokenRange, depth: number, from: number, to: number): TokenRange | undefined {
  const width = rangeWidth(range);
  const first = ceilDiv(BigInt(from) * width, 1n << BigInt(depth));
  const past = ceilDiv(BigInt(to) * width, 1n << BigInt(depth));
  if (first >= past) return undefined;
  return { start: BigInt.asIntN(64, range.start + first) as Token, end: BigInt.asIntN(64, range.start + past) as Token };
}

/** A tree node as replicas exchange it: the hash of its subtree and how many rows lie under it. */
export interface TreeNode {
  hash: Uint8Array;
  rows: number;
}

/**
 * One replica's rows of one token range, summarised for comparison. Rows are
 * added in any order; each is hashed into the finest leaf holding its token
 * by XOR (as Cassandra's leaves combine partition hashes), so the tree can
 * be cut at any depth afterwards: a leaf at depth d is the XOR of the fine
 * leaves under it. Above the leaves, nodes are Merkle roots (merkle-tools,
 * SHA-256) of the leaves beneath, so replicas whose rows agree agree at the
 * root, and a difference can be followed down to the leaves that hold it.
 */
export class RangeTree {
  private readonly fine = new Uint8Array(FINE_LEAVES * HASH_BYTES);
  private readonly fineRows = new Uint32Array(FINE_LEAVES);
  private readonly cuts = new Map<number, { leaves: Buffer[]; rows: number[] }>();
  rows = 0;

  constructor(readonly range: TokenRange) {}

  add(t: Token, rowHash: Uint8Array): void {
    const leaf = leafIndexOf(this.range, t, MAX_TREE_DEPTH);
    const at = leaf * HASH_BYTES;
    for (let i = 0; i < HASH_BYTES; i++) this.fine[at + i]! ^= rowHash[i]!;
    this.fineRows[leaf]!++;
    this.rows++;
    this.cuts.clear();
  }

  private cut(depth: number): { leaves: Buffer[]; rows: number[] } {
    let cut = this.cuts.get(depth);
    if (cut !== undefined) return cut;
    const span = 1 << (MAX_TREE_DEPTH - depth);
    const leaves: Buffer[] = [];
    const rows: number[] = [];
    for (let leaf = 0; leaf < 1 << depth; leaf++) {
      const hash = Buffer.alloc(HASH_BYTES);
      let count = 0;
      for (let f = leaf * span; f < (leaf + 1) * span; f++) {
        const n = this.fineRows[f]!;
        if (n === 0) continue;
        count += n;
        const at = f * HASH_BYTES;
        for (let i = 0; i < HASH_BYTES; i++) hash[i]! ^= this.fine[at + i]!;
      }
      leaves.push(hash);
      rows.push(count);
    }
    cut = { leaves, rows };
    this.cuts.set(depth, cut);
    return cut;
  }

  /**
   * Nodes `indices` of `level` (0 = the root, `depth` = the leaves) of the
   * tree cut at `depth`; every replica of a session cuts at the same depth.
   */
  nodes(depth: number, level: number, indices: readonly number[]): TreeNode[] {
    if (!Number.isInteger(depth) || depth < 0 || depth > MAX_TREE_DEPTH) throw new RangeError(`tree depth must be 0..${MAX_TREE_DEPTH}, got ${depth}`);
    if (!Number.isInteger(level) || level < 0 || level > depth) throw new RangeError(`tree level must be 0..${depth}, got ${level}`);
    const { leaves, rows } = this.cut(depth);
    const span = 1 << (depth - level);
    return indices.map((index) => {
      if (!Number.isInteger(index) || index < 0 || index >= 1 << level) throw new RangeError(`node ${index} is not on level ${level}`);
      const block = leaves.slice(index * span, (index + 1) * span);
      let count = 0;
      for (let i = index * span; i < (index + 1) * span; i++) count += rows[i]!;
      return { hash: merkleRoot(block), rows: count };
    });
  }
}

function merkleRoot(leaves: Buffer[]): Uint8Array {
  if (leaves.length === 1) return leaves[0]!;
  const tree = new MerkleTools({ hashType: 'sha256' });
  tree.addLeaves(leaves as unknown as string[]);
  tree.makeTree(false);
  return tree.getMerkleRoot()!;
}

/** Two node hashes are the same subtree. */
export function sameHash(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}

/** The hash a row (or a partition deletion) adds to its leaf: its key and its version, so replicas agree only on identical rows. */
export function rowHash(t: Token, partition: Uint8Array, clustering: Uint8Array | undefined, version: Uint8Array): Uint8Array {
  const head = Buffer.alloc(8 + 4 + 1 + 4);
  head.writeBigInt64BE(t, 0);
  head.writeUInt32BE(partition.length, 8);
  head[12] = clustering === undefined ? 0 : 1;
  head.writeUInt32BE(clustering?.length ?? 0, 13);
  const h = createHash('sha256').update(head).update(partition);
  if (clustering !== undefined) h.update(clustering);
  return h.update(version).digest();
}
