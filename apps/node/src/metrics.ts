import { performance } from 'node:perf_hooks';
import { type Clock, isChorusError } from '@chorus/core';
import { type ChorusNode, hintsView, stateOf } from '@chorus/node';
import type { WsTransport } from '@chorus/wire';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { ClientApi } from './client-api.js';
import { LatencyHistogram, type LatencySeries } from './latency-histogram.js';
import type { RequestBudget } from './request-budget.js';
import { type RepairJobState, type RepairJobStatus, repairServiceOf } from './repair-api.js';

/** Data requests as the coordinator groups them: a delete is a write, as in Cassandra. */
export type RequestOp = 'read' | 'write' | 'slice';

/**
 * Starts timing one data request when it arrives; the returned function is
 * called once, when the request is answered, with the error it failed with.
 */
export type RequestTimer = (op: RequestOp, consistency: string | undefined) => (error?: unknown) => void;

export interface Metrics {
  readonly contentType: string;
  render(): Promise<string>;
  readonly registry: Registry;
  readonly timeRequest: RequestTimer;
}

export interface MetricSources {
  node(): ChorusNode | undefined;
  transport?: WsTransport;
  clientApi?: ClientApi;
  /** The bytes client requests hold (max_inflight_request_bytes). */
  budget?: RequestBudget;
  /** The node's own clock (its Env's), which dates hints; the system clock when absent. */
  clock?: Pick<Clock, 'nowMicros'>;
}

type Labels = Record<string, string>;
type Reading = Array<[Labels, number]>;

/**
 * 1-2-5 steps from 100 µs to 10 s: a loopback request takes a few hundred
 * microseconds and a timed-out one seconds, and histogram_quantile
 * interpolates within a bucket, so each step must stay within about 2.5×.
 */
export const LATENCY_BUCKETS_SECONDS = [0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10];

// Label values must stay a small fixed set whatever a client sends (DESIGN.md section 4 lists the levels).
const LEVELS = new Set(['ANY', 'ONE', 'TWO', 'THREE', 'QUORUM', 'ALL', 'LOCAL_ONE', 'LOCAL_QUORUM', 'EACH_QUORUM']);
const DEFAULT_LEVEL = 'QUORUM';
const SYSTEM_CLOCK: Pick<Clock, 'nowMicros'> = { nowMicros: () => Date.now() * 1000 };

// Typed loosely on purpose: a repeated query parameter arrives as an array, and the coordinator refuses it as an unknown level.
function levelLabel(consistency: unknown): string {
  if (consistency === undefined) return DEFAULT_LEVEL;
  if (typeof consistency !== 'string') return 'invalid';
  if (LEVELS.has(consistency)) return consistency;
  const upper = consistency.trim().toUpperCase();
  return LEVELS.has(upper) ? upper : 'invalid';
}

/** Errors are named by what an operator does about them; error names stay in the logs and answers. */
function outcomeOf(error: unknown): string {
  const name = typeof error === 'object' && error !== null ? (error as { name?: unknown }).name : undefined;
  if (name === 'Unavailable' || name === 'SessionFloorNotMet') return 'unavailable';
  if (name === 'WriteTimeout' || name === 'ReadTimeout') return 'timeout';
  if (name === 'Overloaded') return 'overloaded';
  const status = isChorusError(error) ? error.httpStatus : (error as { statusCode?: unknown } | undefined)?.statusCode;
  if (name === 'InvalidRequest' || (typeof status === 'number' && status >= 400 && status < 500)) return 'invalid';
  return 'failed';
}

/**
 * Prometheus metrics of one node. Request latencies are observed where
 * requests are answered; everything else comes from the components' own
 * counters, read at scrape time, so their hot paths never touch prom-client.
 */
export function createMetrics(sources: MetricSources): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'chorus_' });
  // prom-client exports these sums of the labelled nodejs_active_* gauges as gauges ending in _total, which the naming guide reserves for counters.
  for (const name of ['chorus_nodejs_active_handles_total', 'chorus_nodejs_active_requests_total', 'chorus_nodejs_active_resources_total']) registry.removeSingleMetric(name);

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

  const latency = new LatencyHistogram(
    'chorus_request_duration_seconds',
    'Time to answer data requests (HTTP and client protocol), by operation, consistency level and outcome',
    LATENCY_BUCKETS_SECONDS,
    registry,
  );
  // Every label is from a short fixed list: maps of its values find a request's series without building a key string per request.
  const latencySeries = new Map<string, Map<string, Map<string, LatencySeries>>>();
  const seriesFor = (op: string, level: string, outcome: string): LatencySeries => {
    let byLevel = latencySeries.get(op);
    if (byLevel === undefined) latencySeries.set(op, (byLevel = new Map()));
    let byOutcome = byLevel.get(level);
    if (byOutcome === undefined) byLevel.set(level, (byOutcome = new Map()));
    let series = byOutcome.get(outcome);
    if (series === undefined) byOutcome.set(outcome, (series = latency.seriesOf(`${op} ${level} ${outcome}`, () => ({ op, consistency: level, outcome }))));
    return series;
  };
  const timeRequest: RequestTimer = (op, consistency) => {
    const started = performance.now();
    return (error) => {
      latency.observe(seriesFor(op, levelLabel(consistency), error === undefined ? 'ok' : outcomeOf(error)), (performance.now() - started) / 1000);
    };
  };

  gauge('chorus_peers', 'Peers this node sees, by state', ['state'], fromNode((n) => [[{ state: 'up' }, n.counters().peersUp], [{ state: 'down' }, n.counters().peersDown]]));
  gauge('chorus_node_state', 'Each node of the cluster as this node sees it: 1 for its current state (UN, DN, UJ, UL, ...)', ['node', 'address', 'state'], fromNode((n) =>
    n.membership().endpoints()
      .filter((e) => e.status !== 'LEFT' && e.status !== 'REMOVED')
      .map((e): [Labels, number] => [{ node: e.name ?? e.node, address: e.node, state: stateOf(e) }, 1]),
  ));
  gauge('chorus_storage_load_bytes', 'Bytes of this node\'s data on disk, as last published to the cluster (LOAD)', [], fromNode((n) => {
    const load = n.membership().endpoints().find((e) => e.isSelf)?.load;
    return load === undefined ? [] : one(load);
  }));
  gauge('chorus_actors', 'Live actors', [], fromNode((n) => one(n.counters().actors)));
  gauge('chorus_pending_asks', 'Asks waiting for a reply', [], fromNode((n) => one(n.counters().pendingAsks)));
  counter('chorus_frames_rejected_total', 'Peer frames dropped at the edge as malformed', [], fromNode((n) => one(n.counters().rejectedFrames)));
  counter('chorus_actor_restarts_total', 'Actor restarts by supervisors', [], fromNode((n) => one(n.counters().restarts)));

  const OPS = ['read', 'write', 'slice'] as const;
  const OUTCOMES = [['ok', 'ok'], ['unavailable', 'unavailable'], ['timeouts', 'timeout'], ['failed', 'failed']] as const;
  counter('chorus_requests_total', 'Requests the coordinator ran, by operation and outcome', ['op', 'outcome'], fromNode((n) => {
    const stats = n.coordinator.stats();
    return OPS.flatMap((op) => OUTCOMES.map(([field, outcome]): [Labels, number] => [{ op, outcome }, stats[op][field]]));
  }));
  gauge('chorus_requests_in_flight', 'Requests this node is coordinating', [], fromNode((n) => one(n.coordinator.stats().inFlight)));
  gauge('chorus_requests_open', 'Requests this node is coordinating, with the writes already answered that still wait for their last replicas (to hint those that miss them)', [], fromNode((n) => one(n.coordinator.stats().open)));
  gauge('chorus_requests_background', 'Writes this node answered that still wait for their last replicas', [], fromNode((n) => one(n.coordinator.stats().background)));
  counter('chorus_writes_held_total', 'Writes answered only once all but one of their replicas answered, because max_background_writes writes were already behind their answers', [], fromNode((n) => one(n.coordinator.stats().heldWrites)));
  counter('chorus_speculative_retries_total', 'Reads sent to one more replica because one was slow', [], fromNode((n) => one(n.coordinator.stats().speculativeRetries)));
  counter('chorus_digest_mismatches_total', 'Reads whose replicas disagreed', [], fromNode((n) => one(n.coordinator.stats().digestMismatches)));
  counter('chorus_read_repair_mismatches_total', 'Reads and slices that found replicas holding an older version among those that answered', [], fromNode((n) => one(n.coordinator.stats().readRepair.mismatches)));
  counter('chorus_read_repair_rows_repaired_total', 'Rows written to stale replicas by read repair (one per row and replica)', [], fromNode((n) => one(n.coordinator.stats().readRepair.rowsRepaired)));
  counter('chorus_read_repair_timeouts_total', 'Reads failed with ReadTimeout because their read repair did not reach the consistency level in time', [], fromNode((n) => one(n.coordinator.stats().readRepair.timeouts)));
  counter('chorus_session_floor_escalations_total', "Session reads and slices whose first answers were older than the session's own write, so every live replica was asked", [], fromNode((n) => one(n.coordinator.stats().sessionFloor.escalations)));
  counter('chorus_session_floor_not_met_total', "Session reads and slices failed with SessionFloorNotMet: no live replica answered with the session's own write", [], fromNode((n) => one(n.coordinator.stats().sessionFloor.notMet)));
  gauge('chorus_peer_clock_skew_seconds', "Estimated offset of each peer's clock from this node's (positive: the peer is ahead)", ['peer'], fromNode((n) => Object.entries(n.coordinator.clockSkew()).map(([peer, s]): [Labels, number] => [{ peer }, s.skewMs / 1000])));
  gauge('chorus_peer_clock_skewed', "1 when the peer's clock is further from this node's than clock_skew_warn (or max_clock_skew), else 0: alert on it", ['peer'], fromNode((n) => Object.entries(n.coordinator.clockSkew()).map(([peer, s]): [Labels, number] => [{ peer }, s.warning || s.flagged ? 1 : 0])));
  gauge('chorus_peer_latency_seconds', "Recent latency of each replica's answers to this coordinator (an average with a half-life of 1 s): the dynamic snitch orders a tier's replicas by it once one is slower than its rank allows (dynamic_snitch_badness_threshold)", ['peer'], fromNode((n) => Object.entries(n.coordinator.stats().peers).map(([peer, p]): [Labels, number] => [{ peer }, p.averageMs / 1000])));
  counter('chorus_peer_timestamps_refused_total', 'Peer timestamps the clock did not adopt because they lay beyond max_clock_skew', [], fromNode((n) => one(n.coordinator.stats().refusedPeerTimestamps)));

  counter('chorus_row_cache_requests_total', 'Point reads by row cache result', ['result'], fromNode((n) => [[{ result: 'hit' }, n.counters().rowCache.hits], [{ result: 'miss' }, n.counters().rowCache.misses]]));
  counter('chorus_row_cache_evictions_total', 'Row cache entries dropped to stay within row_cache_size', [], fromNode((n) => one(n.counters().rowCache.evictions)));
  gauge('chorus_row_cache_entries', 'Rows held by the row cache', [], fromNode((n) => one(n.counters().rowCache.entries)));
  gauge('chorus_row_cache_bytes', 'Estimated bytes held by the row cache', [], fromNode((n) => one(n.counters().rowCache.bytes)));

  const hints = (read: (stats: NonNullable<ReturnType<ChorusNode['hintStats']>>) => Reading) => fromNode((n) => {
    const stats = n.hintStats();
    return stats ? read(stats) : [];
  });
  const hintTargets = (read: (t: ReturnType<typeof hintsView>['targets'][number]) => number | undefined) => fromNode((n) => {
    const handoff = n.hintedHandoff;
    if (!handoff) return [];
    return hintsView(n.membership(), handoff.targets()).targets.flatMap((t): Array<[Labels, number]> => {
      const value = read(t);
      return value === undefined ? [] : [[{ target: t.name, host_id: t.hostId }, value]];
    });
  });
  counter('chorus_hints_stored_total', 'Hints this node stored for replicas that missed a write', [], hints((h) => one(h.stored)));
  counter('chorus_hints_delivered_total', 'Hints replayed to their target and acknowledged', [], hints((h) => one(h.delivered)));
  counter('chorus_hints_replayed_bytes_total', 'Bytes of the hints delivered', [], hints((h) => one(h.replayedBytes)));
  counter('chorus_hint_replay_failures_total', 'Hint replays that failed (the target timed out or went away) and were retried later', [], hints((h) => one(h.deliveryFailures)));
  counter('chorus_hints_dropped_total', 'Hints refused or discarded, by reason: window and size (the target needs a repair), overloaded, unknown (no host id), removed (the host id left), expired (older than gc grace), rejected, corrupt', ['reason'], hints((h) => Object.entries(h.dropped).map(([reason, n]): [Labels, number] => [{ reason }, n])));
  gauge('chorus_hints_pending', 'Hints waiting for each target', ['target', 'host_id'], hintTargets((t) => t.hints));
  gauge('chorus_hints_pending_bytes', 'Bytes of the hints waiting for each target', ['target', 'host_id'], hintTargets((t) => t.bytes));
  // Measured by the clock that dated the hints and judges max_hint_window, so the scraper's clock and its skew never enter.
  const clock = sources.clock ?? SYSTEM_CLOCK;
  gauge('chorus_hints_oldest_age_seconds', "Age of each target's oldest undelivered hint: how far hint delivery to it is behind (0 when none is pending). Past max_hint_window the target gets no more hints", ['target', 'host_id'], hintTargets((t) => (t.oldestMicros === null ? 0 : Math.max(0, clock.nowMicros() - t.oldestMicros) / 1_000_000)));
  gauge('chorus_hints_needs_repair', '1 for each target for which hints were refused (window passed or size cap reached): it needs a repair', ['target', 'host_id'], hintTargets((t) => (t.needsRepair ? 1 : undefined)));

  // Read through `sources` at scrape time: the transport and the client API are made after the metrics.
  const peer = (read: (t: ReturnType<WsTransport['stats']>) => Reading) => () => {
    const stats = sources.transport?.stats();
    return stats ? read(stats) : undefined;
  };
  counter('chorus_peer_frames_total', 'Peer frames by direction', ['direction'], peer((t) => [[{ direction: 'sent' }, t.framesSent], [{ direction: 'received' }, t.framesReceived], [{ direction: 'dropped' }, t.framesDropped]]));
  counter('chorus_peer_bytes_total', 'Peer bytes by direction', ['direction'], peer((t) => [[{ direction: 'sent' }, t.bytesSent], [{ direction: 'received' }, t.bytesReceived]]));
  counter('chorus_peer_messages_total', 'WebSocket messages to and from peers (frames are coalesced into them)', ['direction'], peer((t) => [[{ direction: 'sent' }, t.messagesSent], [{ direction: 'received' }, t.messagesReceived]]));
  gauge('chorus_peer_queued_bytes', 'Bytes waiting to be sent to each peer, queued or in the socket buffer', ['peer'], peer((t) => Object.entries(t.peers).map(([p, s]): [Labels, number] => [{ peer: p }, s.queuedBytes + s.bufferedBytes])));
  counter('chorus_peer_handshakes_rejected_total', 'Peer connections refused at the handshake (wrong secret, cluster or version, or no certificate of the cluster CA)', [], peer((t) => one(t.rejectedHandshakes)));
  counter('chorus_peer_reconnects_total', 'Peer links that came back after being down', [], peer((t) => one(t.reconnects)));
  const client = (read: (c: ReturnType<ClientApi['stats']>) => Reading) => () => {
    const stats = sources.clientApi?.stats();
    return stats ? read(stats) : undefined;
  };
  const repairJobs = fromNode((n) => {
    const jobs = repairServiceOf(n)?.jobs() ?? [];
    return REPAIR_STATES.map((state): [Labels, number] => [{ state }, jobs.filter((j) => j.state === state).length]);
  });
  gauge('chorus_repair_jobs', 'Repair jobs this node runs or keeps in its history, by state', ['state'], repairJobs);
  const repairTotals = repairWorkTotals();
  const repairWork = (field: RepairCount) => fromNode((n) => {
    const service = repairServiceOf(n);
    return service ? one(repairTotals(service.jobs())[field]) : [];
  });
  counter('chorus_repair_rows_compared_total', 'Rows compared by repair jobs this node started', [], repairWork('rowsCompared'));
  counter('chorus_repair_rows_streamed_total', 'Rows streamed between replicas by repair jobs this node started', [], repairWork('rowsStreamed'));
  counter('chorus_repair_bytes_streamed_total', 'Bytes streamed between replicas by repair jobs this node started', [], repairWork('bytesStreamed'));
  counter('chorus_repair_ranges_failed_total', 'Token ranges that repair jobs this node started could not repair (a replica down, a timeout, ...)', [], repairWork('rangesFailed'));

  gauge('chorus_client_connections', 'Open client WebSocket connections', [], client((c) => one(c.connections)));
  counter('chorus_client_requests_total', 'Client protocol requests', [], client((c) => one(c.requests)));
  counter('chorus_client_bad_requests_total', 'Client protocol requests or messages refused as malformed', [], client((c) => one(c.badRequests + c.badFrames)));
  const budget = (read: (b: RequestBudget) => Reading) => () => (sources.budget ? read(sources.budget) : undefined);
  gauge('chorus_inflight_request_bytes', 'Bytes client requests (HTTP and client protocol) hold on this node', [], budget((b) => one(b.held)));
  gauge('chorus_inflight_request_bytes_budget', 'max_inflight_request_bytes: past it client requests are refused with 503 Overloaded', [], budget((b) => one(b.maxBytes)));
  counter('chorus_requests_overloaded_total', 'Client requests refused because the bytes in flight on this node were at max_inflight_request_bytes', ['api'], budget((b) => [[{ api: 'http' }, b.refused.http], [{ api: 'client' }, b.refused.client]]));
  return { registry, contentType: registry.contentType, render: () => registry.metrics(), timeRequest };
}

const REPAIR_STATES: RepairJobState[] = ['running', 'done', 'failed', 'cancelled'];
type RepairCount = 'rowsCompared' | 'rowsStreamed' | 'bytesStreamed' | 'rangesFailed';
const REPAIR_COUNTS: RepairCount[] = ['rowsCompared', 'rowsStreamed', 'bytesStreamed', 'rangesFailed'];

/**
 * Running totals of the work of repair jobs. A job's numbers only grow, but
 * finished jobs leave the service's bounded history: each reading adds what
 * every job it lists grew since it was last seen, so a job's share stays in
 * the totals after it is gone. Only jobs still listed are remembered.
 */
function repairWorkTotals(): (jobs: RepairJobStatus[]) => Readonly<Record<RepairCount, number>> {
  const totals: Record<RepairCount, number> = { rowsCompared: 0, rowsStreamed: 0, bytesStreamed: 0, rangesFailed: 0 };
  let seen = new Map<string, Record<RepairCount, number>>();
  return (jobs) => {
    const next = new Map<string, Record<RepairCount, number>>();
    for (const job of jobs) {
      const last = seen.get(job.id) ?? { rowsCompared: 0, rowsStreamed: 0, bytesStreamed: 0, rangesFailed: 0 };
      const now = { ...last };
      for (const field of REPAIR_COUNTS) {
        const value = Number.isFinite(job[field]) ? job[field] : 0;
        if (value > last[field]) {
          totals[field] += value - last[field];
          now[field] = value;
        }
      }
      next.set(job.id, now);
    }
    seen = next;
    return totals;
  };
}
