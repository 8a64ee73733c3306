import { type Codec, type Envelope, checkEnvelope, isClockStamp } from '@chorus/actors';
import { LIMITS } from '@chorus/model';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import type { TObject } from '@sinclair/typebox';
import { Packr } from 'msgpackr';
import { FrameRejected } from './errors.js';
import { AREA_ACTORS, type KindSpec, MESSAGE_KINDS } from './kinds.js';

/** First element of a positional envelope: a message to an actor. */
const POSITIONAL_MSG = 0;
/** First element of a positional envelope: the answer to an ask. */
const POSITIONAL_OK = 1;

/** Largest frame accepted, before any decoding. Large enough for a repair stream batch, small enough to bound memory per peer. */
export const MAX_FRAME_BYTES = LIMITS.maxFrameBytes;

export interface WireCodecOptions {
  maxFrameBytes?: number;
  /** The kinds this codec speaks; the full table by default. */
  kinds?: Record<string, KindSpec>;
}

interface CompiledKind {
  name: string;
  id: number;
  /** Its schema's fields, in the schema's order: the order of a positional body. */
  fields: readonly string[];
  check: TypeCheck<TObject>;
  /** The kind of its reply; null for a kind that is never asked. */
  reply: string | null;
}

/**
 * The actors' codec for traffic between nodes: msgpack without record
 * structures learned on the fly, kinds sent by number, and every message
 * checked against its kind's schema on the way in. Anything that is not
 * exactly right throws FrameRejected, which the runtime logs and counts.
 *
 * An envelope goes out in one of two formats, and this codec reads both:
 * - as a map of named fields, which every build reads;
 * - positional, to a peer whose handshake said it reads them: the envelope
 *   is an array (`[0, to, replyId, replyRun, kind, body, c?]` for a message,
 *   `[1, id, run, kind, body, c?]` for an answer) and the body an array of
 *   the kind's fields in its schema's order, trailing absent ones left off.
 *   Nested objects stay maps. No field name is written or read: a write's
 *   traffic between peers is about a quarter smaller, a read's nearly half.
 *   The order of a kind's fields is therefore part of the protocol: a new
 *   field goes at the end of its schema, optional, as a map would need it.
 *
 * Every envelope may carry `c`, the sender's hybrid-clock reading in
 * microseconds (one integer: 11 bytes with its key). It is optional both
 * ways, and a peer of an earlier build skips the key, so it needs no new
 * protocol version. A stamp that is not a non-negative integer a double holds
 * exactly is a bad frame; whether a good-looking one is believed is the
 * receiving clock's decision (max_clock_skew), not the codec's.
 */
export function wireCodec(options: WireCodecOptions = {}): Codec {
  const maxFrameBytes = options.maxFrameBytes ?? MAX_FRAME_BYTES;
  const kinds = options.kinds ?? MESSAGE_KINDS;
  const byName = new Map<string, CompiledKind>();
  const byId = new Map<number, CompiledKind>();
  for (const [name, spec] of Object.entries(kinds)) {
    if (byId.has(spec.id)) throw new Error(`message kinds ${byId.get(spec.id)!.name} and ${name} share id ${spec.id}`);
    const compiled = { name, id: spec.id, fields: Object.keys(spec.schema.properties), check: TypeCompiler.Compile(spec.schema), reply: spec.reply ?? null };
    byName.set(name, compiled);
    byId.set(spec.id, compiled);
  }
  const packr = new Packr({ useRecords: false, int64AsType: 'bigint', largeBigIntToFloat: false, mapsAsObjects: true });
  // Kinds that only ever answer an ask: sent to an actor as a message, they would reach a handler that never expects them.
  const replyKinds = new Set([...byName.values()].map((k) => k.reply).filter((r): r is string => r !== null));

  const typeOf = (message: unknown): string | undefined => {
    const type = typeof message === 'object' && message !== null ? (message as { type?: unknown }).type : undefined;
    return typeof type === 'string' ? type : undefined;
  };

  /** The message's kind; throws for a message no kind names. */
  function kindOfMessage(message: unknown): CompiledKind {
    const type = typeOf(message);
    const kind = type === undefined ? undefined : byName.get(type);
    if (!kind) throw new FrameRejected('unencodable', typeof message === 'object' && message !== null ? `no message kind named ${String(type)}` : 'a message must be an object with a type');
    return kind;
  }

  /** The message's fields as its kind lists them, trailing absent ones left off (as a map leaves them out). */
  function positionalBodyOf(kind: CompiledKind, message: unknown): unknown[] {
    const fields = kind.fields;
    let length = fields.length;
    while (length > 0 && (message as Record<string, unknown>)[fields[length - 1]!] === undefined) length--;
    const body = new Array<unknown>(length);
    for (let i = 0; i < length; i++) body[i] = (message as Record<string, unknown>)[fields[i]!];
    return body;
  }

  /** The fields a message carries on the wire: all but its type (sent as the kind's number) and its reply address (sent in the envelope). */
  function bodyOf(message: unknown): Record<string, unknown> {
    const body: Record<string, unknown> = {};
    for (const key in message as Record<string, unknown>) {
      if (key !== 'type' && key !== 'replyTo') body[key] = (message as Record<string, unknown>)[key];
    }
    return body;
  }

  function messageOf(k: unknown, b: unknown, positional: boolean): Record<string, unknown> {
    const kind = typeof k === 'number' ? byId.get(k) : undefined;
    if (!kind) throw new FrameRejected('unknown-kind', `unknown message kind ${String(k)}`);
    if (positional) {
      if (!Array.isArray(b) || b.length > kind.fields.length) {
        throw new FrameRejected('invalid-fields', `${kind.name}: a positional body is an array of at most ${kind.fields.length} fields`, { kind: kind.name });
      }
      const named: Record<string, unknown> = {};
      for (let i = 0; i < b.length; i++) if (b[i] !== undefined) named[kind.fields[i]!] = b[i];
      b = named;
    }
    if (!kind.check.Check(b)) {
      const first = kind.check.Errors(b).First();
      throw new FrameRejected('invalid-fields', `${kind.name}: ${first ? `${first.path || '/'} ${first.message}` : 'does not match its schema'}`, { kind: kind.name });
    }
    // The decoded map is this frame's own: it becomes the message, no copy. Its schema has no `type` field, so nothing is overwritten.
    const message = b as Record<string, unknown>;
    message.type = kind.name;
    return message;
  }

  function checkStamp(c: unknown): void {
    if (c !== undefined && !isClockStamp(c)) {
      throw new FrameRejected('bad-clock', `clock stamp ${typeof c === 'number' || typeof c === 'bigint' ? String(c) : typeof c} is not a non-negative integer of microseconds`);
    }
  }

  function messageEnvelope(to: unknown, replyTo: unknown, k: unknown, b: unknown, c: unknown, positional: boolean): Envelope {
    checkStamp(c);
    const address = replyTo as { id?: unknown; run?: unknown } | undefined;
    if (address !== undefined && !(typeof address === 'object' && address !== null && Number.isSafeInteger(address.id) && Number.isSafeInteger(address.run))) {
      throw new FrameRejected('not-an-envelope', 'bad reply address');
    }
    const msg = messageOf(k, b, positional);
    const type = msg.type as string;
    const actor = AREA_ACTORS[type.slice(0, type.indexOf('.'))];
    if (actor !== undefined && to !== actor) throw new FrameRejected('wrong-actor', `${type} goes to ${actor}, not ${String(to).slice(0, 64)}`, { kind: type });
    if (replyKinds.has(type)) throw new FrameRejected('not-a-request', `${type} only answers an ask`, { kind: type });
    // Its handler answers it: without an address the answer has nowhere to go, and the handler nothing to answer.
    if (address === undefined && byName.get(type)!.reply !== null) throw new FrameRejected('not-a-request', `${type} is asked, but came without a reply address`, { kind: type });
    // The reply address's node is filled in by the runtime from the authenticated peer, never taken from the frame.
    const r = address && { node: '', id: address.id as number, run: address.run as number };
    return checkEnvelope(c === undefined ? { t: 'msg', to, msg, r } : { t: 'msg', to, msg, r, c });
  }

  function replyEnvelope(id: unknown, run: unknown, k: unknown, b: unknown, c: unknown, positional: boolean): Envelope {
    checkStamp(c);
    const v = messageOf(k, b, positional);
    return checkEnvelope(c === undefined ? { t: 'ok', id, run, v } : { t: 'ok', id, run, v, c });
  }

  return {
    // The runtime fails an ask whose reply is not of the kind this table names for it.
    replyKindOf(request: unknown): string | null | undefined {
      const type = typeOf(request);
      const kind = type === undefined ? undefined : byName.get(type);
      return kind ? kind.reply : undefined;
    },
    kindOf: typeOf,
    encode(envelope: Envelope, positional = false): Uint8Array {
      // Each envelope is one literal of a fixed shape per kind of envelope; `c` is left out, not undefined, when absent.
      switch (envelope.t) {
        case 'msg': {
          const kind = kindOfMessage(envelope.msg);
          if (positional) {
            const frame = [POSITIONAL_MSG, envelope.to, envelope.r?.id ?? null, envelope.r?.run ?? null, kind.id, positionalBodyOf(kind, envelope.msg)];
            if (envelope.c !== undefined) frame.push(envelope.c);
            return packr.pack(frame);
          }
          const r = envelope.r === undefined ? undefined : { id: envelope.r.id, run: envelope.r.run };
          const b = bodyOf(envelope.msg);
          return packr.pack(envelope.c === undefined ? { t: 'msg', to: envelope.to, r, k: kind.id, b } : { t: 'msg', to: envelope.to, r, k: kind.id, b, c: envelope.c });
        }
        case 'ok': {
          const kind = kindOfMessage(envelope.v);
          if (positional) {
            const frame = [POSITIONAL_OK, envelope.id, envelope.run, kind.id, positionalBodyOf(kind, envelope.v)];
            if (envelope.c !== undefined) frame.push(envelope.c);
            return packr.pack(frame);
          }
          const b = bodyOf(envelope.v);
          return packr.pack(envelope.c === undefined ? { t: 'ok', id: envelope.id, run: envelope.run, k: kind.id, b } : { t: 'ok', id: envelope.id, run: envelope.run, k: kind.id, b, c: envelope.c });
        }
        case 'err':
          // Rare, and read by every build as a map.
          return packr.pack(envelope);
      }
    },
    decode(frame: Uint8Array): Envelope {
      if (frame.byteLength > maxFrameBytes) throw new FrameRejected('too-large', `${frame.byteLength} bytes is over the ${maxFrameBytes}-byte limit`, { bytes: frame.byteLength });
      let raw: unknown;
      try {
        raw = packr.unpack(frame);
      } catch (error) {
        // Includes RangeError from hostile nesting depth: msgpackr decodes recursively.
        throw new FrameRejected('undecodable', error instanceof Error ? error.message : String(error));
      }
      try {
        if (Array.isArray(raw)) {
          const [tag] = raw as unknown[];
          if (tag === POSITIONAL_MSG && (raw.length === 6 || raw.length === 7)) {
            const [, to, id, run, k, b, c] = raw as unknown[];
            return messageEnvelope(to, id === null && run === null ? undefined : { id, run }, k, b, c, true);
          }
          if (tag === POSITIONAL_OK && (raw.length === 5 || raw.length === 6)) {
            const [, id, run, k, b, c] = raw as unknown[];
            return replyEnvelope(id, run, k, b, c, true);
          }
          throw new FrameRejected('not-an-envelope', 'not a positional envelope');
        }
        if (typeof raw !== 'object' || raw === null) throw new FrameRejected('not-an-envelope', 'not a map');
        const r = raw as Record<string, unknown>;
        if (r.t === 'msg') return messageEnvelope(r.to, r.r === null ? undefined : r.r, r.k, r.b, r.c, false);
        if (r.t === 'ok') return replyEnvelope(r.id, r.run, r.k, r.b, r.c, false);
        checkStamp(r.c);
        return checkEnvelope(raw);
      } catch (error) {
        if (error instanceof FrameRejected) throw error;
        throw new FrameRejected('not-an-envelope', error instanceof Error ? error.message : String(error));
      }
    },
  };
}
