import { ChorusError } from '@chorus/core';
import type { RepairJobStatus, RepairRequest, RepairService } from '../src/repair-api.js';

/**
 * Repair jobs in memory: `start` records the request and makes a running job;
 * a keyspace named `missing` is unknown, and a second job while `busy` is set
 * is refused, as the real service refuses them.
 */
export function fakeRepair() {
  const jobs: RepairJobStatus[] = [];
  const started: RepairRequest[] = [];
  let busy = false;
  let made = 0;
  const service: RepairService = {
    async start(request) {
      if (request.keyspace === 'missing') throw new ChorusError('UnknownKeyspace', 'UNKNOWN_KEYSPACE', 'no keyspace missing', { keyspace: 'missing' }, 400);
      if (busy) throw new ChorusError('TooManyRepairJobs', 'TOO_MANY_REPAIR_JOBS', 'a repair job is already running', { running: 1, limit: 1 }, 503);
      started.push(request);
      const id = `job-${++made}`;
      jobs.unshift({ id, state: 'running', keyspaces: [request.keyspace ?? 'default'], rangesTotal: 48, rangesDone: 0, rangesFailed: 0, rowsCompared: 0, rowsStreamed: 0, bytesStreamed: 0, elapsedMs: 0, startedAtMicros: 1_700_000_000_000_000 });
      return { id };
    },
    status: (id) => jobs.find((j) => j.id === id),
    jobs: () => [...jobs],
    async cancel(id) {
      const job = jobs.find((j) => j.id === id);
      if (job?.state === 'running') job.state = 'cancelled';
      return job;
    },
  };
  return { service, jobs, started, setBusy: (b: boolean) => void (busy = b) };
}
