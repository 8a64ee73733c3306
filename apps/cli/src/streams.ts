import type { MovementStatus } from '@chorus/streaming';
import { type Command, Option } from 'commander';
import { CliError, DEFAULT_HOST, errorLine, getJson, request } from './http.js';
import { formatBytes, formatSeconds } from './format.js';

/** `chorus streams`: one line per movement the asked node runs or ran lately. */
export function formatStreams(streams: MovementStatus[]): string {
  if (streams.length === 0) return 'no range movements';
  const rows = [['Id', 'Kind', 'State', 'Done', 'Ranges', 'Rows', 'Bytes', 'Rate', 'Elapsed', 'From', 'To']];
  for (const s of streams) {
    const seconds = s.elapsedMs / 1000;
    rows.push([
      s.id,
      s.kind,
      s.state,
      `${s.percent.toFixed(1)}%`,
      `${s.rangesDone}/${s.rangesTotal}`,
      String(s.rowsStreamed),
      formatBytes(s.bytesStreamed),
      seconds > 0 ? `${formatBytes(Math.round(s.bytesStreamed / seconds))}/s` : '-',
      formatSeconds(seconds),
      s.sources.join(','),
      s.targets.join(','),
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd());
  for (const s of streams) if (s.error) lines.push(`${s.id}: ${s.error.replace(/\s+/g, ' ')}`);
  return lines.join('\n');
}

export function registerStreams(program: Command): void {
  program
    .command('streams')
    .description('range movements (bootstrap, decommission, removenode) the asked node runs or ran lately: ranges, rows and bytes done, a percentage')
    .addOption(new Option('--host <host:port>', 'node to ask').default(DEFAULT_HOST))
    .option('--json', 'one JSON document')
    .action(async (o: { host: string; json?: boolean }) => {
      const answer = await getJson<{ streams: MovementStatus[] }>(o.host, '/v1/streams');
      process.stdout.write(`${o.json ? JSON.stringify(answer, null, 2) : formatStreams(answer.streams)}\n`);
    });
}

/**
 * `chorus decommission --host H`: asks H to leave the ring, then follows its
 * movement until H has streamed every range, handed off its hints, said LEFT
 * and exited. Exit 0 only then.
 */
export function registerDecommission(program: Command): void {
  program
    .command('decommission')
    .description('the asked node streams its ranges to the nodes that gain them, hands off its hints, leaves the ring (LEFT) and exits')
    .addOption(new Option('--host <host:port>', 'node that leaves').default(DEFAULT_HOST))
    .option('--timeout <seconds>', 'how long to follow it', (v: string) => Number(v), 3600)
    .option('--json', 'print the final movement as one JSON document')
    .action(async (o: { host: string; timeout: number; json?: boolean }) => {
      const answer = await request(o.host, 'POST', '/v1/decommission');
      if (answer.status !== 202) throw new CliError(errorLine(answer));
      const id = answer.json<MovementStatus>().id;
      const leaving = await getJson<{ nodes: StatusNode[] }>(o.host, '/v1/status');
      const name = leaving.nodes.find((n) => n.address === o.host)?.name;
      const peers = leaving.nodes.filter((n) => n.address !== o.host && n.state.startsWith('U')).map((n) => n.address);
      const deadline = Date.now() + o.timeout * 1000;
      let last: MovementStatus | undefined;
      for (;;) {
        let view: MovementStatus | undefined;
        try {
          view = (await getJson<{ streams: MovementStatus[] }>(o.host, '/v1/streams')).streams.find((s) => s.id === id);
        } catch (error) {
          // The node exits once it has left: silence after a finished stream is the success, and so is
          // silence after a busy spell hid the end of the stream from us, when a peer no longer lists the node.
          if (last?.state === 'done') break;
          if (last !== undefined && name !== undefined && (await leftAccordingToPeers(peers, name))) {
            last = { ...last, state: 'done' };
            break;
          }
          throw new CliError(`${o.host} stopped answering before it had left: ${(error as Error).message}`);
        }
        if (view !== undefined) {
          if (!o.json && (last === undefined || view.percent !== last.percent || view.state !== last.state)) process.stderr.write(`${view.state} ${view.percent.toFixed(1)}% ranges ${view.rangesDone}/${view.rangesTotal} rows ${view.rowsStreamed}${view.error ? ` (${view.error})` : ''}\n`);
          last = view;
        }
        if (Date.now() > deadline) throw new CliError(`${o.host} had not left after ${o.timeout} s`);
        await new Promise((r) => setTimeout(r, 500));
      }
      process.stdout.write(o.json ? `${JSON.stringify(last, null, 2)}\n` : `${o.host} left the ring: ${last!.rowsStreamed} rows, ${formatBytes(last!.bytesStreamed)} streamed to ${last!.targets.join(', ')}\n`);
    });
}

interface StatusNode {
  name: string;
  address: string;
  state: string;
}

/** Whether a peer that was up sees `name` as gone: a node leaves the views only after it said LEFT, which it says once its ranges are streamed. */
async function leftAccordingToPeers(peers: string[], name: string): Promise<boolean> {
  for (const peer of peers) {
    const view = await getJson<{ nodes: StatusNode[] }>(peer, '/v1/status').catch(() => undefined);
    if (view === undefined) continue;
    const seen = view.nodes.find((n) => n.name === name);
    if (seen === undefined || seen.state === 'LEFT') return true;
  }
  return false;
}

/**
 * `chorus removenode HOST_ID [--host H]`: asks H to remove a dead node. H
 * streams each range that gains a replica from a surviving one, gossips the
 * node REMOVED, then copies the ranges once more (`<id>-catchup`) for writes
 * that reached only the old replicas meanwhile. Exit 0 once that pass is done.
 */
export function registerRemoveNode(program: Command): void {
  program
    .command('removenode')
    .description('the asked node re-replicates the ranges of a dead node from the surviving replicas, then the dead node is REMOVED for good')
    .argument('<hostId>', 'host id of the dead node (chorus status)')
    .addOption(new Option('--host <host:port>', 'node that coordinates the removal').default(DEFAULT_HOST))
    .option('--timeout <seconds>', 'how long to follow it', (v: string) => Number(v), 3600)
    .option('--json', 'print the final movements as one JSON document')
    .action(async (hostId: string, o: { host: string; timeout: number; json?: boolean }) => {
      const answer = await request(o.host, 'POST', '/v1/removenode', { body: JSON.stringify({ hostId }) });
      if (answer.status !== 202) throw new CliError(errorLine(answer));
      const id = answer.json<MovementStatus>().id;
      const deadline = Date.now() + o.timeout * 1000;
      let printed = '';
      for (;;) {
        const mine = (await getJson<{ streams: MovementStatus[] }>(o.host, '/v1/streams')).streams.filter((s) => s.id === id || s.id === `${id}-catchup`);
        const line = mine.map((v) => `${v.id.endsWith('-catchup') ? 'catch-up' : 'stream'} ${v.state} ${v.percent.toFixed(1)}% ranges ${v.rangesDone}/${v.rangesTotal} rows ${v.rowsStreamed}${v.error ? ` (${v.error})` : ''}`).join('; ');
        if (!o.json && line !== printed) process.stderr.write(`${line}\n`);
        printed = line;
        const catchUp = mine.find((s) => s.id === `${id}-catchup`);
        if (catchUp?.state === 'done') {
          const first = mine.find((s) => s.id === id)!;
          process.stdout.write(o.json ? `${JSON.stringify({ streams: mine }, null, 2)}\n` : `${hostId} removed: ${first.rowsStreamed} rows, ${formatBytes(first.bytesStreamed)} streamed to ${first.targets.join(', ') || 'no node'}\n`);
          return;
        }
        if (Date.now() > deadline) throw new CliError(`the removal of ${hostId} had not finished after ${o.timeout} s`);
        await new Promise((r) => setTimeout(r, 500));
      }
    });
}
