import { accessSync, constants, mkdirSync, readFileSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { getHeapStatistics } from 'node:v8';
import { isChorusError, nodeId, realEnv } from '@chorus/core';
import { type ChorusNode, startChorusNode } from '@chorus/node';
import { createWsTransport, peerTlsServerOptions } from '@chorus/wire';
import { Level } from 'level';
import pino from 'pino';
import { type ConfigSources, type NodeSettings, loadSettings } from './config.js';
import { attachClientApi } from './client-api.js';
import { ConfigError, StartupError } from './errors.js';
import { buildApi } from './http-api.js';
import { type Security, loadSecurity } from './security.js';
import { RequestBudget } from './request-budget.js';
import { type MetricSources, createMetrics } from './metrics.js';
import { HEAP_BUDGETS } from './heap.js';
import { dieWithParent, needsRestart, processFlags, runAgainWith } from './node-process.js';

/** Blocks this process read from the disk: file reads that missed the page cache and major page faults (LevelDB maps its tables). */
const PROCESS_DISK_READS = {
  blocksRead(): number {
    const usage = process.resourceUsage();
    return usage.fsRead + usage.majorPageFault;
  },
};

/**
 * Runs one node until SIGTERM or SIGINT: settings, the real environment
 * (system clock, LevelDB, WebSockets), the HTTP API on the node's one port.
 */
export async function runNode(sources: ConfigSources): Promise<void> {
  let settings: NodeSettings;
  try {
    settings = loadSettings(sources);
  } catch (error) {
    if (error instanceof ConfigError) fail(`config: ${error.message}`);
    throw error;
  }
  // Before anything opens: the child that runs with the right heap and thread pools opens the data directory and the port.
  const flags = processFlags(settings);
  if (needsRestart(flags, settings)) return runAgainWith(flags, settings);
  dieWithParent();
  const logger = pino({ level: settings.log_level, base: { node: settings.name } });
  let security: Security;
  try {
    security = loadSecurity(settings, logger);
  } catch (error) {
    if (error instanceof ConfigError) fail(`config: ${error.message}`);
    throw error;
  }
  const { tls, authenticator } = security;
  stopWithWatchedProcesses((pid) => logger.warn({ pid }, 'a process this node stops with has exited; stopping'));
  const [host, portText] = splitAddress(settings.listen_address);
  const self = nodeId(settings.listen_address);
  const env = realEnv(self, logger);

  try {
    mkdirSync(settings.data_dir, { recursive: true });
    accessSync(settings.data_dir, constants.W_OK);
  } catch (error) {
    fail(`data directory ${settings.data_dir} is not writable (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
  const db = await openLevel(settings.data_dir, 'data');
  // Hints live in a database of their own, so replaying and deleting them never competes with the data's compaction.
  let hintsDb: Level<Uint8Array, Uint8Array>;
  try {
    hintsDb = await openLevel(settings.data_dir, 'hints');
  } catch (error) {
    await db.close();
    throw error;
  }

  let node: ChorusNode | undefined;
  // The metrics read the transport and client API made below; nothing is scraped before the port listens.
  const metricSources: MetricSources = { node: () => node, clock: env.clock };
  const metrics = createMetrics(metricSources);
  // One budget for both client APIs: a flood over either leaves the same room for the other.
  const budget = new RequestBudget(settings.max_inflight_request_bytes);
  let onLeft = (): void => {};
  const api = buildApi({
    logger,
    metrics,
    node: () => node,
    budget,
    onLeft: () => onLeft(),
    ...(authenticator ? { auth: { authenticator, metrics: settings.metrics_require_auth } } : {}),
    ...(tls ? { https: peerTlsServerOptions(tls) } : {}),
  });
  const transport = createWsTransport({ env, clusterName: settings.cluster_name, secret: settings.secret, server: api.server, ...(tls ? { tls } : {}) });
  const clientApi = attachClientApi({
    app: api,
    node: () => node,
    logger,
    defer: (fn) => env.scheduler.defer(fn),
    timeRequest: metrics.timeRequest,
    budget,
    maxInflightBytesPerConnection: settings.max_inflight_request_bytes_per_connection,
    ...(authenticator ? { authenticator } : {}),
  });
  metricSources.transport = transport;
  metricSources.clientApi = clientApi;
  metricSources.budget = budget;
  try {
    await api.listen({ host, port: Number(portText) });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    await db.close();
    await hintsDb.close();
    if (code === 'EADDRINUSE') fail(`port ${portText} on ${host} is in use`);
    if (code === 'EADDRNOTAVAIL') fail(`address ${host} is not available on this machine`);
    throw error;
  }

  try {
    node = await startChorusNode({
      env,
      transport,
      db,
      hintsDb,
      settings: nodeSettingsOf(settings),
      loadBytes: () => directoryBytes(join(settings.data_dir, 'data')),
      // Learned while serving (a partition outlasted the removal): the node has stopped itself; the process goes too.
      onRemoved: (error) => {
        process.stderr.write(`chorus node: ${error.message}\n`);
        logger.flush();
        process.exitCode = 1;
        setTimeout(() => process.exit(1), 2_000).unref();
        void transport.close().then(() => api.close());
      },
    });
  } catch (error) {
    await transport.close();
    await api.close();
    if (isChorusError(error)) fail(error.message);
    throw error;
  }
  logger.info(
    {
      address: settings.listen_address,
      hostId: node.hostId,
      dc: settings.dc,
      rack: settings.rack,
      tls: tls !== undefined,
      authenticator: settings.authenticator,
      heapLimitMiB: Math.round(getHeapStatistics().heap_size_limit / 1024 / 1024),
      budgetsMiB: Object.fromEntries(Object.keys(HEAP_BUDGETS).map((name) => [name, Math.round((settings[name as keyof typeof HEAP_BUDGETS] / 1024 / 1024) * 10) / 10])),
      // What the process runs with (libuv's and Node's defaults are 4), which needsRestart made the settings'.
      ioThreads: Number(process.env.UV_THREADPOOL_SIZE ?? 4),
      gcThreads: Number(process.execArgv.findLast((arg) => arg.startsWith('--v8-pool-size='))?.slice('--v8-pool-size='.length) ?? 4),
    },
    'node serving',
  );
  if (authenticator) {
    // Tokens are rotated without a restart: edit the file, then `kill -HUP`.
    process.on('SIGHUP', () => {
      try {
        logger.info({ tokens: authenticator.reload() }, 'tokens file read again');
      } catch (error) {
        logger.error({ reason: (error as Error).message }, 'tokens file not read again; the tokens in force stay');
      }
    });
  }

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    try {
      // Clients first: requests in flight get their answers, new ones go to other nodes.
      await clientApi.drain(2_000);
      await node?.stop();
      await transport.close();
      await api.close();
    } finally {
      logger.info('stopped');
      logger.flush();
      process.exit(0);
    }
  };
  // A decommissioned node has left the ring: it has nothing more to serve.
  onLeft = () => void stop('decommissioned');
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

/**
 * Opt-in, for test runs: CHORUS_STOP_WITH_PIDS names processes (a test runner) whose exit stops this node as
 * SIGTERM does. A node started detached by `chorus cluster start` would otherwise outlive a runner killed
 * before it could stop the node.
 */
function stopWithWatchedProcesses(onGone: (pid: number) => void): void {
  const pids = (process.env.CHORUS_STOP_WITH_PIDS ?? '').split(',').map(Number).filter((pid) => Number.isInteger(pid) && pid > 0);
  if (pids.length === 0) return;
  const timer = setInterval(() => {
    const gone = pids.find((pid) => !processAlive(pid));
    if (gone === undefined) return;
    clearInterval(timer);
    onGone(gone);
    // Once the node serves, its SIGTERM handler stops it cleanly; before that, SIGTERM's default action ends the process.
    process.kill(process.pid, 'SIGTERM');
    // Nobody is left to SIGKILL a stop that hangs.
    setTimeout(() => process.exit(1), 30_000).unref();
  }, 1_000);
  timer.unref();
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A process that died but was not reaped yet is a zombie: gone all the same.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return true;
  }
}

/** Bytes of the files under `dir`: the LOAD a node publishes. */
async function directoryBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    total += entry.isDirectory() ? await directoryBytes(path) : await stat(path).then((s) => s.size, () => 0);
  }
  return total;
}

/** Opens (creating it if needed) one LevelDB directory under the data directory; a lock held by another process is a one-line reason. */
async function openLevel(dataDir: string, name: string): Promise<Level<Uint8Array, Uint8Array>> {
  const db = new Level<Uint8Array, Uint8Array>(join(dataDir, name), { keyEncoding: 'view', valueEncoding: 'view' });
  try {
    await db.open();
  } catch (error) {
    const cause = (error as { cause?: Error }).cause?.message ?? (error as Error).message;
    fail(/lock/i.test(cause) ? `data directory ${dataDir} is in use by another node` : `cannot open the ${name} database in ${dataDir}: ${cause}`);
  }
  return db;
}

function splitAddress(address: string): [string, string] {
  const at = address.lastIndexOf(':');
  return [address.slice(0, at), address.slice(at + 1)];
}

function fail(reason: string): never {
  throw new StartupError(reason);
}

function nodeSettingsOf(s: NodeSettings) {
  return {
    name: s.name,
    clusterName: s.cluster_name,
    seeds: s.seeds.map(nodeId),
    dc: s.dc,
    rack: s.rack,
    numTokens: s.num_tokens,
    initialTokens: s.initial_tokens,
    autoBootstrap: s.auto_bootstrap,
    phiConvictThreshold: s.phi_convict_threshold,
    dynamicSnitchBadnessThreshold: s.dynamic_snitch_badness_threshold,
    gossipIntervalMs: s.gossip_interval,
    writeTimeoutMs: s.write_request_timeout,
    maxBackgroundWrites: s.max_background_writes,
    readTimeoutMs: s.read_request_timeout,
    commitSync: s.commit_sync,
    commitSyncPeriodMs: s.commit_sync_period,
    gcGraceSeconds: s.gc_grace_seconds,
    gcSweepIntervalMs: s.gc_sweep_interval,
    rowCacheBytes: s.row_cache_size * 1024 * 1024,
    ...(s.point_reads === 'inline' ? { inlinePointReads: PROCESS_DISK_READS } : {}),
    maxClockSkewMs: s.max_clock_skew,
    clockSkewWarnMs: s.clock_skew_warn,
    hintedHandoffEnabled: s.hinted_handoff_enabled,
    maxHintWindowMs: s.max_hint_window,
    maxHintsSizePerHostBytes: s.max_hints_size_per_host * 1024 * 1024,
    hintedHandoffThrottleKiBps: s.hinted_handoff_throttle,
    repairThrottleBytesPerSec: s.repair_throttle,
    streamThroughputBytesPerSec: s.stream_throughput,
    repairMaxSessions: s.repair_max_sessions,
    ...(s.repair_schedule_interval > 0 ? { repairScheduleIntervalMs: s.repair_schedule_interval } : {}),
    repairHistorySize: s.repair_history_size,
    goneRetentionMs: s.gone_retention,
    memory: { coordinatorInflightBytes: s.max_coordinator_inflight_bytes, mailboxBytes: s.max_mailbox_bytes, storageBatchBytes: s.max_storage_batch_bytes },
  };
}
