import { type Static, type TObject, type TSchema, Type } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { LIMITS } from '@chorus/model';
import { Packr } from 'msgpackr';

/**
 * The client protocol, version 1: what travels on the `/client` WebSocket of
 * a node's port. Both ends import this package, so the server validates exactly
 * what the client is typed to send.
 *
 * - Every WebSocket message is binary msgpack with plain maps (no records).
 * - A message holds one request map, or an array of 1…MAX_BATCH of them;
 *   answers come the same way (one map, or an array of the answers produced
 *   in one turn of the server's event loop).
 * - Requests carry `id`, an integer from 1 to 2^32-1 chosen by the client;
 *   many may be in flight on one connection, and answers come back in any
 *   order, matched by `id`. Id 0 is the server's: an answer with id 0 is
 *   about the connection or about a request whose id was unusable.
 * - An answer is `{id, ok: result}` or `{id, error: {name, message, ...fields}}`,
 *   `name` being the server's stable error name (`Unavailable`,
 *   `WriteTimeout`, `ReadTimeout`, `InvalidRequest`, `Overloaded`, …) and
 *   the fields its numbers (`consistency`, `required`, `alive`, …).
 * - Version: a client sends `{op: 'hello', v: 1}` first; the server answers
 *   with the versions it speaks. New versions may add ops and fields; a
 *   version-1 server refuses fields it does not know (InvalidRequest).
 * - Sessions (read your writes): `after` on put/del is the session's
 *   high-water mark, which the write is stamped above; `floor` on get and
 *   `floors` on slice are the timestamps of the session's own writes of the
 *   rows read, which the answer is never older than (else the error
 *   `SessionFloorNotMet`). They are optional fields of version 1: a server
 *   without sessions refuses them as unknown fields.
 *
 * Garbage (see DESIGN.md, untrusted input stops at the edge):
 * - a text message: one `{id: 0, error: InvalidRequest}` answer, then close 1003;
 * - a binary message that is not msgpack, or is neither a map nor an array
 *   of 1…MAX_BATCH items: one `{id: 0, error}` answer, then close 1007;
 * - a message over MAX_MESSAGE_BYTES: ws closes with 1009 without reading it;
 * - an item that is not a valid request: an InvalidRequest answer with its
 *   id (id 0 when the id itself is missing or invalid); the connection stays.
 * - more than the server's in-flight limit at once: Overloaded answers.
 */
export const CLIENT_PATH = '/client';
export const PROTOCOL_VERSION = 1;
export const SUPPORTED_VERSIONS: readonly number[] = [1];
/** Largest WebSocket message the server accepts: one frame, as for peers. */
export const MAX_MESSAGE_BYTES = LIMITS.maxFrameBytes;
/** Most requests (or answers) in one message. */
export const MAX_BATCH = 1024;
/** Requests in flight on one connection before the server answers Overloaded. */
export const DEFAULT_MAX_IN_FLIGHT = 1024;
export const MAX_REQUEST_ID = 0xffff_ffff;
/** Most session floors in one slice request. */
export const MAX_SLICE_FLOORS = LIMITS.maxSliceFloors;
/** Close codes the server uses, as RFC 6455 names them. */
export const CLOSE_CODES = { goingAway: 1001, unsupportedData: 1003, invalidPayload: 1007, tooBig: 1009 } as const;

// Edge bounds looser than the model's LIMITS on purpose: a key or value somewhat
// over its limit reaches the coordinator, whose answer names the size and the
// limit (InvalidRequest with reason KEY_TOO_LARGE, ValueTooLarge) rather than
// a bare schema error. String lengths count UTF-16 units, not bytes, so they
// could not be exact here anyway. The bounds still cap what one request holds.
const MAX_KEY_BYTES = 8 * Math.max(LIMITS.maxPartitionKeyBytes, LIMITS.maxClusteringKeyBytes);
const MAX_VALUE_BYTES = 2 * LIMITS.maxValueBytes;
const MAX_TTL_SECONDS = LIMITS.maxTtlSeconds;

const Id = Type.Integer({ minimum: 1, maximum: MAX_REQUEST_ID });
const Keyspace = Type.String({ minLength: 1, maxLength: 64 });
const Key = Type.Union([Type.String({ maxLength: MAX_KEY_BYTES }), Type.Uint8Array({ maxByteLength: MAX_KEY_BYTES })]);
const Value = Type.Union([Type.String({ maxLength: MAX_VALUE_BYTES }), Type.Uint8Array({ maxByteLength: MAX_VALUE_BYTES })]);
const Consistency = Type.String({ minLength: 1, maxLength: 16 });
const Micros = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const strict = { additionalProperties: false } as const;
/** A session's floors for rows of the sliced partition: each row's clustering key and the timestamp of the session's last write of it. */
const Floors = Type.Array(Type.Object({ ck: Key, ts: Micros }, strict), { maxItems: MAX_SLICE_FLOORS });

export const REQUEST_SCHEMAS = {
  hello: Type.Object({ id: Id, op: Type.Literal('hello'), v: Type.Integer({ minimum: 1, maximum: 1000 }), client: Type.Optional(Type.String({ maxLength: 128 })) }, strict),
  put: Type.Object(
    {
      id: Id,
      op: Type.Literal('put'),
      ks: Keyspace,
      key: Key,
      ck: Type.Optional(Key),
      value: Value,
      cl: Type.Optional(Consistency),
      ttl: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_TTL_SECONDS })),
      ts: Type.Optional(Micros),
      after: Type.Optional(Micros),
    },
    strict,
  ),
  get: Type.Object({ id: Id, op: Type.Literal('get'), ks: Keyspace, key: Key, ck: Type.Optional(Key), cl: Type.Optional(Consistency), floor: Type.Optional(Micros) }, strict),
  del: Type.Object(
    { id: Id, op: Type.Literal('del'), ks: Keyspace, key: Key, ck: Type.Optional(Key), cl: Type.Optional(Consistency), ts: Type.Optional(Micros), after: Type.Optional(Micros) },
    strict,
  ),
  slice: Type.Object(
    {
      id: Id,
      op: Type.Literal('slice'),
      ks: Keyspace,
      key: Key,
      from: Type.Optional(Key),
      to: Type.Optional(Key),
      limit: Type.Optional(Type.Integer({ minimum: 1, maximum: LIMITS.maxSliceLimit })),
      page: Type.Optional(Type.Uint8Array({ maxByteLength: MAX_KEY_BYTES * 2 })),
      reverse: Type.Optional(Type.Boolean()),
      cl: Type.Optional(Consistency),
      floors: Type.Optional(Floors),
    },
    strict,
  ),
  local: Type.Object({ id: Id, op: Type.Literal('local'), ks: Keyspace, key: Key, ck: Type.Optional(Key) }, strict),
  ring: Type.Object({ id: Id, op: Type.Literal('ring') }, strict),
  stats: Type.Object({ id: Id, op: Type.Literal('stats') }, strict),
} satisfies Record<string, TObject>;

export type Op = keyof typeof REQUEST_SCHEMAS;
export const OPS = Object.keys(REQUEST_SCHEMAS) as Op[];
export type Request = { [K in Op]: Static<(typeof REQUEST_SCHEMAS)[K]> }[Op];
export type RequestOf<K extends Op> = Static<(typeof REQUEST_SCHEMAS)[K]>;
type DistributiveOmitId<T> = T extends unknown ? Omit<T, 'id'> : never;
/** A request before the connection gives it an id. */
export type RequestBody = DistributiveOmitId<Request>;

/** Ops that change nothing: safe to send again after a connection broke with them in flight. */
export const READ_ONLY_OPS: ReadonlySet<Op> = new Set<Op>(['hello', 'get', 'slice', 'local', 'ring', 'stats']);

// ——— answers ———

export interface WireError {
  name: string;
  message: string;
  [field: string]: unknown;
}

export type Answer = { id: number; ok: unknown } | { id: number; error: WireError };

export interface HelloResult {
  v: number;
  versions: number[];
  /** The node's listen address (`host:port`), as the ring names it. */
  node: string;
  name: string;
  hostId: string;
  maxInFlight: number;
  maxMessageBytes: number;
}

export interface WriteResult {
  ts: number;
}

export interface GetResult {
  value: Uint8Array;
  ts: number;
}

export interface SliceRowResult {
  ck: Uint8Array;
  value: Uint8Array;
  ts: number;
  exp?: number;
}

export interface SliceResultWire {
  rows: SliceRowResult[];
  next?: Uint8Array;
}

export interface LocalResult {
  value: Uint8Array | null;
  ts: number;
  tombstone: boolean;
  exp?: number;
}

export interface RingMemberWire {
  address: string;
  name: string;
  dc: string;
  rack: string;
  /** nodetool's two letters: UN, DN, UJ, UL… */
  state: string;
  /** Signed 64-bit tokens as decimal strings. */
  tokens: string[];
}

export interface RingResult {
  members: RingMemberWire[];
  keyspaces: Array<{ name: string; replication: unknown }>;
}

// ——— validation and encoding ———

const compiled = new Map<string, TypeCheck<TSchema>>(Object.entries(REQUEST_SCHEMAS).map(([op, schema]) => [op, TypeCompiler.Compile(schema)]));

export type Validated = { ok: true; request: Request } | { ok: false; id: number; message: string; field?: string };

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x) && !(x instanceof Uint8Array);
}

/** The id to answer an item with: its own when usable, otherwise 0. */
export function answerIdOf(item: unknown): number {
  if (!isRecord(item)) return 0;
  const id = item.id;
  return typeof id === 'number' && Number.isInteger(id) && id >= 1 && id <= MAX_REQUEST_ID ? id : 0;
}

/** Checks one decoded item against the schema of its op. Never throws. */
export function validateRequest(item: unknown): Validated {
  const id = answerIdOf(item);
  if (!isRecord(item)) return { ok: false, id, message: 'a request must be a map' };
  if (id === 0) return { ok: false, id, message: 'id must be an integer from 1 to 4294967295', field: 'id' };
  const op = item.op;
  const check = typeof op === 'string' ? compiled.get(op) : undefined;
  // Named without JSON.stringify: an op may be anything msgpack decodes (a BigInt would make it throw).
  const shown = typeof op === 'string' ? JSON.stringify(op.slice(0, 40)) : `of type ${op instanceof Uint8Array ? 'bytes' : op === null ? 'null' : Array.isArray(op) ? 'array' : typeof op}`;
  if (!check) return { ok: false, id, message: `unknown op ${shown}; expected one of ${OPS.join(', ')}`, field: 'op' };
  if (!check.Check(item)) {
    const first = check.Errors(item).First();
    const field = first?.path.replace(/^\//, '').split('/')[0] || undefined;
    return { ok: false, id, message: `${op as string}: ${first ? `${first.path || '/'} ${first.message}` : 'does not match its schema'}`, ...(field ? { field } : {}) };
  }
  return { ok: true, request: item as Request };
}

/** The msgpack settings of both ends: plain maps, no records learned on the fly. */
export function createPackr(): Packr {
  return new Packr({ useRecords: false, mapsAsObjects: true });
}
