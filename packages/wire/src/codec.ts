import { type Codec, type Envelope, checkEnvelope, isClockStamp } from '@chorus/actors';
import { LIMITS } from '@chorus/model';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import type { TObject } from '@sinclair/typebox';
import { Packr } from 'msgpackr';
import { FrameRejected } from './errors.js';
import { AREA_ACTORS, type KindSpec, MESSAGE_KINDS } from './kinds.js';

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
  check: TypeCheck<TObject>;
  /** The kind of its reply; null for a kind that is never asked. */
  reply: string | null;
}

/**
 * The actors' codec for traffic between nodes: msgpack with plain maps (no
 * record structures learned on the fly), kinds sent by number, and every
 * message checked against its kind's schema on the way in. Anything that is
 * not exactly right throws FrameRejected, which the runtime logs and counts.
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
    const compiled = { name, id: spec.id, check: TypeCompiler.Compile(spec.schema), reply: spec.reply ?? null };
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

  /** The kind's number; throws for a message no kind names. */
  function kindIdOf(message: unknown): number {
    const type = typeOf(message);
    const kind = type === undefined ? undefined : byName.get(type);
    if (!kind) throw new FrameRejected('unencodable', typeof message === 'object' && message !== null ? `no message kind named ${String(type)}` : 'a message must be an object with a type');
    return kind.id;
  }

  /** The fields a message carries on the wire: all but its type (sent as the kind's number) and its reply address (sent in the envelope). */
  function bodyOf(message: unknown): Record<string, unknown> {
    const body: Record<string, unknown> = {};
    for (const key in message as Record<string, unknown>) {
      if (key !== 'type' && key !== 'replyTo') body[key] = (message as Record<string, unknown>)[key];
    }
    return body;
  }

  function messageOf(k: unknown, b: unknown): Record<string, unknown> {
    const kind = typeof k === 'number' ? byId.get(k) : undefined;
    if (!kind) throw new FrameRejected('unknown-kind', `unknown message kind ${String(k)}`);
    if (!kind.check.Check(b)) {
      const first = kind.check.Errors(b).First();
      throw new FrameRejected('invalid-fields', `${kind.name}: ${first ? `${first.path || '/'} ${first.message}` : 'does not match its schema'}`, { kind: kind.name });
    }
    // The decoded map is this frame's own: it becomes the message, no copy. Its schema has no `type` field, so nothing is overwritten.
    const message = b as Record<string, unknown>;
    message.type = kind.name;
    return message;
  }

  return {
    // The runtime fails an ask whose reply is not of the kind this table names for it.
    replyKindOf(request: unknown): string | null | undefined {
      const type = typeOf(request);
      const kind = type === undefined ? undefined : byName.get(type);
      return kind ? kind.reply : undefined;
    },
    kindOf: typeOf,
    encode(envelope: Envelope): Uint8Array {
      // Each envelope is one object literal of a fixed shape per kind of envelope; `c` is left out, not undefined, when absent.
      switch (envelope.t) {
        case 'msg': {
          const r = envelope.r === undefined ? undefined : { id: envelope.r.id, run: envelope.r.run };
          const k = kindIdOf(envelope.msg);
          const b = bodyOf(envelope.msg);
          return packr.pack(envelope.c === undefined ? { t: 'msg', to: envelope.to, r, k, b } : { t: 'msg', to: envelope.to, r, k, b, c: envelope.c });
        }
        case 'ok': {
          const k = kindIdOf(envelope.v);
          const b = bodyOf(envelope.v);
          return packr.pack(envelope.c === undefined ? { t: 'ok', id: envelope.id, run: envelope.run, k, b } : { t: 'ok', id: envelope.id, run: envelope.run, k, b, c: envelope.c });
        }
        case 'err':
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
      if (typeof raw !== 'object' || raw === null) throw new FrameRejected('not-an-envelope', 'not a map');
      const r = raw as Record<string, unknown>;
      if (r.c !== undefined && !isClockStamp(r.c)) {
        throw new FrameRejected('bad-clock', `clock stamp ${typeof r.c === 'number' || typeof r.c === 'bigint' ? String(r.c) : typeof r.c} is not a non-negative integer of microseconds`);
      }
      try {
        if (r.t === 'msg') {
          const replyTo = r.r === undefined || r.r === null ? undefined : r.r;
          const address = replyTo as { id?: unknown; run?: unknown } | undefined;
          if (address !== undefined && !(typeof address === 'object' && Number.isSafeInteger(address.id) && Number.isSafeInteger(address.run))) {
            throw new FrameRejected('not-an-envelope', 'bad reply address');
          }
          const msg = messageOf(r.k, r.b);
          const type = msg.type as string;
          const actor = AREA_ACTORS[type.slice(0, type.indexOf('.'))];
          if (actor !== undefined && r.to !== actor) throw new FrameRejected('wrong-actor', `${type} goes to ${actor}, not ${String(r.to).slice(0, 64)}`, { kind: type });
          if (replyKinds.has(msg.type as string)) throw new FrameRejected('not-a-request', `${String(msg.type)} only answers an ask`, { kind: msg.type });
          // Its handler answers it: without an address the answer has nowhere to go, and the handler nothing to answer.
          if (address === undefined && byName.get(msg.type as string)!.reply !== null) throw new FrameRejected('not-a-request', `${String(msg.type)} is asked, but came without a reply address`, { kind: msg.type });
          // The reply address's node is filled in by the runtime from the authenticated peer, never taken from the frame.
          const replyAddress = address && { node: '', id: address.id, run: address.run };
          return checkEnvelope(r.c === undefined ? { t: 'msg', to: r.to, msg, r: replyAddress } : { t: 'msg', to: r.to, msg, r: replyAddress, c: r.c });
        }
        if (r.t === 'ok') {
          const v = messageOf(r.k, r.b);
          return checkEnvelope(r.c === undefined ? { t: 'ok', id: r.id, run: r.run, v } : { t: 'ok', id: r.id, run: r.run, v, c: r.c });
        }
        return checkEnvelope(raw);
      } catch (error) {
        if (error instanceof FrameRejected) throw error;
        throw new FrameRejected('not-an-envelope', error instanceof Error ? error.message : String(error));
      }
    },
  };
}
