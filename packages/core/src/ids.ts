/**
 * Addresses and identities. They are branded strings/bigints so that a node
 * name is never passed where a host id is expected, yet they stay plain data
 * that encodes on the wire without help.
 */
export type NodeId = string & { readonly __brand: 'NodeId' };
export type HostId = string & { readonly __brand: 'HostId' };
/** A Murmur3 token: a signed 64-bit integer. */
export type Token = bigint & { readonly __brand: 'Token' };

export const MIN_TOKEN = -(2n ** 63n) as Token;
export const MAX_TOKEN = (2n ** 63n - 1n) as Token;

const NODE_ID = /^[A-Za-z0-9._:\-[\]]{1,128}$/;

export function nodeId(value: string): NodeId {
  if (!NODE_ID.test(value)) throw new TypeError(`invalid node id ${JSON.stringify(value)}`);
  return value as NodeId;
}

const HOST_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function hostId(value: string): HostId {
  if (!HOST_ID.test(value)) throw new TypeError(`invalid host id ${JSON.stringify(value)}`);
  return value as HostId;
}

export function token(value: bigint | string | number): Token {
  const t = BigInt(value);
  if (t < MIN_TOKEN || t > MAX_TOKEN) throw new RangeError(`token ${t} is outside the signed 64-bit range`);
  return t as Token;
}
