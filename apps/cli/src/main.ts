#!/usr/bin/env node
import { Command, Option } from 'commander';
import { CliError, DEFAULT_HOST, accessOf, errorLine, getJson, request, useAccess } from './http.js';
import { type HintsEntry, type RingEntry, type StatusNode, formatHints, formatRing, formatStatus } from './format.js';
import { registerBench } from './bench-command.js';
import { registerRepair } from './repair.js';
import { addNode, killNode, startCluster, stopCluster } from './cluster.js';
import { registerDecommission, registerRemoveNode, registerStreams } from './streams.js';

const DEFAULT_DIR = '.chorus/cluster';
const collect = (value: string, previous: string[] = []) => [...previous, value];
const integer = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n)) throw new CliError(`${name} must be an integer, got ${JSON.stringify(value)}`);
  return n;
};
const print = (text: string) => process.stdout.write(`${text}\n`);
const json = (value: unknown) => print(JSON.stringify(value, null, 2));

// Positional options: a command's options stop at its subcommand, so `repair status --host H` is the subcommand's --host, not repair's.
const program = new Command('chorus').description('Chorus: a leaderless replicated key-value store').showHelpAfterError().enablePositionalOptions();

const cluster = program.command('cluster').description('run a local cluster of real node processes on 127.0.0.1');
cluster
  .command('start')
  .description('start N nodes (or restart the stopped nodes of an existing cluster directory) and wait until all are UP and NORMAL')
  .option('--nodes <n>', 'number of nodes', integer('--nodes'))
  .option('--dir <dir>', 'cluster directory', DEFAULT_DIR)
  .option('--base-port <port>', 'port of n1; node i listens on base+i-1', integer('--base-port'))
  .option('--rf <r>', 'replication factor of keyspace default (default min(3, N))', integer('--rf'))
  .option('--secret <secret>', 'cluster secret (default: a random one kept in the directory)')
  .option('--tls', 'a new cluster: make a throwaway CA and a certificate per node in DIR/tls, and encrypt peers and clients')
  .option('--auth', 'a new cluster: make a tokens file DIR/tokens with one token, and require it of clients')
  .option('--set <key=value>', 'a node setting, as in the config file (repeatable)', collect)
  .option('--timeout <seconds>', 'how long to wait for the cluster', integer('--timeout'), 60)
  .option('--json', 'print the cluster status as JSON')
  .action(async (o: { nodes?: number; dir: string; basePort?: number; rf?: number; secret?: string; tls?: boolean; auth?: boolean; set?: string[]; timeout: number; json?: boolean }) => {
    const nodes = await startCluster({ ...o, timeoutMs: o.timeout * 1000, log: o.json ? () => {} : (line) => process.stderr.write(`${line}\n`) });
    if (o.json) json({ nodes });
    else print(formatStatus(nodes));
  });
cluster
  .command('add')
  .description('start one more node into the running cluster; it streams the ranges it gains and the command returns when it is UN')
  .option('--dir <dir>', 'cluster directory', DEFAULT_DIR)
  .option('--set <key=value>', 'a setting for the new node only, as in the config file (repeatable)', collect)
  .option('--timeout <seconds>', 'how long to wait for the node to join', integer('--timeout'), 600)
  .option('--json', 'print the cluster status as JSON')
  .action(async (o: { dir: string; set?: string[]; timeout: number; json?: boolean }) => {
    const nodes = await addNode({ ...o, timeoutMs: o.timeout * 1000, log: o.json ? () => {} : (line) => process.stderr.write(`${line}\n`) });
    if (o.json) json({ nodes });
    else print(formatStatus(nodes));
  });
cluster
  .command('stop [name]')
  .description('stop every node, or one (SIGTERM, then wait)')
  .option('--dir <dir>', 'cluster directory', DEFAULT_DIR)
  .action(async (name: string | undefined, o: { dir: string }) => stopCluster(o.dir, name, (line) => process.stderr.write(`${line}\n`)));
cluster
  .command('kill <name>')
  .description('SIGKILL one node, for failure drills')
  .option('--dir <dir>', 'cluster directory', DEFAULT_DIR)
  .action(async (name: string, o: { dir: string }) => killNode(o.dir, name));

program
  .command('node')
  .description('run one node')
  .command('start')
  .description('run one node in the foreground')
  .option('--config <file>', 'YAML or JSON config file')
  .option('--name <name>', 'node name, e.g. n1')
  .option('--listen <host:port>', 'address for peers, clients and HTTP')
  .option('--seeds <a,b>', 'seed addresses')
  .option('--data <dir>', 'data directory')
  .option('--dc <dc>', 'datacenter')
  .option('--rack <rack>', 'rack')
  .option('--num-tokens <n>', 'vnodes')
  .option('--secret <secret>', 'cluster secret')
  .option('--cluster-name <name>', 'cluster name')
  .option('--set <key=value>', 'any setting, as in the config file (repeatable)', collect)
  .action(async (o: Record<string, string | string[] | undefined>) => {
    const { runNode } = await import('@chorus/server');
    await runNode({
      file: o.config as string | undefined,
      environment: process.env,
      flags: {
        name: o.name as string | undefined,
        listen_address: o.listen as string | undefined,
        seeds: o.seeds as string | undefined,
        data_dir: o.data as string | undefined,
        dc: o.dc as string | undefined,
        rack: o.rack as string | undefined,
        num_tokens: o.numTokens as string | undefined,
        secret: o.secret as string | undefined,
        cluster_name: o.clusterName as string | undefined,
      },
      overrides: (o.set as string[] | undefined) ?? [],
    });
  });

const hostOption = () => new Option('--host <host:port>', 'node to ask').default(DEFAULT_HOST);

program
  .command('status')
  .description('the cluster as one node sees it, like nodetool status')
  .addOption(hostOption())
  .option('--json', 'one JSON document')
  .action(async (o: { host: string; json?: boolean }) => {
    const status = await getJson<{ nodes: StatusNode[] }>(o.host, '/v1/status');
    if (o.json) json(status);
    else print(formatStatus(status.nodes));
  });

program
  .command('ring')
  .description('tokens and their owners')
  .addOption(hostOption())
  .option('--json', 'one JSON document')
  .action(async (o: { host: string; json?: boolean }) => {
    const ring = await getJson<{ tokens: RingEntry[] }>(o.host, '/v1/ring');
    if (o.json) json(ring);
    else print(formatRing(ring.tokens));
  });

program
  .command('hints')
  .description('hints the asked node holds for other nodes: count, bytes, age of the oldest, and whether the node needs a repair')
  .addOption(hostOption())
  .option('--json', 'one JSON document')
  .action(async (o: { host: string; json?: boolean }) => {
    const hints = await getJson<{ targets: HintsEntry[] }>(o.host, '/v1/hints');
    if (o.json) json(hints);
    else print(formatHints(hints.targets, Date.now() * 1000));
  });

const keyspace = program.command('keyspace').description('schema');
keyspace
  .command('create <name>')
  .description('create a keyspace (or change its replication)')
  .option('--rf <r>', 'SimpleStrategy replication factor', integer('--rf'))
  .option('--replication <dc:rf,…>', 'NetworkTopologyStrategy factors, e.g. dc1:3,dc2:2')
  .option('--read-repair <mode>', 'blocking (default for a new keyspace) or none; left out, an existing keyspace keeps its own')
  .option('--tombstone-gc <mode>', 'repair (default for a new keyspace: purge tombstones only once a repair has put them on every replica) or grace (purge after gc_grace_seconds); left out, an existing keyspace keeps its own')
  .addOption(hostOption())
  .action(async (name: string, o: { rf?: number; replication?: string; readRepair?: string; tombstoneGc?: string; host: string }) => {
    if ((o.rf === undefined) === (o.replication === undefined)) throw new CliError('give exactly one of --rf or --replication');
    const replication =
      o.rf !== undefined
        ? { class: 'SimpleStrategy', rf: o.rf }
        : { class: 'NetworkTopologyStrategy', ...Object.fromEntries(o.replication!.split(',').map((p) => { const [dc, rf] = p.split(':'); if (!dc || !rf) throw new CliError(`--replication expects dc:rf pairs, got ${JSON.stringify(p)}`); return [dc.trim(), Number(rf)]; })) };
    // The node checks the modes and answers a bad one with a reason.
    const body = { replication, ...(o.readRepair === undefined ? {} : { read_repair: o.readRepair }), ...(o.tombstoneGc === undefined ? {} : { tombstone_gc: o.tombstoneGc }) };
    const answer = await request(o.host, 'PUT', `/v1/keyspaces/${encodeURIComponent(name)}`, { body: JSON.stringify(body) });
    if (answer.status !== 200) throw new CliError(errorLine(answer));
  });
keyspace
  .command('list')
  .description('keyspaces, their replication, read repair and tombstone gc')
  .addOption(hostOption())
  .option('--json', 'one JSON document')
  .action(async (o: { host: string; json?: boolean }) => {
    const list = await getJson<{ keyspaces: Array<{ name: string; replication: Record<string, unknown>; read_repair?: string; tombstone_gc?: string }> }>(o.host, '/v1/keyspaces');
    if (o.json) json(list);
    // A node from before an option shows none: it behaves as the option's default.
    else for (const k of list.keyspaces) print(`${k.name}  ${JSON.stringify(k.replication)}  read_repair=${k.read_repair ?? 'blocking'}  tombstone_gc=${k.tombstone_gc ?? 'repair'}`);
  });

const dataPath = (keyspace: string, key: string, clustering?: string) =>
  `/${[keyspace, key, ...(clustering === undefined ? [] : [clustering])].map(encodeURIComponent).join('/')}`;
const queryOf = (params: Record<string, string | number | undefined>) => {
  const entries = Object.entries(params).filter(([, v]) => v !== undefined) as Array<[string, string | number]>;
  return entries.length ? `?${entries.map(([k, v]) => `${k}=${encodeURIComponent(String(v))}`).join('&')}` : '';
};
const dataCommand = (name: string, description: string) =>
  program
    .command(name)
    .description(description)
    .option('--keyspace <ks>', 'keyspace', 'default')
    .option('--clustering <key>', 'clustering key, for one row of a wide partition')
    .option('--consistency <cl>', 'ONE TWO THREE QUORUM ALL ANY LOCAL_ONE LOCAL_QUORUM EACH_QUORUM (default QUORUM)')
    .addOption(hostOption());

dataCommand('put <key> <value>', 'write a value, with any node as coordinator')
  .option('--ttl <seconds>', 'expire the value after this many seconds', integer('--ttl'))
  .action(async (key: string, value: string, o: { keyspace: string; clustering?: string; consistency?: string; ttl?: number; host: string }) => {
    const answer = await request(o.host, 'PUT', `/v1/kv${dataPath(o.keyspace, key, o.clustering)}${queryOf({ consistency: o.consistency, ttl: o.ttl })}`, { body: value });
    if (answer.status !== 200) throw new CliError(errorLine(answer));
  });
dataCommand('get <key>', 'read a value; --local reads only the asked node\'s own replica')
  .option('--local', "the asked node's own replica, without coordination")
  .option('--json', 'one JSON document with value and timestamp')
  .action(async (key: string, o: { keyspace: string; clustering?: string; consistency?: string; host: string; local?: boolean; json?: boolean }) => {
    if (o.local) {
      const answer = await request(o.host, 'GET', `/v1/local${dataPath(o.keyspace, key, o.clustering)}`);
      if (answer.status === 404) throw new CliError(`${o.host} holds nothing for ${key}`);
      if (answer.status !== 200) throw new CliError(errorLine(answer));
      const cell = answer.json<{ value: string | null; timestamp: number; tombstone: boolean }>();
      if (o.json) json(cell);
      else print(cell.tombstone ? `(deleted at ${cell.timestamp})` : Buffer.from(cell.value!, 'base64').toString('utf8'));
      return;
    }
    const answer = await request(o.host, 'GET', `/v1/kv${dataPath(o.keyspace, key, o.clustering)}${queryOf({ consistency: o.consistency })}`);
    if (answer.status === 404) throw new CliError(`not found: ${key}`);
    if (answer.status !== 200) throw new CliError(errorLine(answer));
    if (o.json) json({ value: answer.body.toString('utf8'), timestamp: Number(answer.headers.get('x-chorus-timestamp')) });
    else print(answer.body.toString('utf8'));
  });
dataCommand('del <key>', 'delete a value (a tombstone, kept for gc_grace_seconds)').action(async (key: string, o: { keyspace: string; clustering?: string; consistency?: string; host: string }) => {
  const answer = await request(o.host, 'DELETE', `/v1/kv${dataPath(o.keyspace, key, o.clustering)}${queryOf({ consistency: o.consistency })}`);
  if (answer.status !== 200) throw new CliError(errorLine(answer));
});

registerBench(program);
registerRepair(program);
registerStreams(program);
registerDecommission(program);
registerRemoveNode(program);

/** Every command that talks to a node (it has --host) takes the token and the CA, from flags or the environment. */
function addAccessOptions(command: Command): void {
  for (const sub of command.commands) addAccessOptions(sub);
  if (!command.options.some((option) => option.long === '--host')) return;
  command
    .addOption(new Option('--token <token>', 'bearer token, for nodes with client authentication (authenticator: token)').env('CHORUS_TOKEN'))
    .addOption(new Option('--tls-ca <file>', 'PEM of the CA that signed the nodes\' certificates: talk to them over TLS (client_encryption: true)').env('CHORUS_TLS_CA'));
}
addAccessOptions(program);
program.hook('preAction', (_program, action) => {
  const o = action.opts<{ token?: string; tlsCa?: string }>();
  useAccess(accessOf(o.token, o.tlsCa));
});

program.parseAsync(process.argv).catch((error: unknown) => {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`chorus: ${message.split('\n')[0]}\n`);
  const expected = error instanceof CliError || (error instanceof Error && ['StartupError', 'ConfigError'].includes(error.name));
  if (!expected && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
  process.exit(expected ? 1 : 2);
});
