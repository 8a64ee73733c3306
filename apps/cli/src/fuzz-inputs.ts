/**
 * What the fuzzer sends, as a pure function of a seeded random stream: valid
 * values generated from the schemas the node validates against (the wire's
 * message kinds, the client protocol's requests), then mutated (fields of
 * the wrong type, missing or unknown fields, sizes past the limits, bytes
 * flipped or cut), so that most inputs get past the first check and reach
 * deeper code. The same seed gives the same inputs.
 */
import * as protocol from '@chorus/client-protocol';
import type { SeededRandom } from '@chorus/core';
import { MESSAGE_KINDS, wireCodec } from '@chorus/wire';

type Json = Record<string, unknown>;

/** Strings that match the patterns of the schemas (node names, keyspaces, host ids…), tried in order. */
// Node names on ports nothing listens on: a node that gossips with them must not reach a real one.
const PATTERN_SAMPLES = ['127.0.0.1:9', '127.0.0.1:10', 'default', 'n1', 'fuzz_ks', 'SimpleStrategy', 'QUORUM', 'dc1', '0', '00000000-0000-4000-8000-000000000001', 'session-1', 'a'];
/** The actors a node runs; a frame may also name one it does not. */
const ACTORS = ['replica', 'gossiper', 'schema', 'hints', 'repair-validator', 'coordinator', 'storage', 'nobody', ''];
const KINDS = Object.entries(MESSAGE_KINDS).map(([name, spec]) => ({ name, id: spec.id, schema: spec.schema as unknown as Json }));
const OPS = Object.entries(protocol.REQUEST_SCHEMAS).map(([op, schema]) => ({ op, schema: schema as unknown as Json }));

const pick = <T>(r: SeededRandom, items: readonly T[]): T => items[r.int(items.length)]!;
const chance = (r: SeededRandom, p: number) => r.next() < p;

function randomString(r: SeededRandom, min: number, max: number): string {
  const n = min + r.int(Math.max(1, max - min + 1));
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:/%é€\u0000';
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[r.int(alphabet.length)];
  return s;
}

function randomBigInt(r: SeededRandom, min: bigint, max: bigint): bigint {
  if (chance(r, 0.2)) return pick(r, [min, max, 0n]);
  const span = max - min;
  const hi = BigInt(r.nextUint32());
  const lo = BigInt(r.nextUint32());
  return min + (((hi << 32n) | lo) % (span + 1n));
}

const patterns = new Map<string, RegExp>();

/** A value the schema accepts (as far as these simple rules go), small so that most frames stay small. */
export function valueOf(schema: Json, r: SeededRandom, depth = 0): unknown {
  if (Array.isArray(schema.anyOf)) return valueOf(pick(r, schema.anyOf as Json[]), r, depth);
  if (schema.const !== undefined) return schema.const;
  switch (schema.type) {
    case 'object': {
      const out: Json = {};
      const properties = (schema.properties ?? {}) as Record<string, Json>;
      const required = new Set((schema.required ?? []) as string[]);
      for (const [key, sub] of Object.entries(properties)) if (required.has(key) || chance(r, 0.5)) out[key] = valueOf(sub, r, depth + 1);
      const records = schema.patternProperties as Record<string, Json> | undefined;
      if (records) {
        const [pattern, sub] = Object.entries(records)[0]!;
        for (let i = r.int(3); i > 0; i--) out[stringMatching(pattern, r, 1, 32)] = valueOf(sub, r, depth + 1);
      }
      return out;
    }
    case 'array': {
      const min = Number(schema.minItems ?? 0);
      const max = Math.min(Number(schema.maxItems ?? 4), min + 3);
      return Array.from({ length: min + r.int(max - min + 1) }, () => valueOf(schema.items as Json, r, depth + 1));
    }
    case 'string': {
      const min = Number(schema.minLength ?? 0);
      const max = Math.min(Number(schema.maxLength ?? 16), min + 16);
      return typeof schema.pattern === 'string' ? stringMatching(schema.pattern, r, min, max) : randomString(r, min, max);
    }
    case 'integer':
    case 'number': {
      const min = Number(schema.minimum ?? -1_000_000);
      const max = Number(schema.maximum ?? 1_000_000);
      if (chance(r, 0.2)) return pick(r, [min, max]);
      const n = min + Math.floor(r.next() * Math.min(max - min + 1, 2 ** 40));
      return schema.type === 'integer' ? n : n + r.next();
    }
    case 'boolean':
      return chance(r, 0.5);
    case 'null':
      return null;
    case 'Uint8Array': {
      const min = Number(schema.minByteLength ?? 0);
      const max = Math.min(Number(schema.maxByteLength ?? 64), min + 64);
      return r.bytes(min + r.int(max - min + 1));
    }
    case 'bigint':
      return randomBigInt(r, BigInt((schema.minimum as bigint | undefined) ?? -(2n ** 63n)), BigInt((schema.maximum as bigint | undefined) ?? 2n ** 63n - 1n));
    default:
      return null;
  }
}

function stringMatching(pattern: string, r: SeededRandom, min: number, max: number): string {
  let regex = patterns.get(pattern);
  if (!regex) patterns.set(pattern, (regex = new RegExp(pattern)));
  const fits = PATTERN_SAMPLES.filter((s) => regex.test(s) && s.length >= min && s.length <= Math.max(max, min));
  return fits.length > 0 ? pick(r, fits) : randomString(r, min, max);
}

/** A value of some other shape: what a hostile or broken sender puts where something else belongs. */
export function wildValue(r: SeededRandom): unknown {
  switch (r.int(16)) {
    case 0:
      return null;
    case 1:
      return -1;
    case 2:
      return pick(r, [Number.NaN, Number.POSITIVE_INFINITY, Number.MAX_SAFE_INTEGER + 2, -0, 2 ** 64, 0.5]);
    case 3:
      // The ends of what msgpack carries: past a token's range, or of the wrong sign.
      return pick(r, [2n ** 64n - 1n, 2n ** 63n, -(2n ** 63n), 0n]);
    case 4:
      return randomString(r, 0, 40);
    case 5:
      return 'x'.repeat(pick(r, [129, 4_097, 70_000]));
    case 6:
      return r.bytes(r.int(40));
    case 7:
      return new Uint8Array(pick(r, [257, 65_537, 1_048_577]));
    case 8:
      return [];
    case 9:
      return Array.from({ length: pick(r, [5, 1_025, 20_000]) }, (_, i) => i);
    case 10:
      return {};
    case 11:
      // Own properties named like the prototype's, as JSON.parse makes them.
      return JSON.parse('{"__proto__": {"polluted": true}, "constructor": {"prototype": 1}, "type": "replica.mutate"}') as unknown;
    case 12:
      return true;
    case 13:
      return nested(pick(r, [10, 200, 5_000]));
    case 14:
      return { a: { b: { c: randomString(r, 0, 8) } } };
    default:
      return r.nextUint32();
  }
}

function nested(depth: number): unknown {
  let v: unknown = 0;
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

/** Mutates a generated value in place at a random path: a field replaced, removed or added. */
export function mutateFields(value: unknown, r: SeededRandom): unknown {
  if (typeof value !== 'object' || value === null || value instanceof Uint8Array) return wildValue(r);
  const containers: Array<Json | unknown[]> = [];
  const walk = (v: unknown, depth: number) => {
    if (depth > 6 || typeof v !== 'object' || v === null || v instanceof Uint8Array) return;
    containers.push(v as Json);
    for (const child of Object.values(v as Json)) walk(child, depth + 1);
  };
  walk(value, 0);
  const target = pick(r, containers);
  const keys = Object.keys(target);
  const action = r.int(4);
  if (keys.length === 0 || action === 0) (target as Json)[chance(r, 0.5) ? randomString(r, 1, 12) : pick(r, ['__proto__', 'constructor', 'type', 'replyTo', 'toString', 'hasOwnProperty'])] = wildValue(r);
  else if (action === 1) delete (target as Json)[pick(r, keys)];
  else (target as Json)[pick(r, keys)] = wildValue(r);
  return value;
}

/** Bytes flipped, cut, doubled or extended: what a corrupting link or a hostile encoder sends. */
export function mutateBytes(bytes: Uint8Array, r: SeededRandom): Uint8Array {
  const out = Buffer.from(bytes);
  switch (r.int(5)) {
    case 0: {
      for (let i = 1 + r.int(4); i > 0 && out.length > 0; i--) out[r.int(out.length)] = r.nextUint32() & 0xff;
      return out;
    }
    case 1:
      return out.subarray(0, r.int(out.length + 1));
    case 2:
      return Buffer.concat([out, Buffer.from(r.bytes(1 + r.int(32)))]);
    case 3:
      return Buffer.concat([out.subarray(0, r.int(out.length + 1)), out]);
    default: {
      // A msgpack header claiming far more than follows.
      const headers = [Buffer.from([0xdf, 0xff, 0xff, 0xff, 0xff]), Buffer.from([0xdd, 0x7f, 0xff, 0xff, 0xff]), Buffer.from([0xc6, 0x7f, 0xff, 0xff, 0xff]), Buffer.from([0xdb, 0x00, 0x10, 0x00, 0x00])];
      return Buffer.concat([pick(r, headers), out.subarray(r.int(out.length + 1))]);
    }
  }
}

/**
 * One peer frame: an envelope (a message to an actor, possibly asked, or a
 * reply to no ask of the node's) built with the real wire codec, then, for
 * most frames, its fields or its bytes mutated.
 */
export function peerFrame(r: SeededRandom, codec: ReturnType<typeof wireCodec>, packr: ReturnType<typeof protocol.createPackr>): Uint8Array {
  const kind = pick(r, KINDS);
  let body = valueOf(kind.schema, r) as Json;
  const mode = r.int(10);
  if (mode >= 4 && mode < 8) body = mutateFields(body, r) as Json;
  const to = chance(r, 0.85) ? pick(r, ACTORS.slice(0, 5)) : pick(r, ACTORS);
  const asked = chance(r, 0.6) ? { id: 1 + r.int(1_000_000), run: r.int(2 ** 31) } : undefined;
  let frame: Uint8Array;
  try {
    switch (r.int(8)) {
      case 0:
        frame = codec.encode({ t: 'ok', id: r.int(1_000_000), run: r.int(2 ** 31), v: { type: kind.name, ...body } });
        break;
      case 1:
        frame = codec.encode({ t: 'err', id: r.int(1_000_000), run: r.int(2 ** 31), e: { name: randomString(r, 0, 12), code: 'X', message: randomString(r, 0, 40), fields: {}, status: r.int(600) } });
        break;
      case 2:
        // A kind id the table does not have, or the envelope's own fields of the wrong type.
        frame = packr.pack({ t: pick(r, ['msg', 'ok', 'err', 'nope', 7]), to: chance(r, 0.5) ? to : wildValue(r), r: chance(r, 0.5) ? asked : wildValue(r), k: chance(r, 0.5) ? r.int(1_000) : wildValue(r), b: body, id: wildValue(r), run: wildValue(r) });
        break;
      default:
        frame = codec.encode({ t: 'msg', to, msg: { type: kind.name, ...body }, ...(asked ? { r: { node: '', ...asked } } : {}) } as never);
    }
  } catch {
    try {
      frame = packr.pack({ t: 'msg', to, k: kind.id, b: body });
    } catch {
      frame = r.bytes(1 + r.int(64));
    }
  }
  if (mode >= 8) frame = mutateBytes(frame, r);
  return frame;
}

/** msgpack of a value, or random bytes for one msgpack cannot carry. */
function safePack(packr: ReturnType<typeof protocol.createPackr>, value: unknown, r: SeededRandom): Uint8Array {
  try {
    return packr.pack(value);
  } catch {
    return r.bytes(1 + r.int(64));
  }
}

/** A WebSocket message to /peer after the handshake: usually a well-formed container of frames, sometimes a broken one. */
export function peerMessage(r: SeededRandom, frames: Uint8Array[]): { data: Uint8Array | string; binary: boolean } {
  const lengths = Buffer.alloc(4 * frames.length);
  const parts: Buffer[] = [Buffer.from([0x01])];
  frames.forEach((f, i) => {
    lengths.writeUInt32BE(f.byteLength, 4 * i);
    parts.push(lengths.subarray(4 * i, 4 * i + 4), Buffer.from(f));
  });
  const container = Buffer.concat(parts);
  const broken = r.int(100);
  if (broken < 90) return { data: container, binary: true };
  if (broken < 96) return { data: mutateBytes(container, r), binary: true };
  if (broken < 98) return { data: Buffer.from([pick(r, [0x00, 0x02, 0xff]), ...container.subarray(1)]), binary: true };
  return { data: randomString(r, 0, 64), binary: false };
}

/** A handshake message a stranger or a broken peer sends: a hello, auth or anything else, mostly almost right. */
export function handshakeMessage(r: SeededRandom, packr: ReturnType<typeof protocol.createPackr>, valid: { cluster: string; node: string; to: string }): Uint8Array {
  const hello: Json = { t: 'hello', v: 2, cluster: valid.cluster, node: valid.node, to: valid.to, nonce: r.bytes(32) };
  const auth: Json = { t: 'auth', proof: r.bytes(32) };
  const base = chance(r, 0.7) ? hello : chance(r, 0.5) ? auth : { t: pick(r, ['challenge', 'ready', 'hello', '']) };
  if (chance(r, 0.3)) base.node = pick(r, [valid.to, 'not a node id', '', '127.0.0.1:1']);
  const message = chance(r, 0.6) ? mutateFields(base, r) : base;
  let bytes = safePack(packr, message, r);
  if (chance(r, 0.25)) bytes = mutateBytes(bytes, r);
  if (chance(r, 0.03)) bytes = Buffer.alloc(4097 + r.int(70_000), 0x90);
  return bytes;
}

/** A client-protocol request from the schema, against keyspace `default` mostly, often mutated. */
export function clientRequest(r: SeededRandom, id: number): unknown {
  const { schema } = pick(r, OPS);
  const request = valueOf(schema, r) as Json;
  request.id = chance(r, 0.95) ? id : wildValue(r);
  if ('ks' in request && chance(r, 0.7)) request.ks = 'default';
  if ('cl' in request && chance(r, 0.8)) request.cl = pick(r, ['ONE', 'QUORUM', 'ALL', 'ANY', 'LOCAL_ONE', 'EACH_QUORUM', 'two']);
  return chance(r, 0.4) ? mutateFields(request, r) : request;
}

/** A WebSocket message on /client: one request or a batch, sometimes not a request at all (which closes the connection). */
export function clientMessage(r: SeededRandom, packr: ReturnType<typeof protocol.createPackr>, nextId: () => number): { data: Uint8Array | string; binary: boolean; requests: number } {
  const odd = r.int(100);
  if (odd < 1) return { data: randomString(r, 0, 32), binary: false, requests: 1 };
  if (odd < 2) return { data: r.bytes(1 + r.int(64)), binary: true, requests: 1 };
  if (odd < 3) return { data: packr.pack(pick(r, [[], 42, 'hello', null, Array.from({ length: 1_025 }, () => ({}))])), binary: true, requests: 1 };
  const n = chance(r, 0.7) ? 1 : 1 + r.int(16);
  const requests = Array.from({ length: n }, () => clientRequest(r, nextId()));
  let data = safePack(packr, n === 1 ? requests[0] : requests, r);
  if (chance(r, 0.03)) data = mutateBytes(data, r);
  return { data, binary: true, requests: n };
}

export interface HttpInput {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer | undefined;
}

const METHODS = ['GET', 'PUT', 'POST', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'PROPFIND', 'BREW'];
const ROUTES = ['/v1/kv/{ks}/{key}', '/v1/kv/{ks}/{key}/{ck}', '/v1/rows/{ks}/{key}', '/v1/local/{ks}/{key}', '/v1/local/{ks}/{key}/{ck}', '/v1/status', '/v1/ring', '/v1/hints', '/v1/keyspaces', '/v1/keyspaces/{name}', '/v1/repair', '/v1/repair/{job}', '/metrics', '/health', '/{junk}', '/v1/{junk}/{junk}'];
const QUERY = ['consistency', 'ttl', 'timestamp', 'from', 'to', 'limit', 'page', 'reverse'];
const QUERY_VALUES = ['ONE', 'quorum', 'ALL', 'ANY', 'EACH_QUORUM', '0', '-1', '1', '99999999999999999999', '1e3', '', 'true', 'AAAA', '%00', '%ZZ', '1.5', 'NaN'];

function segment(r: SeededRandom): string {
  return pick(r, [
    () => encodeURIComponent(randomString(r, 1, 12)),
    () => '%',
    () => '%E2%82',
    () => 'x'.repeat(pick(r, [300, 3_000, 20_000])),
    () => '..',
    () => 'system',
    () => 'default',
    () => String(r.int(100)),
  ])();
}

/** JSON of a value with BigInts as numbers' digits, or a cut-off document for one JSON cannot carry (too deep). */
function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value, (_, v: unknown) => (typeof v === 'bigint' ? Number(v) : v instanceof Uint8Array ? [...v.subarray(0, 64)] : v)) ?? 'null';
  } catch {
    return '{"replication": [[[[';
  }
}

/** One HTTP request: a route of the API (or none), random parameters, headers and body. */
export function httpRequest(r: SeededRandom): HttpInput {
  const method = pick(r, METHODS);
  let path = pick(r, ROUTES).replace(/\{(\w+)\}/g, (_, name: string) => {
    if (name === 'ks') return chance(r, 0.7) ? 'default' : segment(r);
    if (name === 'name') return chance(r, 0.5) ? `fuzz${r.int(4)}` : segment(r);
    return segment(r);
  });
  const params = Array.from({ length: r.int(4) }, () => `${pick(r, QUERY)}=${pick(r, QUERY_VALUES)}`);
  if (params.length > 0) path += `?${params.join('&')}`;
  const headers: Record<string, string> = {};
  if (chance(r, 0.2)) headers['x-chorus-session'] = pick(r, ['0', randomString(r, 0, 64).replace(/[^\x21-\x7e]/g, 'a'), 'a'.repeat(9_000)]);
  if (chance(r, 0.3)) headers['content-type'] = pick(r, ['application/json', 'text/plain', 'application/octet-stream', 'multipart/form-data; boundary=x', 'x/y']);
  if (chance(r, 0.05)) headers['transfer-encoding'] = 'chunked';
  let body: Buffer | undefined;
  if (method !== 'GET' && method !== 'HEAD' && chance(r, 0.8)) {
    body = pick(r, [
      () => Buffer.from(r.bytes(r.int(256))),
      () => Buffer.from(safeJson(mutateFields({ replication: { class: pick(r, ['SimpleStrategy', 'NetworkTopologyStrategy', 'X']), rf: r.int(5), dc1: r.int(4) }, read_repair: pick(r, ['none', 'blocking', 1]), tombstone_gc: pick(r, ['repair', 'grace']) }, r))),
      () => Buffer.from(safeJson({ keyspace: pick(r, ['default', 'system', 'nope']), primaryRangeOnly: chance(r, 0.5), parallel: r.int(100) - 10, startToken: String(r.nextUint32()), endToken: wildValue(r) })),
      () => Buffer.alloc(pick(r, [1_048_577, 100_000, 0])),
      () => Buffer.from('{"replication":'),
    ])();
  }
  return { method, path, headers, body };
}

/** A line of bytes to the port that is not HTTP at all, or HTTP that breaks in its first line or headers. */
export function rawHttp(r: SeededRandom): Buffer {
  return pick(r, [
    () => Buffer.from(r.bytes(1 + r.int(256))),
    () => Buffer.from(`GET /${'a'.repeat(r.int(100_000))} HTTP/1.1\r\nhost: x\r\n\r\n`),
    () => Buffer.from(`PUT /v1/kv/default/k HTTP/1.1\r\ncontent-length: ${pick(r, ['-1', '99999999999', 'x', '10, 20'])}\r\n\r\nabc`),
    () => Buffer.from(`GET /health HTTP/1.1\r\n${'x-h: y\r\n'.repeat(2_000)}\r\n`),
    () => Buffer.from('GET /client HTTP/1.1\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: nope\r\n\r\n'),
    () => Buffer.from('GET /peer HTTP/1.1\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-version: 8\r\n\r\n'),
  ])();
}
