import type { ChorusNode } from '@chorus/node';
import type { WsTransport } from '@chorus/wire';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { ClientApi } from './client-api.js';

export interface Metrics {
  readonly contentType: string;
  render(): Promise<string>;
  readonly registry: Registry;
}

export interface MetricSources {
  node(): ChorusNode | undefined;
  transport?: WsTransport;
  clientApi?: ClientApi;
}

type Labels = Record<string, string>;
type Reading = Array<[Labels, number]>;

/**
 * Prometheus metrics of one node. The components keep their own counters;
 * these read them at scrape time, so the hot paths never touch prom-client.
 */
export function createMetrics(sources: MetricSources): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'chorus_process_' });

  const gauge = (name: string, help: string, labelNames: string[], read: () => Reading | undefined) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      collect(this: Gauge) {
        const reading = read();
        if (!reading) return;
        this.reset();
        for (const [labels, value] of reading) this.set(labels, value);
      },
    });
  // The components' counters only grow (until the process restarts); a scrape adds what grew since the last one.
  const counter = (name: string, help: string, labelNames: string[], read: () => Reading | undefined) => {
    const last = new Map<string, number>();
    return new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect(this: Counter) {
        for (const [labels, value] of read() ?? []) {
          const key = JSON.stringify(labels);
          const grown = value - (last.get(key) ?? 0);
          if (grown > 0) this.inc(labels, grown);
          last.set(key, value);
        }
      },
    });
  };
  const fromNode = (read: (n: ChorusNode) => Reading) => () => {
    const n = sources.node();
    return n ? read(n) : undefined;
  };
  const one = (value: number): Reading => [[{}, value]];

  gauge('chorus_peers', 'Peers this node sees, by state', ['state'], fromNode((n) => [[{ state: 'up' }, n.counters().peersUp], [{ state: 'down' }, n.counters().peersDown]]));
  gauge('chorus_actors', 'Live actors', [], fromNode((n) => one(n.counters().actors)));
  gauge('chorus_pending_asks', 'Asks waiting for a reply', [], fromNode((n) => one(n.counters().pendingAsks)));
  counter('chorus_frames_rejected_total', 'Peer frames dropped at the edge as malformed', [], fromNode((n) => one(n.counters().rejectedFrames)));
  counter('chorus_actor_restarts_total', 'Actor restarts by supervisors', [], fromNode((n) => one(n.counters().restarts)));

  const OPS = ['read', 'write', 'slice'] as const;
  counter('chorus_requests_total', 'Coordinated requests by operation and outcome', ['op', 'outcome'], fromNode((n) => {
    const stats = n.coordinator.stats();
    return OPS.flatMap((op) => (['ok', 'unavailable', 'timeouts', 'failed'] as const).map((outcome): [Labels, number] => [{ op, outcome }, stats[op][outcome]]));
  }));
  gauge('chorus_request_latency_ms', 'Coordinated request latency by operation (recent window)', ['op', 'quantile'], fromNode((n) => {
    const stats = n.coordinator.stats();
    return OPS.flatMap((op) => [[{ op, quantile: '0.5' }, stats[op].latency.p50Ms], [{ op, quantile: '0.99' }, stats[op].latency.p99Ms], [{ op, quantile: '1' }, stats[op].latency.maxMs]] as Reading);
  }));
  gauge('chorus_requests_in_flight', 'Requests this node is coordinating', [], fromNode((n) => one(n.coordinator.stats().inFlight)));
  counter('chorus_speculative_retries_total', 'Reads sent to one more replica because one was slow', [], fromNode((n) => one(n.coordinator.stats().speculativeRetries)));
  counter('chorus_digest_mismatches_total', 'Reads whose replicas disagreed', [], fromNode((n) => one(n.coordinator.stats().digestMismatches)));
  gauge('chorus_peer_clock_skew_ms', "Estimated offset of each peer's clock from this node's", ['peer'], fromNode((n) => Object.entries(n.coordinator.clockSkew()).map(([peer, s]): [Labels, number] => [{ peer }, s.skewMs])));

  counter('chorus_row_cache_requests_total', 'Point reads by row cache result', ['result'], fromNode((n) => [[{ result: 'hit' }, n.counters().rowCache.hits], [{ result: 'miss' }, n.counters().rowCache.misses]]));
  gauge('chorus_row_cache_bytes', 'Estimated bytes held by the row cache', [], fromNode((n) => one(n.counters().rowCache.bytes)));

  // Read through `sources` at scrape time: the transport and the client API are made after the metrics.
  const peer = (read: (t: ReturnType<WsTransport['stats']>) => Reading) => () => {
    const stats = sources.transport?.stats();
    return stats ? read(stats) : undefined;
  };
  counter('chorus_peer_frames_total', 'Peer frames by direction', ['direction'], peer((t) => [[{ direction: 'sent' }, t.framesSent], [{ direction: 'received' }, t.framesReceived], [{ direction: 'dropped' }, t.framesDropped]]));
  counter('chorus_peer_bytes_total', 'Peer bytes by direction', ['direction'], peer((t) => [[{ direction: 'sent' }, t.bytesSent], [{ direction: 'received' }, t.bytesReceived]]));
  counter('chorus_peer_messages_total', 'WebSocket messages to and from peers (frames are coalesced into them)', ['direction'], peer((t) => [[{ direction: 'sent' }, t.messagesSent], [{ direction: 'received' }, t.messagesReceived]]));
  counter('chorus_peer_handshakes_rejected_total', 'Peer connections refused at the handshake (wrong secret, cluster or version)', [], peer((t) => one(t.rejectedHandshakes)));
  counter('chorus_peer_reconnects_total', 'Peer links that came back after being down', [], peer((t) => one(t.reconnects)));
  const client = (read: (c: ReturnType<ClientApi['stats']>) => Reading) => () => {
    const stats = sources.clientApi?.stats();
    return stats ? read(stats) : undefined;
  };
  gauge('chorus_client_connections', 'Open client WebSocket connections', [], client((c) => one(c.connections)));
  counter('chorus_client_requests_total', 'Client protocol requests', [], client((c) => one(c.requests)));
  counter('chorus_client_bad_requests_total', 'Client protocol requests or messages refused as malformed', [], client((c) => one(c.badRequests + c.badFrames)));
  return { registry, contentType: registry.contentType, render: () => registry.metrics() };
}
