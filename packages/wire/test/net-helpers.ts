import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { type Logger, type NodeId, nodeId, realEnv } from '@chorus/core';
import { type WsTransport, type WsTransportOptions, listenWsTransport } from '../src/index.js';

export const CLUSTER = 'test-cluster';
export const SECRET = 'correct horse battery staple';

/** Short timings so that failures show within a test's budget. */
export const FAST = { pingIntervalMs: 100, pingTimeoutMs: 600, handshakeTimeoutMs: 1_000, minBackoffMs: 20, maxBackoffMs: 200 } as const;

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

export async function until(condition: () => boolean, timeoutMs: number, stepMs = 5): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, stepMs));
  }
  return true;
}

export const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A transport with its own server on a free 127.0.0.1 port. */
export async function startNode(overrides: Partial<WsTransportOptions> & { port?: number; logger?: Logger } = {}): Promise<WsTransport> {
  const { port: wanted, logger, ...rest } = overrides;
  const port = wanted ?? (await freePort());
  const node = nodeId(`127.0.0.1:${port}`);
  return listenWsTransport({ env: realEnv(node, logger), clusterName: CLUSTER, secret: SECRET, ...FAST, ...rest });
}
