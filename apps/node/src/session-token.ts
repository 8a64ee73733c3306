import { createHash } from 'node:crypto';
import { InvalidRequest } from '@chorus/core';

/**
 * A session over HTTP: the `x-chorus-session` header. The client starts one
 * by sending `x-chorus-session: 0`; every answer to a data request that
 * carried the header (errors included) carries the session's new value,
 * which the client sends with its next request. The value is the whole
 * state (the server keeps none), bounded:
 *
 *     token = highWater *("," row)          at most 64 rows, 4096 characters
 *     row   = partition "." clustering "." micros
 *
 * - `highWater`: the largest timestamp (µs) the session wrote or read; a
 *   write is stamped above it.
 * - `partition`: 16 base64url characters, the first 96 bits of SHA-256 of
 *   the keyspace name, a zero byte and the partition key.
 * - `clustering`: the row's clustering key in base64url (empty for a plain
 *   key), or `~` and 16 base64url characters of its SHA-256 when it is over
 *   256 bytes (such rows are floors for point reads only: a slice cannot
 *   tell which of its rows they are).
 * - `micros`: the timestamp of the session's last acknowledged write of the
 *   row, its floor.
 *
 * Rows are kept most recently used first; the oldest are dropped to stay
 * within the bounds, and their reads are then no longer checked.
 */
export const SESSION_HEADER = 'x-chorus-session';
export const MAX_SESSION_ROWS = 64;
export const MAX_SESSION_CHARS = 4096;
/** Clustering keys up to this size travel in the token itself, so slices can use their floors. */
const INLINE_CLUSTERING_BYTES = 256;

export interface SessionRow {
  partition: string;
  clustering: string;
  micros: number;
}

export interface SessionToken {
  highWater: number;
  /** Most recently used first. */
  rows: SessionRow[];
}

/** Where a row sits in a token: its hashed partition and its clustering key (inline or hashed). */
export interface RowId {
  partition: string;
  clustering: string;
}

const MICROS = /^\d{1,16}$/;
const ROW = /^([A-Za-z0-9_-]{16})\.((?:~[A-Za-z0-9_-]{16})|[A-Za-z0-9_-]{0,344})\.(\d{1,16})$/;

function micros(text: string, what: string): number {
  const n = Number(text);
  if (!MICROS.test(text) || !Number.isSafeInteger(n)) throw invalid(`${what} is not an integer of microseconds`);
  return n;
}

function invalid(reason: string): InvalidRequest {
  return new InvalidRequest(`${SESSION_HEADER}: ${reason}; send back the value of the last answer, or 0 to start a session`, { field: SESSION_HEADER });
}

/** The session a request carries; undefined without the header. Throws InvalidRequest for a malformed one. */
export function parseSessionToken(header: string | string[] | undefined): SessionToken | undefined {
  if (header === undefined) return undefined;
  if (typeof header !== 'string') throw invalid('give the header once');
  const text = header.trim();
  if (text.length > MAX_SESSION_CHARS) throw invalid(`longer than ${MAX_SESSION_CHARS} characters`);
  const [first, ...rest] = text.split(',');
  if (rest.length > MAX_SESSION_ROWS) throw invalid(`more than ${MAX_SESSION_ROWS} rows`);
  const token: SessionToken = { highWater: micros(first ?? '', 'the high-water mark'), rows: [] };
  const seen = new Set<string>();
  for (const part of rest) {
    const m = ROW.exec(part);
    if (m === null) throw invalid('a row is not partition.clustering.micros');
    const row = { partition: m[1]!, clustering: m[2]!, micros: micros(m[3]!, 'a row timestamp') };
    const key = `${row.partition}.${row.clustering}`;
    if (seen.has(key)) continue;
    seen.add(key);
    token.rows.push(row);
  }
  return token;
}

export function formatSessionToken(token: SessionToken): string {
  return [String(token.highWater), ...token.rows.map((r) => `${r.partition}.${r.clustering}.${r.micros}`)].join(',');
}

const utf8 = new TextEncoder();
const bytesOf = (k: Uint8Array | string): Uint8Array => (typeof k === 'string' ? utf8.encode(k) : k);

function digest16(parts: Array<Uint8Array | string>): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest().subarray(0, 12).toString('base64url');
}

function partitionId(keyspace: string, partition: Uint8Array | string): string {
  return digest16([keyspace, new Uint8Array([0]), bytesOf(partition)]);
}

function clusteringId(clustering: Uint8Array | string | undefined): string {
  const ck = clustering === undefined ? new Uint8Array(0) : bytesOf(clustering);
  return ck.length <= INLINE_CLUSTERING_BYTES ? Buffer.from(ck).toString('base64url') : `~${digest16([ck])}`;
}

export function rowIdOf(keyspace: string, partition: Uint8Array | string, clustering?: Uint8Array | string): RowId {
  return { partition: partitionId(keyspace, partition), clustering: clusteringId(clustering) };
}

/** The session's floor for a row, when it wrote it (and the row is still in the token). */
export function floorOf(token: SessionToken, id: RowId): number | undefined {
  return token.rows.find((r) => r.partition === id.partition && r.clustering === id.clustering)?.micros;
}

/** The session read something written at `micros`. */
export function observe(token: SessionToken, micros: number): void {
  if (micros > token.highWater) token.highWater = micros;
}

/** An acknowledged write of the row at `micros`: the row becomes the most recent, and the token is cut back to its bounds. */
export function recordWrite(token: SessionToken, id: RowId, micros: number): void {
  observe(token, micros);
  const i = token.rows.findIndex((r) => r.partition === id.partition && r.clustering === id.clustering);
  const before = i < 0 ? 0 : token.rows.splice(i, 1)[0]!.micros;
  token.rows.unshift({ partition: id.partition, clustering: id.clustering, micros: Math.max(before, micros) });
  if (token.rows.length > MAX_SESSION_ROWS) token.rows.length = MAX_SESSION_ROWS;
  while (token.rows.length > 0 && formatSessionToken(token).length > MAX_SESSION_CHARS) token.rows.pop();
}

/** The floors of the session's rows of one partition whose clustering keys the token holds, for a slice. */
export function sliceFloorsOf(token: SessionToken, keyspace: string, partition: Uint8Array | string): Array<{ clustering: Uint8Array; timestampMicros: number }> {
  const pid = partitionId(keyspace, partition);
  return token.rows
    .filter((r) => r.partition === pid && !r.clustering.startsWith('~'))
    .map((r) => ({ clustering: new Uint8Array(Buffer.from(r.clustering, 'base64url')), timestampMicros: r.micros }));
}
