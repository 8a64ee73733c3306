import type { ChorusNode } from '@chorus/node';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  readonly contentType: string;
  render(): Promise<string>;
  readonly registry: Registry;
}

/** Prometheus metrics of one node, read from the node's counters at scrape time. */
export function createMetrics(node: () => ChorusNode | undefined): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'chorus_process_' });
  const stat = (name: string, help: string, read: (n: ChorusNode) => number, type: 'gauge' | 'counter' = 'gauge') => {
    const Kind = type === 'gauge' ? Gauge : Counter;
    new Kind({
      name,
      help,
      registers: [registry],
      collect(this: Gauge | Counter) {
        const n = node();
        if (!n) return;
        const value = read(n);
        if (this instanceof Gauge) this.set(value);
        else {
          const counter = this as Counter;
          // Counters only go up: add the difference since the last scrape.
          const previous = (counter as unknown as { last?: number }).last ?? 0;
          if (value > previous) counter.inc(value - previous);
          (counter as unknown as { last?: number }).last = value;
        }
      },
    });
  };
  stat('chorus_peers_up', 'Peers this node sees UP', (n) => n.counters().peersUp);
  stat('chorus_peers_down', 'Peers this node sees DOWN', (n) => n.counters().peersDown);
  stat('chorus_actors', 'Live actors', (n) => n.counters().actors);
  stat('chorus_pending_asks', 'Asks waiting for a reply', (n) => n.counters().pendingAsks);
  stat('chorus_frames_rejected_total', 'Peer frames dropped at the edge as malformed', (n) => n.counters().rejectedFrames, 'counter');
  stat('chorus_actor_restarts_total', 'Actor restarts by supervisors', (n) => n.counters().restarts, 'counter');
  return { registry, contentType: registry.contentType, render: () => registry.metrics() };
}
