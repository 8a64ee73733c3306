/**
 * Round trips per second between two nodes on 127.0.0.1 through ActorSystems
 * and the ws transport, with per-tick coalescing and with one WebSocket
 * message per frame. Run: `node packages/wire/dist/bench-wire.js [asks] [inFlight] [rounds]`.
 */
import { createServer } from 'node:net';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { ActorSystem, type ReplyTo } from '@chorus/actors';
import { nodeId, realEnv } from '@chorus/core';
import { Type } from '@sinclair/typebox';
import { wireCodec } from './codec.js';
import { MESSAGE_KINDS } from './kinds.js';
import { listenWsTransport } from './ws-transport.js';

const kinds = {
  ...MESSAGE_KINDS,
  'bench.ping': { id: 990, schema: Type.Object({ n: Type.Integer() }, { additionalProperties: false }), reply: 'bench.pong' },
  'bench.pong': { id: 991, schema: Type.Object({ n: Type.Integer() }, { additionalProperties: false }) },
};
type Ping = { type: 'bench.ping'; n: number; replyTo: ReplyTo<{ type: 'bench.pong'; n: number }> };

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

interface Result {
  roundTripsPerSecond: number;
  messagesSent: number;
  framesSent: number;
}

const options = (maxFramesPerMessage: number) => ({ clusterName: 'bench', secret: 'bench-secret', maxFramesPerMessage });

/** The echoing node, in a worker thread so that the two nodes really run in parallel as two processes would. */
async function serveEcho(port: number, maxFramesPerMessage: number): Promise<void> {
  const b = await listenWsTransport({ env: realEnv(nodeId(`127.0.0.1:${port}`)), ...options(maxFramesPerMessage) });
  const system = new ActorSystem({ env: realEnv(b.localNode), transport: b, codec: wireCodec({ kinds }) });
  system.spawn<Ping>('echo', () => ({ receive: (m, ctx) => ctx.reply(m.replyTo, { type: 'bench.pong', n: m.n }) }));
  parentPort!.once('message', () => void system.shutdown().then(() => b.close()).then(() => parentPort!.postMessage('closed')));
  parentPort!.postMessage('ready');
}

async function run(asks: number, inFlight: number, maxFramesPerMessage: number): Promise<Result> {
  const portB = await freePort();
  const worker = new Worker(new URL(import.meta.url), { workerData: { port: portB, maxFramesPerMessage } });
  await new Promise((resolve) => worker.once('message', resolve));
  const a = await listenWsTransport({ env: realEnv(nodeId(`127.0.0.1:${await freePort()}`)), ...options(maxFramesPerMessage) });
  const systemA = new ActorSystem({ env: realEnv(a.localNode), transport: a, codec: wireCodec({ kinds }) });
  const echo = systemA.ref<Ping>({ node: nodeId(`127.0.0.1:${portB}`), name: 'echo' });
  const ask = (n: number) => echo.ask<{ type: 'bench.pong'; n: number }>((replyTo) => ({ type: 'bench.ping', n, replyTo }), 10_000);
  await ask(-1);
  let next = 0;
  const started = performance.now();
  const client = async () => {
    while (next < asks) await ask(next++);
  };
  await Promise.all(Array.from({ length: inFlight }, client));
  const seconds = (performance.now() - started) / 1000;
  const stats = a.stats();
  await systemA.shutdown();
  await a.close();
  worker.postMessage('close');
  await new Promise((resolve) => worker.once('message', resolve));
  await worker.terminate();
  return { roundTripsPerSecond: Math.round(asks / seconds), messagesSent: stats.messagesSent, framesSent: stats.framesSent };
}

async function best(rounds: number, asks: number, inFlight: number, maxFramesPerMessage: number): Promise<Result> {
  let top: Result | undefined;
  for (let i = 0; i < rounds; i++) {
    const r = await run(asks, inFlight, maxFramesPerMessage);
    if (!top || r.roundTripsPerSecond > top.roundTripsPerSecond) top = r;
  }
  return top!;
}

if (isMainThread) {
  const asks = Number(process.argv[2] ?? 10_000);
  const inFlight = Number(process.argv[3] ?? 200);
  const rounds = Number(process.argv[4] ?? 3);
  await run(2_000, inFlight, Number.POSITIVE_INFINITY); // warm-up
  const coalesced = await best(rounds, asks, inFlight, Number.POSITIVE_INFINITY);
  const single = await best(rounds, asks, inFlight, 1);
  console.log(`${asks} asks, ${inFlight} in flight, best of ${rounds}; asker and echo node in separate threads, ws over 127.0.0.1`);
  console.log(`  coalesced per tick : ${coalesced.roundTripsPerSecond} round trips/s (${coalesced.framesSent} frames in ${coalesced.messagesSent} WebSocket messages)`);
  console.log(`  one message/frame  : ${single.roundTripsPerSecond} round trips/s (${single.framesSent} frames in ${single.messagesSent} WebSocket messages)`);
  console.log(`  ratio              : ${(coalesced.roundTripsPerSecond / single.roundTripsPerSecond).toFixed(2)}x`);
} else {
  const { port, maxFramesPerMessage } = workerData as { port: number; maxFramesPerMessage: number };
  await serveEcho(port, maxFramesPerMessage);
}
