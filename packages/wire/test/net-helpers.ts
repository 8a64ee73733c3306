import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { type Logger, type NodeId, nodeId, realEnv } from '@chorus/core';
import { type WsTransport, type WsTransportOptions, listenWsTransport } from '../src/index.js';

export const CLUSTER = 'test-cluster';
export const SECRET = 'correct horse battery staple';

/**
 * One knob for every deadline of these tests: a slow or busy machine sets
 * CHORUS_TEST_TIME_SCALE (e.g. 3) and every wait grows by that factor.
 */
export const TIME_SCALE = Math.max(1, Number(process.env.CHORUS_TEST_TIME_SCALE ?? 1) || 1);
export function scaled(ms: number): number {
  return Math.round(ms * TIME_SCALE);
}

/** How long something that should happen promptly may take before a wait gives up; waits end as soon as their condition holds. */
export const WAIT_MS = scaled(10_000);
/** A test's own budget: several waits in a row fit in it. */
export const TEST_TIMEOUT_MS = scaled(60_000);

/**
 * Quick retries, so reconnects do not slow the tests, but liveness timeouts longer than any
 * test runs: a busy machine that stalls the event loop must not make a link flap, because
 * tests assert exact sequences of link states. Only a test about ping or handshake timeouts
 * sets short ones, for itself.
 */
export const TIMINGS = { pingIntervalMs: 100, pingTimeoutMs: TEST_TIMEOUT_MS, handshakeTimeoutMs: WAIT_MS, minBackoffMs: 20, maxBackoffMs: 200 } as const;

export interface LogLine {
  level: 'debug' | 'info' | 'warn' | 'error';
  obj: Record<string, unknown>;
  msg: string | undefined;
}

export function recordingLogger(lines: LogLine[] = []): Logger & { lines: LogLine[] } {
  const at = (level: LogLine['level']) => (obj: object, msg?: string) => void lines.push({ level, obj: obj as Record<string, unknown>, msg });
  const logger = { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => logger };
  return logger;
}

/** Whether this machine can listen on `host` (127.0.0.2, say, is not on every loopback). */
export async function canListenOn(host: string): Promise<boolean> {
  const server = createNetServer();
  const bound = await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(0, host, () => resolve(true));
  });
  if (bound) await new Promise<void>((resolve) => server.close(() => resolve()));
  return bound;
}

/** A port nothing listens on right now: bound by the OS, then released. */
export async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export async function listenHttp(): Promise<{ server: Server; node: NodeId }> {
  const server = createHttpServer((_req, res) => res.writeHead(404).end());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, node: nodeId(`127.0.0.1:${(server.address() as { port: number }).port}`) };
}

export async function closeHttp(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

export async function until(condition: () => boolean, timeoutMs = WAIT_MS, stepMs = 5): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, stepMs));
  }
  return true;
}

/** Whether `promise` settles within `timeoutMs`; for waits on events that come as promises. */
export async function settles(promise: Promise<unknown>, timeoutMs = WAIT_MS): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
  try {
    return await Promise.race([promise.then(() => true, () => true), expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** A transport with its own server on a free 127.0.0.1 port. */
export async function startNode(overrides: Partial<WsTransportOptions> & { port?: number; logger?: Logger } = {}): Promise<WsTransport> {
  const { port: wanted, logger, ...rest } = overrides;
  const port = wanted ?? (await freePort());
  const node = nodeId(`127.0.0.1:${port}`);
  return listenWsTransport({ env: realEnv(node, logger), clusterName: CLUSTER, secret: SECRET, ...TIMINGS, ...rest });
}
