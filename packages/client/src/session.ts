import { MAX_SLICE_FLOORS } from '@chorus/client-protocol';
import type { SliceResult } from './client.js';
import { WriteTimeout } from './errors.js';
import type { Bytes, DelOptions, GetOptions, PutOptions, SliceOptions } from './options.js';

/** Rows a session remembers the floors of by default. */
export const DEFAULT_SESSION_MAX_KEYS = 10_000;
/** Clustering-key bytes of the floors one slice page carries; past it (or past MAX_SLICE_FLOORS rows) the page is narrowed. */
const SLICE_FLOOR_BYTES = 256 * 1024;

export interface SessionOptions {
  /**
   * Rows whose floors the session remembers (default 10000), least recently
   * used dropped first. A dropped row is read at its level alone; the
   * session's writes stay ordered whatever is dropped.
   */
  maxKeys?: number;
}

/**
 * Read your writes and ordered writes for one client: the calls of
 * `ChorusClient` with the same options, over the same connections.
 */
export interface ChorusSession {
  put(keyspace: string, key: Bytes, value: Bytes, options?: PutOptions): Promise<{ timestamp: number }>;
  get(keyspace: string, key: Bytes, options?: GetOptions): Promise<{ value: Uint8Array; timestamp: number } | undefined>;
  del(keyspace: string, key: Bytes, options?: DelOptions): Promise<{ timestamp: number }>;
  slice(keyspace: string, partition: Bytes, options?: SliceOptions): Promise<SliceResult>;
  /** The largest timestamp (µs) the session wrote or read: its writes are stamped above it. */
  readonly highWaterMicros: number;
  /** The timestamp of the session's last acknowledged write of the row, while the session remembers it. */
  floorOf(keyspace: string, key: Bytes, clustering?: Bytes): number | undefined;
  /** Rows whose floors the session remembers (at most `maxKeys`). */
  readonly size: number;
}

/** The client's calls with a session's fields; `Client` implements them. */
export interface SessionCalls {
  putIn(keyspace: string, key: Bytes, value: Bytes, options: PutOptions, after: number | undefined): Promise<{ timestamp: number }>;
  getIn(keyspace: string, key: Bytes, options: GetOptions, floor: number | undefined): Promise<{ value: Uint8Array; timestamp: number } | undefined>;
  delIn(keyspace: string, key: Bytes, options: DelOptions, after: number | undefined): Promise<{ timestamp: number }>;
  sliceIn(keyspace: string, partition: Bytes, options: SliceOptions, floors: Array<{ ck: Uint8Array; ts: number }> | undefined): Promise<SliceResult>;
}

interface Floor {
  row: string;
  partition: string;
  clustering: Uint8Array;
  micros: number;
}

const utf8 = new TextEncoder();
const bytesOf = (b: Bytes): Uint8Array => (typeof b === 'string' ? utf8.encode(b) : b);
const latin1 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
const EMPTY = new Uint8Array(0);

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/**
 * The floors of the rows a session wrote: least recently used first (a Map
 * keeps insertion order), and indexed by partition for slices.
 */
export class FloorCache {
  private readonly rows = new Map<string, Floor>();
  private readonly partitions = new Map<string, Map<string, Floor>>();

  constructor(readonly maxKeys: number) {
    if (!Number.isInteger(maxKeys) || maxKeys < 1) throw new TypeError(`maxKeys must be a positive integer, got ${String(maxKeys)}`);
  }

  get size(): number {
    return this.rows.size;
  }

  /** The partition's key: the keyspace and the partition key, length-prefixed so no two rows share one. */
  static partitionOf(keyspace: string, partition: Uint8Array): string {
    return `${keyspace}\u0000${partition.length}:${latin1(partition)}`;
  }

  static rowOf(partition: string, clustering: Uint8Array): string {
    return `${partition}\u0000${latin1(clustering)}`;
  }

  /** The row's floor, marking it used. */
  get(row: string): number | undefined {
    const floor = this.rows.get(row);
    if (floor === undefined) return undefined;
    this.rows.delete(row);
    this.rows.set(row, floor);
    return floor.micros;
  }

  peek(row: string): number | undefined {
    return this.rows.get(row)?.micros;
  }

  /** An acknowledged write of the row: its floor never goes down (concurrent writes of one row may be acknowledged out of order). */
  record(partition: string, clustering: Uint8Array, micros: number): void {
    const row = FloorCache.rowOf(partition, clustering);
    const had = this.rows.get(row);
    if (had !== undefined) this.rows.delete(row);
    const floor: Floor = { row, partition, clustering, micros: Math.max(had?.micros ?? 0, micros) };
    this.rows.set(row, floor);
    let rows = this.partitions.get(partition);
    if (rows === undefined) this.partitions.set(partition, (rows = new Map()));
    rows.set(row, floor);
    while (this.rows.size > this.maxKeys) this.evict(this.rows.values().next().value!);
  }

  private evict(floor: Floor): void {
    this.rows.delete(floor.row);
    const rows = this.partitions.get(floor.partition)!;
    rows.delete(floor.row);
    if (rows.size === 0) this.partitions.delete(floor.partition);
  }

  inPartition(partition: string): Iterable<Floor> {
    return this.partitions.get(partition)?.values() ?? [];
  }
}

/**
 * A session: the floors of the rows it wrote (bounded, least recently used
 * dropped first) and its high-water mark. Writes carry the high-water mark
 * (`after`), reads the floors of the rows they read (`floor`, `floors`).
 */
export class Session implements ChorusSession {
  private readonly floors: FloorCache;
  private highWater = 0;

  constructor(private readonly calls: SessionCalls, options: SessionOptions = {}) {
    this.floors = new FloorCache(options.maxKeys ?? DEFAULT_SESSION_MAX_KEYS);
  }

  get highWaterMicros(): number {
    return this.highWater;
  }

  get size(): number {
    return this.floors.size;
  }

  floorOf(keyspace: string, key: Bytes, clustering?: Bytes): number | undefined {
    return this.floors.peek(FloorCache.rowOf(FloorCache.partitionOf(keyspace, bytesOf(key)), clustering === undefined ? EMPTY : bytesOf(clustering)));
  }

  private saw(micros: number): void {
    if (micros > this.highWater) this.highWater = micros;
  }

  private async write(keyspace: string, key: Bytes, options: PutOptions | DelOptions, send: (after: number | undefined) => Promise<{ timestamp: number }>): Promise<{ timestamp: number }> {
    // A write with the client's own timestamp is ordered by that timestamp, not by the session.
    const after = options.timestamp === undefined ? this.highWater : undefined;
    try {
      const result = await send(after);
      this.saw(result.timestamp);
      const clustering = options.clustering === undefined ? EMPTY : bytesOf(options.clustering);
      this.floors.record(FloorCache.partitionOf(keyspace, bytesOf(key)), clustering, result.timestamp);
      return result;
    } catch (error) {
      // It may still win later with this timestamp: the next write must sort above it.
      if (error instanceof WriteTimeout && error.timestampMicros !== undefined) this.saw(error.timestampMicros);
      throw error;
    }
  }

  put(keyspace: string, key: Bytes, value: Bytes, options: PutOptions = {}): Promise<{ timestamp: number }> {
    return this.write(keyspace, key, options, (after) => this.calls.putIn(keyspace, key, value, options, after));
  }

  del(keyspace: string, key: Bytes, options: DelOptions = {}): Promise<{ timestamp: number }> {
    return this.write(keyspace, key, options, (after) => this.calls.delIn(keyspace, key, options, after));
  }

  async get(keyspace: string, key: Bytes, options: GetOptions = {}): Promise<{ value: Uint8Array; timestamp: number } | undefined> {
    const row = FloorCache.rowOf(FloorCache.partitionOf(keyspace, bytesOf(key)), options.clustering === undefined ? EMPTY : bytesOf(options.clustering));
    const result = await this.calls.getIn(keyspace, key, options, this.floors.get(row));
    if (result !== undefined) this.saw(result.timestamp);
    return result;
  }

  /**
   * Sends the floors of the session's rows the page may cover, in scan
   * order. When they are too many for one request, the page is narrowed to
   * end at the last floor sent, and resumes from there: a page never covers
   * a row whose floor it did not carry.
   */
  async slice(keyspace: string, partition: Bytes, options: SliceOptions = {}): Promise<SliceResult> {
    const reverse = options.reverse === true;
    const order = (a: Uint8Array, b: Uint8Array): number => (reverse ? -compareBytes(a, b) : compareBytes(a, b));
    const from = options.from === undefined ? undefined : bytesOf(options.from);
    const to = options.to === undefined ? undefined : bytesOf(options.to);
    const after = options.page;
    const candidates: Floor[] = [];
    for (const f of this.floors.inPartition(FloorCache.partitionOf(keyspace, bytesOf(partition)))) {
      const ck = f.clustering;
      if (from !== undefined && compareBytes(ck, from) < 0) continue;
      if (to !== undefined && compareBytes(ck, to) > 0) continue;
      if (after !== undefined && order(ck, after) <= 0) continue;
      candidates.push(f);
    }
    candidates.sort((a, b) => order(a.clustering, b.clustering));
    const sent: Array<{ ck: Uint8Array; ts: number }> = [];
    let bytes = 0;
    for (const f of candidates) {
      if (sent.length === MAX_SLICE_FLOORS || (sent.length > 0 && bytes + f.clustering.length > SLICE_FLOOR_BYTES)) break;
      sent.push({ ck: f.clustering, ts: f.micros });
      bytes += f.clustering.length;
    }
    let narrowed: Uint8Array | undefined;
    let sliceOptions = options;
    if (sent.length < candidates.length) {
      narrowed = sent[sent.length - 1]!.ck;
      sliceOptions = reverse ? { ...options, from: narrowed } : { ...options, to: narrowed };
    }
    const result = await this.calls.sliceIn(keyspace, partition, sliceOptions, sent.length > 0 ? sent : undefined);
    for (const r of result.rows) this.saw(r.timestamp);
    // The slice went on past the narrowed bound: the next page starts after it.
    if (narrowed !== undefined && result.nextPage === undefined) return { ...result, nextPage: narrowed };
    return result;
  }
}
