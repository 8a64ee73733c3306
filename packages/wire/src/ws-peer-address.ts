import { isIP } from 'node:net';
import type { NodeId } from '@chorus/core';

/** The WebSocket path of peer traffic on a node's port. */
export const PEER_PATH = '/peer';

/** `host:port` → the peer's `/peer` URL; undefined for anything that is not an address. */
export function peerUrl(peer: NodeId): string | undefined {
  const colon = peer.lastIndexOf(':');
  if (colon <= 0) return undefined;
  const host = peer.slice(0, colon);
  const port = Number(peer.slice(colon + 1));
  if (!Number.isInteger(port) || port < 1 || port > 65_535) return undefined;
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (isIP(bare) === 6 && !host.startsWith('[')) return undefined;
  return `ws://${host}:${port}${PEER_PATH}`;
}

export function hostOf(node: NodeId): { host: string; port: number } | undefined {
  const colon = node.lastIndexOf(':');
  if (colon <= 0) return undefined;
  const raw = node.slice(0, colon);
  const host = raw.startsWith('[') && raw.endsWith(']') ? raw.slice(1, -1) : raw;
  const port = Number(node.slice(colon + 1));
  return Number.isInteger(port) && port >= 0 && port <= 65_535 ? { host, port } : undefined;
}

export function defaultLocalAddress(node: NodeId): string | undefined {
  const host = hostOf(node)?.host;
  if (host === undefined || isIP(host) === 0 || host === '0.0.0.0' || host === '::') return undefined;
  return host;
}
