import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SeededRandom, nodeId } from '@chorus/core';
import { RingView, allocateTokens } from '@chorus/ring';
import type { Pem } from './certs.js';
import { CliError, getJson, request, useAccess } from './http.js';
import type { StatusNode } from './format.js';

/** What `cluster start` remembers in its directory, so later commands know the layout. */
export interface ClusterLayout {
  basePort: number;
  nodes: string[];
  secret: string;
  rf: number;
  numTokens: number;
  overrides: string[];
  /** Made with --tls: a CA and node certificates in `tls/`, peers and clients encrypted. */
  tls?: boolean;
  /** Made with --auth: clients need a token of the file `tokens`. */
  auth?: boolean;
}

export interface StartOptions {
  nodes?: number;
  dir: string;
  basePort?: number;
  rf?: number;
  secret?: string;
  tls?: boolean;
  auth?: boolean;
  set?: string[];
  timeoutMs?: number;
  log?: (line: string) => void;
  /** Options for the node processes' Node.js itself, such as `--cpu-prof`; for this start only. */
  nodeArgs?: string[];
}

const CLI_MAIN = join(dirname(fileURLToPath(import.meta.url)), 'main.js');
const layoutPath = (dir: string) => join(dir, 'cluster.json');
export const caPath = (dir: string) => join(dir, 'tls', 'ca.pem');
export const tokensPath = (dir: string) => join(dir, 'tokens');
const caKeyPath = (dir: string) => join(dir, 'tls', 'ca-key.pem');
const certPath = (dir: string, name: string) => join(dir, 'tls', `${name}.pem`);
const keyPath = (dir: string, name: string) => join(dir, 'tls', `${name}-key.pem`);
const pidPath = (dir: string, name: string) => join(dir, `${name}.pid`);
const portOf = (layout: ClusterLayout, name: string) => layout.basePort + layout.nodes.indexOf(name);
export const addressOf = (layout: ClusterLayout, name: string) => `127.0.0.1:${portOf(layout, name)}`;

export function readLayout(dir: string): ClusterLayout | undefined {
  if (!existsSync(layoutPath(dir))) return undefined;
  return JSON.parse(readFileSync(layoutPath(dir), 'utf8')) as ClusterLayout;
}

function requireLayout(dir: string): ClusterLayout {
  const layout = readLayout(dir);
  if (!layout) throw new CliError(`no cluster in ${dir} (start one with: chorus cluster start --nodes 3 --dir ${dir})`);
  return layout;
}

export function runningPid(dir: string, name: string): number | undefined {
  const path = pidPath(dir, name);
  if (!existsSync(path)) return undefined;
  const pid = Number(readFileSync(path, 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

/**
 * Balanced tokens for a fresh cluster, computed up front like Cassandra's
 * initial_token, so every node can start at once and the ring is even.
 */
function initialTokens(names: string[], numTokens: number, rf: number): Map<string, string[]> {
  const random = new SeededRandom(Number.parseInt(randomBytes(4).toString('hex'), 16));
  let ring = RingView.empty();
  const out = new Map<string, string[]>();
  for (const name of names) {
    const node = nodeId(name);
    const tokens = allocateTokens(ring, { node, dc: 'dc1' }, numTokens, rf, random);
    ring = ring.with({ node, dc: 'dc1', rack: 'rack1', tokens, status: 'normal' });
    out.set(name, tokens.map(String));
  }
  return out;
}

async function spawnNode(dir: string, layout: ClusterLayout, name: string, tokens: string[] | undefined, nodeArgs: string[] = []): Promise<void> {
  const data = join(dir, name);
  const fresh = !existsSync(data);
  mkdirSync(data, { recursive: true });
  const seeds = layout.nodes.slice(0, Math.min(2, layout.nodes.length)).map((n) => addressOf(layout, n));
  const sets: string[] = [];
  if (fresh && tokens) sets.push(`initial_tokens=${tokens.join(',')}`);
  if (layout.tls) {
    const files = await nodeCertificate(dir, name);
    sets.push('internode_encryption=all', 'client_encryption=true', `tls_cert_file=${files.cert}`, `tls_key_file=${files.key}`, `tls_ca_file=${caPath(dir)}`);
  }
  if (layout.auth) sets.push('authenticator=token', `authenticator_tokens_file=${tokensPath(dir)}`);
  sets.push(...layout.overrides);
  const flags = { name, listen_address: addressOf(layout, name), seeds: seeds.join(','), data_dir: data, secret: layout.secret, num_tokens: String(layout.numTokens) };
  // The node's heap and thread pools (max_heap_size, gc_threads, io_threads) are fixed when its process starts: given here, the node need not start itself again.
  // Imported here: loading the settings' schema would slow every other chorus command.
  const { nodeProcessLaunch } = await import('@chorus/server/node-process');
  const launch = nodeProcessLaunch({ environment: process.env, flags, overrides: sets }, process.env);
  const args = [...nodeArgs, ...launch.flags, CLI_MAIN, 'node', 'start', '--name', name, '--listen', flags.listen_address, '--seeds', flags.seeds, '--data', data, '--secret', layout.secret, '--num-tokens', flags.num_tokens];
  for (const set of sets) args.push('--set', set);
  const log = openSync(join(dir, `${name}.log`), 'a');
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', log, log], env: { ...launch.env, CHORUS_PID_FILE: pidPath(dir, name) } });
  closeSync(log);
  if (child.pid === undefined) throw new CliError(`could not start ${name}`);
  writeFileSync(pidPath(dir, name), `${child.pid}\n`);
  child.unref();
}

/**
 * The cluster's throwaway CA, made on first use; its key stays in the directory, readable by its owner only, for nodes added later.
 * The certificate library is imported only here: every node process runs this program, and would otherwise carry it.
 */
async function clusterCa(dir: string): Promise<Pem> {
  if (existsSync(caPath(dir)) && existsSync(caKeyPath(dir))) return { cert: readFileSync(caPath(dir), 'utf8'), key: readFileSync(caKeyPath(dir), 'utf8') };
  mkdirSync(join(dir, 'tls'), { recursive: true, mode: 0o700 });
  const { createCa } = await import('./certs.js');
  const ca = createCa(`chorus local cluster CA (${dir})`.slice(0, 64));
  writeFileSync(caKeyPath(dir), ca.key, { mode: 0o600 });
  writeFileSync(caPath(dir), ca.cert);
  return ca;
}

/** A node's certificate (naming 127.0.0.1, where local nodes listen, and localhost) and key, made once. */
async function nodeCertificate(dir: string, name: string): Promise<{ cert: string; key: string }> {
  const files = { cert: certPath(dir, name), key: keyPath(dir, name) };
  if (existsSync(files.cert) && existsSync(files.key)) return files;
  const { issueCert } = await import('./certs.js');
  const pem = issueCert(await clusterCa(dir), name, ['127.0.0.1', 'localhost']);
  writeFileSync(files.key, pem.key, { mode: 0o600 });
  writeFileSync(files.cert, pem.cert);
  return files;
}

/** A tokens file with one random token, in the format the nodes read. */
function writeTokensFile(dir: string): void {
  const token = randomBytes(32).toString('base64url');
  writeFileSync(tokensPath(dir), `# Client tokens of this local cluster, one a line; nodes read the file again on SIGHUP.\n${token}\n`, { mode: 0o600 });
}

/** The first token of a tokens file. */
export function firstToken(file: string): string {
  const line = readFileSync(file, 'utf8').split('\n').map((l) => l.trim()).find((l) => l !== '' && !l.startsWith('#'));
  if (line === undefined) throw new CliError(`${file} holds no token`);
  return line;
}

/** How a cluster made with --tls or --auth is reached: the CLI's own requests use it, and the user is told. */
function clusterAccess(dir: string, layout: ClusterLayout, log: (line: string) => void): void {
  if (layout.tls) useAccess({ ca: readFileSync(caPath(dir), 'utf8') });
  if (layout.auth) useAccess({ token: firstToken(tokensPath(dir)) });
  const exports = [...(layout.tls ? [`CHORUS_TLS_CA=${caPath(dir)}`] : []), ...(layout.auth ? [`CHORUS_TOKEN=$(grep -v '^#' ${tokensPath(dir)} | head -1)`] : [])];
  if (exports.length > 0) log(`clients of this cluster need: export ${exports.join(' ')} (or --tls-ca / --token on each command)`);
}

/** The last line a node logged, for a one-line reason when it died on start. */
function lastLogLine(dir: string, name: string): string {
  const path = join(dir, `${name}.log`);
  if (!existsSync(path)) return 'no log';
  const size = statSync(path).size;
  const fd = openSync(path, 'r');
  const buffer = Buffer.alloc(Math.min(size, 8192));
  readSync(fd, buffer, 0, buffer.length, size - buffer.length);
  closeSync(fd);
  const lines = buffer.toString('utf8').trim().split('\n');
  const last = lines.at(-1) ?? '';
  try {
    const parsed = JSON.parse(last) as { msg?: string; err?: { message?: string } };
    return [parsed.msg, parsed.err?.message].filter(Boolean).join(': ');
  } catch {
    return last;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until every node sees every other as UN. */
export async function waitForCluster(dir: string, layout: ClusterLayout, timeoutMs: number): Promise<StatusNode[]> {
  const deadline = Date.now() + timeoutMs;
  let lastProblem = 'no answer yet';
  for (;;) {
    for (const name of layout.nodes) {
      if (!runningPid(dir, name)) throw new CliError(`${name} exited: ${lastLogLine(dir, name)} (log: ${join(dir, `${name}.log`)})`);
    }
    const views = await Promise.all(
      layout.nodes.map((name) => getJson<{ nodes: StatusNode[] }>(addressOf(layout, name), '/v1/status').then((v) => ({ name, nodes: v.nodes }), (e: Error) => ({ name, error: e.message }))),
    );
    const problem = views.map((v) => {
      if ('error' in v) return `${v.name}: ${v.error}`;
      const notUp = layout.nodes.filter((n) => !v.nodes.some((m) => m.name === n && m.state === 'UN'));
      return notUp.length ? `${v.name} does not see ${notUp.join(', ')} as UN` : undefined;
    }).find(Boolean);
    if (!problem) return (views[0] as { nodes: StatusNode[] }).nodes;
    lastProblem = problem;
    if (Date.now() > deadline) throw new CliError(`cluster not ready after ${Math.round(timeoutMs / 1000)} s: ${lastProblem}`);
    await sleep(200);
  }
}

export async function startCluster(options: StartOptions): Promise<StatusNode[]> {
  const dir = resolve(options.dir);
  const log = options.log ?? (() => {});
  let layout = readLayout(dir);
  if (!layout) {
    const count = options.nodes ?? 3;
    if (!Number.isInteger(count) || count < 1 || count > 64) throw new CliError(`--nodes must be between 1 and 64, got ${options.nodes}`);
    const basePort = options.basePort ?? 7100;
    if (!Number.isInteger(basePort) || basePort < 1024 || basePort + count > 65535) throw new CliError(`--base-port must leave room for ${count} ports below 65536`);
    layout = {
      basePort,
      nodes: Array.from({ length: count }, (_, i) => `n${i + 1}`),
      secret: options.secret ?? randomBytes(24).toString('base64url'),
      rf: options.rf ?? Math.min(3, count),
      numTokens: 16,
      overrides: options.set ?? [],
      ...(options.tls ? { tls: true } : {}),
      ...(options.auth ? { auth: true } : {}),
    };
    mkdirSync(dir, { recursive: true });
    if (layout.tls) await clusterCa(dir);
    if (layout.auth) writeTokensFile(dir);
    writeFileSync(layoutPath(dir), `${JSON.stringify(layout, null, 2)}\n`, { mode: 0o600 });
  } else if (options.nodes !== undefined && options.nodes !== layout.nodes.length) {
    throw new CliError(`${dir} holds a ${layout.nodes.length}-node cluster; use chorus cluster add to grow it, or another --dir`);
  } else if (options.basePort !== undefined && options.basePort !== layout.basePort) {
    // Its nodes know each other by address: the ports of an existing cluster cannot move.
    throw new CliError(`${dir} holds a cluster on base port ${layout.basePort}, not ${options.basePort}; drop --base-port, or use another --dir`);
  } else if ((options.tls && !layout.tls) || (options.auth && !layout.auth)) {
    throw new CliError(`${dir} holds a cluster made without ${options.tls && !layout.tls ? '--tls' : '--auth'}; it keeps the settings it was made with (use another --dir)`);
  }
  clusterAccess(dir, layout, log);
  // Only a node without data takes initial tokens; a restart keeps the tokens it stored.
  const tokens = layout.nodes.some((n) => !existsSync(join(dir, n))) ? initialTokens(layout.nodes, layout.numTokens, layout.rf) : new Map<string, string[]>();
  for (const name of layout.nodes) {
    if (runningPid(dir, name)) {
      log(`${name} is already running`);
      continue;
    }
    await spawnNode(dir, layout, name, tokens.get(name), options.nodeArgs);
    log(`started ${name} on ${addressOf(layout, name)}`);
  }
  const timeoutMs = options.timeoutMs ?? 60_000;
  await waitForCluster(dir, layout, timeoutMs);
  await ensureDefaultKeyspace(layout, timeoutMs);
  return (await getJson<{ nodes: StatusNode[] }>(addressOf(layout, layout.nodes[0]!), '/v1/status')).nodes;
}

/** Creates keyspace `default` if it is missing, then waits until every node has it (schema agreement). */
async function ensureDefaultKeyspace(layout: ClusterLayout, timeoutMs: number): Promise<void> {
  const hosts = layout.nodes.map((n) => addressOf(layout, n));
  const hasDefault = async (host: string) => (await getJson<{ keyspaces: Array<{ name: string }> }>(host, '/v1/keyspaces')).keyspaces.some((k) => k.name === 'default');
  if (!(await hasDefault(hosts[0]!))) {
    const answer = await request(hosts[0]!, 'PUT', '/v1/keyspaces/default', { body: JSON.stringify({ replication: { class: 'SimpleStrategy', rf: layout.rf } }) });
    if (answer.status !== 200) throw new CliError(`could not create keyspace default: ${answer.body.toString('utf8')}`);
  }
  const deadline = Date.now() + timeoutMs;
  while (!(await Promise.all(hosts.map(hasDefault))).every(Boolean)) {
    if (Date.now() > deadline) throw new CliError('keyspace default did not reach every node in time');
    await sleep(200);
  }
}

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0);
    } catch {
      return true;
    }
    await sleep(50);
  }
  return false;
}

/** SIGTERM, then wait for a clean exit (SIGKILL after the grace period). */
export async function stopCluster(dir: string, name: string | undefined, log: (line: string) => void = () => {}): Promise<void> {
  const layout = requireLayout(resolve(dir));
  const names = name ? [name] : layout.nodes;
  if (name && !layout.nodes.includes(name)) throw new CliError(`no node named ${name} in ${dir}`);
  await Promise.all(
    names.map(async (n) => {
      const pid = runningPid(resolve(dir), n);
      if (!pid) return;
      process.kill(pid, 'SIGTERM');
      if (!(await waitForExit(pid, 15_000))) {
        process.kill(pid, 'SIGKILL');
        log(`${n} did not stop within 15 s; killed`);
      } else log(`stopped ${n}`);
      rmSync(pidPath(resolve(dir), n), { force: true });
    }),
  );
}

/** SIGKILL, for failure drills: the node gets no chance to say goodbye. */
export async function killNode(dir: string, name: string): Promise<void> {
  const layout = requireLayout(resolve(dir));
  if (!layout.nodes.includes(name)) throw new CliError(`no node named ${name} in ${dir}`);
  const pid = runningPid(resolve(dir), name);
  if (!pid) throw new CliError(`${name} is not running`);
  process.kill(pid, 'SIGKILL');
  await waitForExit(pid, 5_000);
  rmSync(pidPath(resolve(dir), name), { force: true });
}

export interface AddOptions {
  dir: string;
  /** Settings for the new node only, besides the cluster's own. */
  set?: string[];
  timeoutMs?: number;
  log?: (line: string) => void;
}

/**
 * Starts one more node into a running local cluster, without initial
 * tokens, so it bootstraps: it announces its tokens, streams the ranges it
 * gains, and turns UN. Returns the status once every node sees every other
 * UN. A node that refuses to join (another node is joining or leaving) or
 * dies starting is taken out of the layout again, with its reason.
 */
export async function addNode(options: AddOptions): Promise<StatusNode[]> {
  const dir = resolve(options.dir);
  const log = options.log ?? (() => {});
  const layout = requireLayout(dir);
  const stopped = layout.nodes.filter((n) => !runningPid(dir, n));
  if (stopped.length > 0) throw new CliError(`${stopped.join(', ')} not running; start the cluster first (chorus cluster start --dir ${options.dir})`);
  let index = layout.nodes.length + 1;
  while (layout.nodes.includes(`n${index}`) || existsSync(join(dir, `n${index}`))) index++;
  const name = `n${index}`;
  if (layout.basePort + layout.nodes.length > 65535) throw new CliError(`no port left above ${layout.basePort} for another node`);
  const grown: ClusterLayout = { ...layout, nodes: [...layout.nodes, name] };
  writeFileSync(layoutPath(dir), `${JSON.stringify(grown, null, 2)}\n`, { mode: 0o600 });
  await spawnNode(dir, { ...grown, overrides: [...grown.overrides, ...(options.set ?? [])] }, name, undefined);
  log(`started ${name} on ${addressOf(grown, name)}; it bootstraps (chorus streams --host ${addressOf(grown, name)})`);
  try {
    return await waitForCluster(dir, grown, options.timeoutMs ?? 600_000);
  } catch (error) {
    if (!runningPid(dir, name)) {
      // Refused or dead before it held anything: the cluster is as it was.
      writeFileSync(layoutPath(dir), `${JSON.stringify(layout, null, 2)}\n`, { mode: 0o600 });
      rmSync(join(dir, name), { recursive: true, force: true });
      rmSync(pidPath(dir, name), { force: true });
    }
    throw error;
  }
}
