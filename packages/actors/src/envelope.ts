import { Packr } from 'msgpackr';
import type { NodeId } from '@chorus/core';

/** Where an ask's answer goes: plain data, so it travels inside messages to other nodes. */
export interface ReplyTo<R> {
  readonly node: NodeId;
  readonly id: number;
  /**
   * The run of the asking ActorSystem, drawn when it starts. Ask ids restart
   * at 1 with every process; the run is what keeps a reply owed to a
   * previous run from settling a new ask of the same number.
   */
  readonly run: number;
  /** Never present at run time; carries the reply type for the compiler. */
  readonly __reply?: R;
}

export interface ActorAddress {
  readonly node: NodeId;
  readonly name: string;
}

export interface WireError {
  name: string;
  code: string;
  message: string;
  fields: Record<string, unknown>;
  status: number;
}

/**
 * What the runtime puts on the transport. `c` is the sending node's clock
 * reading (microseconds) when the system has a `MessageClock`: absent from a
 * system without one, and always optional on the way in.
 */
export type Envelope =
  | { t: 'msg'; to: string; msg: unknown; r?: ReplyTo<unknown>; c?: number }
  | { t: 'ok'; id: number; run: number; v: unknown; c?: number }
  | { t: 'err'; id: number; run: number; e: WireError; c?: number };

/** Whether `c` is a clock stamp the runtime may hand to a clock: a non-negative integer that a double holds exactly. */
export function isClockStamp(c: unknown): c is number {
  return typeof c === 'number' && Number.isSafeInteger(c) && c >= 0;
}

/** Turns envelopes into frames and back. `decode` throws on anything that is not a well-formed envelope. */
export interface Codec {
  /** `positional`: the receiver reads the codec's positional format, when it has one (faster to write and read than maps). */
  encode(envelope: Envelope, positional?: boolean): Uint8Array;
  decode(frame: Uint8Array): Envelope;
  /**
   * For a codec that knows its message kinds: the kind a reply to `request`
   * must have, or null when that kind takes no reply at all. Undefined (or
   * no method) leaves replies unchecked.
   */
  replyKindOf?(request: unknown): string | null | undefined;
  /** The kind of a decoded message, when the codec knows kinds. */
  kindOf?(message: unknown): string | undefined;
}

/**
 * msgpack with plain maps only: no record structures learned on the fly,
 * which fall out of step between peers that restart independently.
 */
export function msgpackCodec(): Codec {
  const packr = new Packr({ useRecords: false, int64AsType: 'bigint', largeBigIntToFloat: false, mapsAsObjects: true });
  return {
    encode: (envelope) => packr.pack(envelope),
    decode(frame) {
      const value: unknown = packr.unpack(frame);
      return checkEnvelope(value);
    },
  };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Structural check of the envelope only; the message inside is the receiving actor's (or the wire layer's) to validate. */
export function checkEnvelope(value: unknown): Envelope {
  if (!isRecord(value)) throw new TypeError('frame is not an envelope');
  if (value.c !== undefined && !isClockStamp(value.c)) throw new TypeError('envelope has a bad clock stamp');
  switch (value.t) {
    case 'msg': {
      if (typeof value.to !== 'string' || value.to.length === 0 || value.to.length > 256) throw new TypeError('envelope has a bad recipient');
      if (value.r !== undefined && !isReplyTo(value.r)) throw new TypeError('envelope has a bad reply address');
      return value as Envelope;
    }
    case 'ok':
      if (!Number.isSafeInteger(value.id) || !Number.isSafeInteger(value.run)) throw new TypeError('reply has a bad id or run');
      return value as Envelope;
    case 'err': {
      const e = value.e;
      if (!Number.isSafeInteger(value.id) || !Number.isSafeInteger(value.run) || !isRecord(e) || typeof e.name !== 'string' || typeof e.code !== 'string' || typeof e.message !== 'string' || !isRecord(e.fields) || typeof e.status !== 'number') {
        throw new TypeError('error reply is malformed');
      }
      return value as Envelope;
    }
    default:
      throw new TypeError('unknown envelope kind');
  }
}

function isReplyTo(v: unknown): v is ReplyTo<unknown> {
  return isRecord(v) && typeof v.node === 'string' && Number.isSafeInteger(v.id) && Number.isSafeInteger(v.run);
}
