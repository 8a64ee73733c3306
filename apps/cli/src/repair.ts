import type { RepairJobStatus, RepairRequest } from '@chorus/server';
import { type Command, Option } from 'commander';
import { formatBytes, formatRepairJob, formatRepairJobs, formatSeconds, repairEtaSeconds, repairOutcome, repairProgressLine } from './format.js';
import { CliError, DEFAULT_HOST, errorLine, getJson, request } from './http.js';

/** Without a change of ranges, `--wait` still prints a line this often when stderr is not a terminal, to show it is alive. */
const QUIET_LINE_MS = 30_000;

interface StartOptions {
  pr?: boolean;
  full?: boolean;
  startToken?: string;
  endToken?: string;
  parallel?: number;
  host: string;
  wait?: boolean;
  json?: boolean;
  pollInterval: number;
}

const print = (text: string) => process.stdout.write(`${text}\n`);
const integer = (name: string, min: number) => (value: string) => {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) throw new CliError(`${name} must be an integer, got ${JSON.stringify(value)}`);
  if (n < min) throw new CliError(`${name} must be at least ${min}, got ${n}`);
  return n;
};
const hostOption = () => new Option('--host <host:port>', 'node to ask').default(DEFAULT_HOST);
const jobPath = (id: string) => `/v1/repair/${encodeURIComponent(id)}`;

/** The body of `POST /v1/repair` for the command's arguments; the node checks the values. */
export function repairRequestOf(keyspace: string | undefined, o: Pick<StartOptions, 'pr' | 'full' | 'startToken' | 'endToken' | 'parallel'>): RepairRequest {
  if ((o.startToken === undefined) !== (o.endToken === undefined)) throw new CliError('--start-token and --end-token go together: a range, start exclusive, end inclusive');
  return {
    ...(keyspace !== undefined ? { keyspace } : {}),
    ...(o.pr ? { primaryRangeOnly: true } : {}),
    ...(o.full ? { full: true } : {}),
    ...(o.startToken !== undefined ? { startToken: o.startToken, endToken: o.endToken } : {}),
    ...(o.parallel !== undefined ? { parallel: o.parallel } : {}),
  };
}

/** `chorus repair`: start a job, follow it, list, show and cancel jobs. */
export function registerRepair(program: Command): void {
  const repair = program
    .command('repair')
    .description('repair token ranges: the replicas of each range compare Merkle trees and stream only the rows that differ')
    .argument('[keyspace]', 'the keyspace to repair (default: every keyspace except system)')
    // Its own options come before `status` or `cancel`, so that theirs (--host, --json) are theirs.
    .enablePositionalOptions()
    .option('--pr', "only the asked node's primary ranges: run it on every node to repair each range once")
    .option('--full', 'accepted for nodetool scripts: every Chorus repair is a full repair')
    .option('--start-token <token>', 'repair only (start, end]: Murmur3 tokens, with --end-token')
    .option('--end-token <token>', 'the inclusive end of the range, with --start-token')
    .option('--parallel <n>', 'ranges repaired at once, 1 to 16 (default 1)', integer('--parallel', 1))
    .addOption(hostOption())
    .option('--wait', 'follow the job: a progress bar (plain lines when stderr is not a terminal) until it ends; exit non-zero unless it is done')
    .option('--json', 'print {"id"}, or with --wait the final status, as one JSON document')
    .addOption(new Option('--poll-interval <ms>', 'how often --wait asks the node').argParser(integer('--poll-interval', 10)).default(1000).hideHelp())
    .action(async (keyspace: string | undefined, o: StartOptions) => {
      const body = repairRequestOf(keyspace, o);
      const answer = await request(o.host, 'POST', '/v1/repair', { body: JSON.stringify(body) });
      if (answer.status !== 200) throw new CliError(errorLine(answer));
      const { id } = answer.json<{ id: string }>();
      if (!o.wait) {
        print(o.json ? JSON.stringify({ id }) : id);
        return;
      }
      if (!o.json) print(id);
      const final = await follow(o.host, id, o.pollInterval, o.json ? undefined : await progressDisplay(id));
      if (o.json) print(JSON.stringify(final, null, 2));
      if (final.state !== 'done') throw new CliError(repairOutcome(final));
      if (!o.json) print(repairOutcome(final));
    });

  repair
    .command('status [job]')
    .description('one repair job, or a table of the recent ones')
    .addOption(hostOption())
    .option('--json', 'one JSON document')
    .action(async (id: string | undefined, o: { host: string; json?: boolean }) => {
      if (id === undefined) {
        const list = await getJson<{ jobs: RepairJobStatus[] }>(o.host, '/v1/repair');
        print(o.json ? JSON.stringify(list, null, 2) : formatRepairJobs(list.jobs));
        return;
      }
      const job = await jobOrFail(o.host, 'GET', id);
      print(o.json ? JSON.stringify(job, null, 2) : formatRepairJob(job));
    });

  repair
    .command('cancel <job>')
    .description('cancel a running repair job; ranges already repaired stay repaired')
    .addOption(hostOption())
    .option('--json', 'the status after cancelling, as one JSON document')
    .action(async (id: string, o: { host: string; json?: boolean }) => {
      const job = await jobOrFail(o.host, 'DELETE', id);
      if (o.json) print(JSON.stringify(job, null, 2));
      else print(job.state === 'cancelled' ? repairOutcome(job) : job.state === 'running' ? `repair ${id} is stopping` : `repair ${id} had already ended: ${job.state}`);
    });
}

async function jobOrFail(host: string, method: 'GET' | 'DELETE', id: string): Promise<RepairJobStatus> {
  const answer = await request(host, method, jobPath(id));
  if (answer.status === 404) throw new CliError(`no repair job ${id} on ${host}`);
  if (answer.status !== 200) throw new CliError(errorLine(answer));
  return answer.json<RepairJobStatus>();
}

interface Display {
  show(job: RepairJobStatus): void;
  /** Ends the display, with the job's last status when it ended. */
  close(final?: RepairJobStatus): void;
}

/** Asks the node for the job until it ends, showing each status; a node that forgot the job or cannot be reached ends the wait. */
async function follow(host: string, id: string, pollMs: number, display: Display | undefined): Promise<RepairJobStatus> {
  const interrupted = () => {
    display?.close();
    process.stderr.write(`chorus: stopped waiting; repair ${id} goes on (chorus repair cancel ${id} --host ${host} stops it)\n`);
    process.exit(130);
  };
  process.once('SIGINT', interrupted);
  try {
    for (;;) {
      let answer;
      try {
        answer = await request(host, 'GET', jobPath(id));
      } catch (error) {
        throw new CliError(`${(error as Error).message}; repair ${id} may still be running there`);
      }
      if (answer.status === 404) throw new CliError(`${host} no longer knows repair job ${id} (did the node restart?)`);
      if (answer.status !== 200) throw new CliError(errorLine(answer));
      const job = answer.json<RepairJobStatus>();
      if (job.state !== 'running') {
        display?.close(job);
        return job;
      }
      display?.show(job);
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
  } finally {
    process.removeListener('SIGINT', interrupted);
    display?.close();
  }
}

/** A live bar on a terminal; otherwise a line when the ranges move, and one every QUIET_LINE_MS regardless. */
async function progressDisplay(id: string): Promise<Display> {
  if (process.stderr.isTTY !== true) {
    let last: { finished: number; at: number } | undefined;
    return {
      show(job) {
        const finished = job.rangesDone + job.rangesFailed;
        const now = Date.now();
        if (last && last.finished === finished && now - last.at < QUIET_LINE_MS) return;
        last = { finished, at: now };
        process.stderr.write(`${repairProgressLine(job)}\n`);
      },
      close() {},
    };
  }
  // Imported here, like every library only one command uses: node processes run this program too.
  const { default: cliProgress } = await import('cli-progress');
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `repair ${id} [{bar}] {value}/{total} ranges{failed} | {rows} rows streamed ({bytes}) | ETA {remaining}`,
      hideCursor: true,
      clearOnComplete: false,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    show(job) {
      const eta = repairEtaSeconds(job);
      const payload = { failed: job.rangesFailed ? ` (${job.rangesFailed} failed)` : '', rows: job.rowsStreamed, bytes: formatBytes(job.bytesStreamed), remaining: eta === undefined ? '?' : formatSeconds(eta) };
      const finished = job.rangesDone + job.rangesFailed;
      if (!started) {
        bar.start(job.rangesTotal, finished, payload);
        started = true;
      } else {
        bar.setTotal(job.rangesTotal);
        bar.update(finished, payload);
      }
    },
    close(final) {
      if (!started) return;
      if (final) {
        bar.setTotal(final.rangesTotal);
        bar.update(final.rangesDone + final.rangesFailed, { failed: final.rangesFailed ? ` (${final.rangesFailed} failed)` : '', rows: final.rowsStreamed, bytes: formatBytes(final.bytesStreamed), remaining: '0s' });
      }
      bar.stop();
      started = false;
    },
  };
}
