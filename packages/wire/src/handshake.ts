import { createHmac, timingSafeEqual } from 'node:crypto';
import { type NodeId, type Random, nodeId } from '@chorus/core';
import { Packr } from 'msgpackr';
import { HandshakeRefused, type HandshakeFailure } from './errors.js';

/**
 * The peer handshake: four small msgpack maps exchanged before a connection
 * carries any frame.
 *
 *   client → server  hello      { t, v, cluster, node, to, nonce }
 *   server → client  challenge  { t, v, cluster, node, nonce, positional, kinds }
 *   client → server  auth       { t, proof }   HMAC(secret, "client" transcript)
 *   server → client  ready      { t, proof }   HMAC(secret, "server" transcript)
 *
 * The client proves first, so a stranger who connects learns nothing computed
 * with the secret. Each proof covers both nonces, the cluster name and both
 * node ids, under a label per role, so neither a proof nor a whole
 * conversation can be replayed or reflected. The secret never crosses the wire.
 *
 * `positional: true` in the challenge says the server reads positional frames
 * (see the wire codec); a build before them leaves it out and reads maps
 * only. Only the dialing side sends frames on a connection, so the server's
 * word is the one that counts. It is not part of the proofs, which earlier
 * builds compute without it: whoever could change it in flight could as well
 * drop the connection.
 *
 * `kinds` in the challenge lists the message kinds the server reads that
 * came after its protocol version (`LATER_KINDS`): a dialing side sends such
 * a kind only to a peer that listed it, and a server of an earlier build
 * lists none. It is outside the proofs for the same reason.
 */

/** Message kinds added since PEER_PROTOCOL_VERSION 2, which a peer reads only if its challenge lists them. */
export const LATER_KINDS: readonly string[] = ['replica.batch'];
/** Most entries of a challenge's `kinds` this side takes; longer lists are ignored whole. */
const MAX_LATER_KINDS = 64;

/**
 * Bumped when the handshake, the batch format or the envelope changes
 * incompatibly. 2: reply addresses and replies carry the asking system's run.
 */
export const PEER_PROTOCOL_VERSION = 2;
/** Any single handshake message above this is refused before it is decoded. */
export const HANDSHAKE_MAX_BYTES = 4096;
export const NONCE_BYTES = 32;
const PROOF_BYTES = 32;
const CLUSTER_NAME_MAX = 128;

/** WebSocket close codes (private range 4000–4999) that tell the other side why. */
export const PEER_CLOSE_CODES = {
  'protocol version': 4001,
  'cluster name mismatch': 4002,
  'bad secret': 4003,
  'node id mismatch': 4004,
  'malformed handshake': 4005,
  'handshake timeout': 4006,
  'too many bad frames': 4007,
  replaced: 4008,
} as const satisfies Record<string, number>;

export type PeerCloseReason = keyof typeof PEER_CLOSE_CODES;

const HANDSHAKE_FAILURES = new Set<string>(['protocol version', 'cluster name mismatch', 'bad secret', 'node id mismatch', 'malformed handshake', 'handshake timeout']);

/** The handshake failure a close code announces, if it announces one. */
export function handshakeFailureOf(code: number): HandshakeFailure | undefined {
  for (const [reason, c] of Object.entries(PEER_CLOSE_CODES)) if (c === code && HANDSHAKE_FAILURES.has(reason)) return reason as HandshakeFailure;
  return undefined;
}

export interface HandshakeIdentity {
  clusterName: string;
  secret: Uint8Array;
  localNode: NodeId;
  random: Random;
}

const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

function encode(message: Record<string, unknown>): Uint8Array {
  return packr.pack(message);
}

function malformed(detail: string): HandshakeRefused {
  return new HandshakeRefused('malformed handshake', detail);
}

function decodeMap(bytes: Uint8Array, expectedType: string): Record<string, unknown> {
  if (bytes.byteLength > HANDSHAKE_MAX_BYTES) throw malformed(`${bytes.byteLength}-byte handshake message is over the ${HANDSHAKE_MAX_BYTES}-byte limit`);
  let raw: unknown;
  try {
    raw = packr.unpack(bytes);
  } catch (error) {
    throw malformed(`undecodable: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw malformed('not a map');
  const map = raw as Record<string, unknown>;
  if (map.t !== expectedType) throw malformed(`expected ${expectedType}, got ${typeof map.t === 'string' ? map.t.slice(0, 32) : typeof map.t}`);
  return map;
}

function versionOf(map: Record<string, unknown>): number {
  if (!Number.isSafeInteger(map.v)) throw malformed('protocol version is not an integer');
  if (map.v !== PEER_PROTOCOL_VERSION) throw new HandshakeRefused('protocol version', `peer speaks version ${String(map.v)}, this node ${PEER_PROTOCOL_VERSION}`);
  return map.v as number;
}

/** The later kinds a challenge lists; anything but a short list of short strings counts as none. */
function laterKindsOf(kinds: unknown): ReadonlySet<string> {
  if (!Array.isArray(kinds) || kinds.length > MAX_LATER_KINDS || !kinds.every((k) => typeof k === 'string' && k.length <= 64)) return new Set();
  return new Set(kinds as string[]);
}

function clusterOf(map: Record<string, unknown>, expected: string): string {
  const cluster = map.cluster;
  if (typeof cluster !== 'string' || cluster.length === 0 || cluster.length > CLUSTER_NAME_MAX) throw malformed('cluster name missing or too long');
  if (cluster !== expected) throw new HandshakeRefused('cluster name mismatch', `peer is in cluster ${JSON.stringify(cluster)}, this node in ${JSON.stringify(expected)}`);
  return cluster;
}

function nodeOf(map: Record<string, unknown>, field: string): NodeId {
  const value = map[field];
  if (typeof value !== 'string') throw malformed(`${field} is not a node id`);
  try {
    return nodeId(value);
  } catch {
    throw malformed(`${field} is not a valid node id`);
  }
}

function claimedNode(value: unknown): NodeId | undefined {
  try {
    return typeof value === 'string' ? nodeId(value) : undefined;
  } catch {
    return undefined;
  }
}

function bytesOf(map: Record<string, unknown>, field: string, length: number): Uint8Array {
  const value = map[field];
  if (!(value instanceof Uint8Array) || value.byteLength !== length) throw malformed(`${field} must be ${length} bytes`);
  return value;
}

/** Length-prefixed fields, so no two different transcripts serialize to the same bytes. */
function proof(secret: Uint8Array, role: 'client' | 'server', cluster: string, client: NodeId, server: NodeId, clientNonce: Uint8Array, serverNonce: Uint8Array): Buffer {
  const hmac = createHmac('sha256', secret);
  for (const part of [`chorus-peer-${role}`, String(PEER_PROTOCOL_VERSION), cluster, client, server]) {
    const bytes = Buffer.from(part, 'utf8');
    hmac.update(lengthPrefix(bytes.byteLength)).update(bytes);
  }
  for (const nonce of [clientNonce, serverNonce]) hmac.update(lengthPrefix(nonce.byteLength)).update(nonce);
  return hmac.digest();
}

function lengthPrefix(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function sameProof(expected: Buffer, received: Uint8Array): boolean {
  return received.byteLength === expected.byteLength && timingSafeEqual(expected, received);
}

export type HandshakeStep =
  | { reply?: Uint8Array; done: false }
  /** `positionalFrames`: the server reads positional frames (told to the dialing side only, which sends them). */
  | { reply?: Uint8Array; done: true; peer: NodeId; positionalFrames?: boolean; laterKinds?: ReadonlySet<string> };

/** The dialing side. `hello()` opens; `receive` takes each server message and throws HandshakeRefused when the server is not a peer. */
export class ClientHandshake {
  private readonly nonce: Uint8Array;
  private serverNonce: Uint8Array | undefined;
  private serverReadsPositional = false;
  private serverLaterKinds: ReadonlySet<string> = new Set();
  private stage: 'hello' | 'challenge' | 'ready' | 'done' = 'hello';

  constructor(private readonly me: HandshakeIdentity, private readonly peer: NodeId) {
    this.nonce = me.random.bytes(NONCE_BYTES);
  }

  hello(): Uint8Array {
    this.stage = 'challenge';
    return encode({ t: 'hello', v: PEER_PROTOCOL_VERSION, cluster: this.me.clusterName, node: this.me.localNode, to: this.peer, nonce: this.nonce });
  }

  receive(bytes: Uint8Array): HandshakeStep {
    if (this.stage === 'challenge') {
      const map = decodeMap(bytes, 'challenge');
      versionOf(map);
      clusterOf(map, this.me.clusterName);
      const server = nodeOf(map, 'node');
      if (server !== this.peer) throw new HandshakeRefused('node id mismatch', `dialed ${this.peer} but it calls itself ${server}`);
      this.serverNonce = bytesOf(map, 'nonce', NONCE_BYTES);
      this.serverReadsPositional = map.positional === true;
      this.serverLaterKinds = laterKindsOf(map.kinds);
      this.stage = 'ready';
      return { done: false, reply: encode({ t: 'auth', proof: this.proof('client') }) };
    }
    if (this.stage === 'ready') {
      const map = decodeMap(bytes, 'ready');
      if (!sameProof(this.proof('server'), bytesOf(map, 'proof', PROOF_BYTES))) throw new HandshakeRefused('bad secret', 'the server could not prove it knows the cluster secret');
      this.stage = 'done';
      return { done: true, peer: this.peer, positionalFrames: this.serverReadsPositional, laterKinds: this.serverLaterKinds };
    }
    throw malformed(`unexpected message in stage ${this.stage}`);
  }

  private proof(role: 'client' | 'server'): Buffer {
    return proof(this.me.secret, role, this.me.clusterName, this.me.localNode, this.peer, this.nonce, this.serverNonce!);
  }
}

/** The accepting side: `receive` answers each client message, and names the authenticated peer when done. */
export class ServerHandshake {
  private readonly nonce: Uint8Array;
  private client: NodeId | undefined;
  private clientNonce: Uint8Array | undefined;
  private stage: 'hello' | 'auth' | 'done' = 'hello';

  constructor(private readonly me: HandshakeIdentity) {
    this.nonce = me.random.bytes(NONCE_BYTES);
  }

  /** The node id the client claimed, authenticated or not: for log lines only. */
  get claimedPeer(): NodeId | undefined {
    return this.client;
  }

  receive(bytes: Uint8Array): HandshakeStep {
    if (this.stage === 'hello') {
      const map = decodeMap(bytes, 'hello');
      this.client = claimedNode(map.node);
      versionOf(map);
      this.client = nodeOf(map, 'node');
      clusterOf(map, this.me.clusterName);
      // The secret proves membership, not identity; whatever arrives on a connection is taken as from its peer's id, and this id only this node may use.
      if (this.client === this.me.localNode) throw new HandshakeRefused('node id mismatch', `peer claims this node's own id ${this.me.localNode}`);
      const to = nodeOf(map, 'to');
      if (to !== this.me.localNode) throw new HandshakeRefused('node id mismatch', `peer dialed ${to} but this node is ${this.me.localNode}`);
      this.clientNonce = bytesOf(map, 'nonce', NONCE_BYTES);
      this.stage = 'auth';
      return { done: false, reply: encode({ t: 'challenge', v: PEER_PROTOCOL_VERSION, cluster: this.me.clusterName, node: this.me.localNode, nonce: this.nonce, positional: true, kinds: LATER_KINDS }) };
    }
    if (this.stage === 'auth') {
      const map = decodeMap(bytes, 'auth');
      const client = this.client!;
      const expected = proof(this.me.secret, 'client', this.me.clusterName, client, this.me.localNode, this.clientNonce!, this.nonce);
      if (!sameProof(expected, bytesOf(map, 'proof', PROOF_BYTES))) throw new HandshakeRefused('bad secret', 'the peer could not prove it knows the cluster secret');
      this.stage = 'done';
      const mine = proof(this.me.secret, 'server', this.me.clusterName, client, this.me.localNode, this.clientNonce!, this.nonce);
      return { done: true, peer: client, reply: encode({ t: 'ready', proof: mine }) };
    }
    throw malformed(`unexpected message in stage ${this.stage}`);
  }
}

/** The cluster secret as bytes; an empty secret would authenticate anyone. */
export function secretBytes(secret: string | Uint8Array): Uint8Array {
  const bytes = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : Buffer.from(secret);
  if (bytes.byteLength === 0) throw new TypeError('the cluster secret must not be empty');
  return bytes;
}
