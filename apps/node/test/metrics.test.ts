import { ChorusError, InvalidRequest, Overloaded } from '@chorus/core';
import type { ChorusNode } from '@chorus/node';
import { describe, expect, it } from 'vitest';
import { LATENCY_BUCKETS_SECONDS, createMetrics } from '../src/metrics.js';
import { RequestBudget } from '../src/request-budget.js';
import { fakeRepair } from './fake-repair.js';

const requests = { ok: 0, unavailable: 0, timeouts: 0, failed: 0 };

/** A node holding hints for n2 (oldest written at `oldestMicros`), none for n3 but marked as needing a repair. */
function nodeWithHints(oldestMicros: number): ChorusNode {
  const endpoint = (name: string, hostId: string) => ({ node: `127.0.0.1:${name}`, name, hostId, liveness: 'DOWN', status: 'NORMAL', tokens: [], isSelf: false });
  return {
    counters: () => ({ peersUp: 0, peersDown: 2, actors: 1, pendingAsks: 0, rejectedFrames: 0, restarts: 0, rowCache: { hits: 0, misses: 0, evictions: 0, entries: 0, bytes: 0 } }),
    membership: () => ({ endpoints: () => [endpoint('n2', 'host-2'), endpoint('n3', 'host-3')] }),
    coordinator: {
      stats: () => ({ read: requests, write: requests, slice: requests, inFlight: 0, open: 0, background: 0, heldWrites: 0, speculativeRetries: 0, digestMismatches: 0, readRepair: { mismatches: 0, rowsRepaired: 0, timeouts: 0 }, sessionFloor: { escalations: 0, notMet: 0 }, refusedPeerTimestamps: 0, peers: { '127.0.0.1:n2': { averageMs: 12.5, p99Ms: 40, samples: 900 } } }),
      clockSkew: () => ({
        '127.0.0.1:n2': { skewMs: 35, flagged: false, warning: true, samples: 16, method: 'round-trip' },
        '127.0.0.1:n3': { skewMs: -2, flagged: false, warning: false, samples: 16, method: 'round-trip' },
      }),
    },
    hintStats: () => ({ stored: 5, delivered: 2, replayedBytes: 100, deliveryFailures: 0, dropped: { window: 1 }, pendingHints: 3, pendingBytes: 150 }),
    hintedHandoff: {
      targets: () => [
        { hostId: 'host-2', node: '127.0.0.1:n2', hints: 3, bytes: 150, oldestMicros, needsRepair: false },
        { hostId: 'host-3', node: '127.0.0.1:n3', hints: 0, bytes: 0, needsRepair: true },
      ],
    },
  } as unknown as ChorusNode;
}

const countOf = (text: string, labels: string) => Number(new RegExp(`^chorus_request_duration_seconds_count\\{${labels}\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);

describe('node metrics', () => {
  it('times requests into a seconds histogram, with the level as the server reads it and a small fixed set of outcomes', async () => {
    const metrics = createMetrics({ node: () => undefined });
    metrics.timeRequest('write', undefined)();
    metrics.timeRequest('write', 'quorum')();
    metrics.timeRequest('read', ' local_one ')();
    metrics.timeRequest('write', 'sometimes')(new InvalidRequest('unknown consistency level'));
    // ?consistency=ONE&consistency=ALL reaches the route as an array.
    metrics.timeRequest('write', ['ONE', 'ALL'] as unknown as string)(new InvalidRequest('unknown consistency level'));
    metrics.timeRequest('write', 'TWO')(new ChorusError('Unavailable', 'UNAVAILABLE', 'cannot achieve TWO', {}, 503));
    metrics.timeRequest('write', 'ALL')(new ChorusError('WriteTimeout', 'WRITE_TIMEOUT', 'timed out', {}, 504));
    metrics.timeRequest('read', 'ALL')(new ChorusError('ReadTimeout', 'READ_TIMEOUT', 'timed out', {}, 504));
    metrics.timeRequest('slice', 'ONE')(new Overloaded('client connection in-flight requests', 8));
    metrics.timeRequest('slice', 'ONE')({ name: 'Overloaded', message: 'shed' });
    metrics.timeRequest('read', 'ONE')(Object.assign(new Error('too large'), { statusCode: 413 }));
    metrics.timeRequest('read', 'ONE')(new Error('bug'));
    const text = await metrics.render();

    expect(text).toMatch(/^# TYPE chorus_request_duration_seconds histogram$/m);
    expect(countOf(text, 'op="write",consistency="QUORUM",outcome="ok"')).toBe(2);
    expect(countOf(text, 'op="read",consistency="LOCAL_ONE",outcome="ok"')).toBe(1);
    expect(countOf(text, 'op="write",consistency="invalid",outcome="invalid"')).toBe(2);
    expect(countOf(text, 'op="write",consistency="TWO",outcome="unavailable"')).toBe(1);
    expect(countOf(text, 'op="write",consistency="ALL",outcome="timeout"')).toBe(1);
    expect(countOf(text, 'op="read",consistency="ALL",outcome="timeout"')).toBe(1);
    expect(countOf(text, 'op="slice",consistency="ONE",outcome="overloaded"')).toBe(2);
    expect(countOf(text, 'op="read",consistency="ONE",outcome="invalid"')).toBe(1);
    expect(countOf(text, 'op="read",consistency="ONE",outcome="failed"')).toBe(1);
    const les = [...text.matchAll(/^chorus_request_duration_seconds_bucket\{le="([^"]+)",op="write",consistency="QUORUM",outcome="ok"\}/gm)].map((m) => m[1]);
    expect(les).toEqual([...LATENCY_BUCKETS_SECONDS.map(String), '+Inf']);
    expect(LATENCY_BUCKETS_SECONDS[0]).toBe(0.0001);
    expect(LATENCY_BUCKETS_SECONDS.at(-1)).toBe(10);
  });

  it("keeps prom-client's process and Node.js names under the one chorus_ prefix, with no gauge ending in _total", async () => {
    const text = await createMetrics({ node: () => undefined }).render();
    expect(text).toMatch(/^# TYPE chorus_process_cpu_seconds_total counter$/m);
    expect(text).toMatch(/^# TYPE chorus_process_start_time_seconds gauge$/m);
    expect(text).toMatch(/^# TYPE chorus_nodejs_heap_size_used_bytes gauge$/m);
    expect(text).not.toMatch(/chorus_process_process_/);
    expect(text).not.toMatch(/^# TYPE \S+_total (gauge|histogram|summary)$/m);
    expect(text).not.toMatch(/^# TYPE \S*_ms\S* /m);
  });

  it("shows how far hint replay is behind each target, by the node's own clock", async () => {
    let nowMicros = 10_000_000;
    const metrics = createMetrics({ node: () => nodeWithHints(4_000_000), clock: { nowMicros: () => nowMicros } });
    const sample = (text: string, name: string, target: string) => Number(new RegExp(`^${name}\\{target="${target}",host_id="host-\\d"\\} (\\S+)$`, 'm').exec(text)?.[1]);
    let text = await metrics.render();
    expect(text).toMatch(/^# TYPE chorus_hints_oldest_age_seconds gauge$/m);
    expect(sample(text, 'chorus_hints_oldest_age_seconds', 'n2')).toBe(6);
    expect(sample(text, 'chorus_hints_oldest_age_seconds', 'n3')).toBe(0);
    expect(sample(text, 'chorus_hints_pending', 'n2')).toBe(3);
    expect(sample(text, 'chorus_hints_needs_repair', 'n3')).toBe(1);
    nowMicros += 90_000_000;
    text = await metrics.render();
    expect(sample(text, 'chorus_hints_oldest_age_seconds', 'n2')).toBe(96);
  });

  it('counts repair work from the jobs at scrape time, and the counters never go down when finished jobs leave the history', async () => {
    const fake = fakeRepair();
    const node = Object.assign(nodeWithHints(0), { repair: fake.service });
    const metrics = createMetrics({ node: () => node });
    const value = (text: string, sample: string) => Number(new RegExp(`^${sample.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1]);
    const progress = (i: number, fields: Record<string, unknown>) => Object.assign(fake.jobs.find((j) => j.id === `job-${i}`)!, fields);

    let text = await metrics.render();
    expect(text).toMatch(/^# TYPE chorus_repair_jobs gauge$/m);
    for (const state of ['running', 'done', 'failed', 'cancelled']) expect(value(text, `chorus_repair_jobs{state="${state}"}`)).toBe(0);
    for (const name of ['rows_compared', 'rows_streamed', 'bytes_streamed', 'ranges_failed']) expect(text).toMatch(new RegExp(`^# TYPE chorus_repair_${name}_total counter$`, 'm'));

    await fake.service.start({ keyspace: 'a' });
    await fake.service.start({ keyspace: 'b' });
    progress(1, { state: 'done', rowsCompared: 1000, rowsStreamed: 10, bytesStreamed: 2000 });
    progress(2, { rowsCompared: 500, rowsStreamed: 5, bytesStreamed: 1000, rangesFailed: 1 });
    text = await metrics.render();
    expect(value(text, 'chorus_repair_jobs{state="running"}')).toBe(1);
    expect(value(text, 'chorus_repair_jobs{state="done"}')).toBe(1);
    expect(value(text, 'chorus_repair_rows_compared_total')).toBe(1500);
    expect(value(text, 'chorus_repair_rows_streamed_total')).toBe(15);
    expect(value(text, 'chorus_repair_bytes_streamed_total')).toBe(3000);
    expect(value(text, 'chorus_repair_ranges_failed_total')).toBe(1);

    // Job 2 goes on and fails; job 1 is trimmed from the history; job 3 starts.
    progress(2, { state: 'failed', rowsCompared: 800, rowsStreamed: 6, bytesStreamed: 1200, rangesFailed: 2 });
    fake.jobs.splice(fake.jobs.findIndex((j) => j.id === 'job-1'), 1);
    await fake.service.start({ keyspace: 'c' });
    progress(3, { rowsCompared: 7 });
    text = await metrics.render();
    expect(value(text, 'chorus_repair_jobs{state="done"}')).toBe(0);
    expect(value(text, 'chorus_repair_jobs{state="failed"}')).toBe(1);
    expect(value(text, 'chorus_repair_jobs{state="running"}')).toBe(1);
    expect(value(text, 'chorus_repair_rows_compared_total')).toBe(1807);
    expect(value(text, 'chorus_repair_rows_streamed_total')).toBe(16);
    expect(value(text, 'chorus_repair_bytes_streamed_total')).toBe(3200);
    expect(value(text, 'chorus_repair_ranges_failed_total')).toBe(2);

    // Everything trimmed: the totals stay.
    fake.jobs.splice(0);
    text = await metrics.render();
    expect(value(text, 'chorus_repair_jobs{state="failed"}')).toBe(0);
    expect(value(text, 'chorus_repair_rows_compared_total')).toBe(1807);
    expect(value(text, 'chorus_repair_ranges_failed_total')).toBe(2);
  });

  it('exports whether each peer is past clock_skew_warn, for an alert, beside its offset', async () => {
    const metrics = createMetrics({ node: () => nodeWithHints(4_000_000), clock: { nowMicros: () => 10_000_000 } });
    const text = await metrics.render();
    const sample = (name: string, peer: string) => Number(new RegExp(`^${name}\\{peer="${peer}"\\} (\\S+)$`, 'm').exec(text)?.[1]);
    expect(text).toMatch(/^# TYPE chorus_peer_clock_skewed gauge$/m);
    expect(sample('chorus_peer_clock_skewed', '127.0.0.1:n2')).toBe(1);
    expect(sample('chorus_peer_clock_skewed', '127.0.0.1:n3')).toBe(0);
    expect(sample('chorus_peer_clock_skew_seconds', '127.0.0.1:n2')).toBe(0.035);
  });

  it('exports the latency the dynamic snitch ranks each peer by', async () => {
    const metrics = createMetrics({ node: () => nodeWithHints(4_000_000), clock: { nowMicros: () => 10_000_000 } });
    const text = await metrics.render();
    expect(text).toMatch(/^# TYPE chorus_peer_latency_seconds gauge$/m);
    expect(Number(/^chorus_peer_latency_seconds\{peer="127\.0\.0\.1:n2"\} (\S+)$/m.exec(text)?.[1])).toBe(0.0125);
  });

  it('exports the bytes client requests hold, their budget, and the requests refused for it by API', async () => {
    const budget = new RequestBudget(2 * 1024 * 1024);
    budget.take(1_500_000);
    budget.take(1_000_000, 'http');
    budget.take(1_000_000, 'client');
    budget.take(1_000_000, 'client');
    const text = await createMetrics({ node: () => undefined, budget }).render();
    expect(text).toContain('chorus_inflight_request_bytes 1500000');
    expect(text).toContain('chorus_inflight_request_bytes_budget 2097152');
    expect(text).toContain('chorus_requests_overloaded_total{api="http"} 1');
    expect(text).toContain('chorus_requests_overloaded_total{api="client"} 2');
  });
});
