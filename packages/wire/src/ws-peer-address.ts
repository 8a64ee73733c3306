import { isIP } from 'node:net';
import type { NodeId } from '@chorus/core';
import ipaddr from 'ipaddr.js';

/** The WebSocket path of peer traffic on a node's port. */
export const PEER_PATH = '/peer';

/** `host:port` → the peer's `/peer` URL (`wss:` with TLS); undefined for anything that is not an address. */
export function peerUrl(peer: NodeId, tls = false): string | undefined {
  const colon = peer.lastIndexOf(':');
  if (colon <= 0) return undefined;
  const host = peer.slice(0, colon);
  const port = Number(peer.slice(colon + 1));
  if (!Number.isInteger(port) || port < 1 || port > 65_535) return undefined;
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (isIP(bare) === 6 && !host.startsWith('[')) return undefined;
  return `${tls ? 'wss' : 'ws'}://${host}:${port}${PEER_PATH}`;
}

export function hostOf(node: NodeId): { host: string; port: number } | undefined {
  const colon = node.lastIndexOf(':');
  if (colon <= 0) return undefined;
  const raw = node.slice(0, colon);
  const host = raw.startsWith('[') && raw.endsWith(']') ? raw.slice(1, -1) : raw;
  const port = Number(node.slice(colon + 1));
  return Number.isInteger(port) && port >= 0 && port <= 65_535 ? { host, port } : undefined;
}

/**
 * What limits on unauthenticated connections count by: an IPv4 address
 * (IPv4-mapped IPv6 included), or the /64 of an IPv6 address, since one IPv6
 * host commonly holds a whole /64.
 */
export function sourceOf(address: string | undefined): string {
  if (address === undefined) return '?';
  try {
    const ip = ipaddr.process(address);
    return ip.kind() === 'ipv4' ? ip.toString() : `${ipaddr.IPv6.networkAddressFromCIDR(`${ip.toString()}/64`).toString()}/64`;
  } catch {
    return address;
  }
}

export function defaultLocalAddress(node: NodeId): string | undefined {
  const host = hostOf(node)?.host;
  if (host === undefined || isIP(host) === 0 || host === '0.0.0.0' || host === '::') return undefined;
  return host;
}
