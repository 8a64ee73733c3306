import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request as httpRequestTo } from 'node:http';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as protocol from '@chorus/client-protocol';
import { SeededRandom, nodeId } from '@chorus/core';
import { ClientHandshake, PEER_PATH, wireCodec } from '@chorus/wire';
import WebSocket from 'ws';
import { addressOf, readLayout, runningPid, startCluster, stopCluster } from './cluster.js';
import { CliError } from './http.js';
import { type HttpInput, clientMessage, handshakeMessage, httpRequest, peerFrame, peerMessage, rawHttp } from './fuzz-inputs.js';

export interface FuzzOptions {
  /** Inputs to send: peer frames, handshake messages, client requests and HTTP requests all count one each. */
  frames: number;
  seed: number;
  /** A live node to fuzz; without it the fuzzer starts a one-node cluster of its own and stops it afterwards. */
  host?: string;
  /** The `chorus cluster` directory of that node: its secret, log and pid come from there (default .chorus/cluster). */
  dir?: string;
  /** The cluster secret, when the directory does not say it. */
  secret?: string;
  clusterName?: string;
  /** Port of the node the fuzzer starts (default 7450). */
  basePort?: number;
  /** Keep the node the fuzzer started, and its directory. */
  keep?: boolean;
  log?: (line: string) => void;
}

export interface FuzzReport {
  seed: number;
  host: string;
  frames: number;
  sent: { peer: number; handshake: number; client: number; http: number; rawHttp: number };
  /** ERROR and FATAL lines the node logged while it was fuzzed (null when its log is unknown). */
  nodeErrors: number | null;
  nodeFatal: number | null;
  /** The first few of them, as `msg: err.message`. */
  errorSamples: string[];
  /** 1 when the node process exited during the run (or stopped answering /health at the end). */
  crashes: number;
  peerReconnects: number;
  clientReconnects: number;
  /** SHA-256 of every input in order: the same seed gives the same digest. */
  inputsSha256: string;
  elapsedMs: number;
  framesPerSec: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Outgoing bytes a channel lets pile up before waiting for the node to read them. */
const MAX_BUFFERED = 1024 * 1024;
/** A peer id for the fuzzer: a port nothing listens on, so the node's dials back fail at once. */
const FUZZ_PEER = nodeId('127.0.0.1:9');

interface Target {
  host: string;
  secret: string;
  clusterName: string;
  logFile: string | undefined;
  alive: () => boolean;
  stop: () => Promise<void>;
}

async function targetOf(o: FuzzOptions, log: (line: string) => void): Promise<Target> {
  const clusterName = o.clusterName ?? 'chorus';
  if (o.host === undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'chorus-fuzz-'));
    const basePort = o.basePort ?? 7450;
    // A fuzzer killed mid-run must not leave its node behind.
    process.env.CHORUS_STOP_WITH_PIDS = String(process.pid);
    await startCluster({ nodes: 1, dir, basePort, rf: 1, secret: randomBytes(18).toString('base64url'), set: ['commit_sync=none'], log });
    const layout = readLayout(dir)!;
    return {
      host: addressOf(layout, 'n1'),
      secret: layout.secret,
      clusterName,
      logFile: join(dir, 'n1.log'),
      alive: () => runningPid(dir, 'n1') !== undefined,
      stop: async () => {
        if (o.keep) return log(`kept the node and its directory ${dir}`);
        await stopCluster(dir, undefined, log).catch(() => undefined);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  const dir = resolve(o.dir ?? '.chorus/cluster');
  const layout = readLayout(dir);
  const name = layout?.nodes.find((n) => addressOf(layout, n) === o.host);
  const secret = o.secret ?? layout?.secret;
  if (secret === undefined) throw new CliError(`no cluster secret for ${o.host}: pass --secret, or --dir of the cluster it belongs to`);
  const logFile = name !== undefined && existsSync(join(dir, `${name}.log`)) ? join(dir, `${name}.log`) : undefined;
  return {
    host: o.host,
    secret,
    clusterName,
    logFile,
    // Without its pid, a node is alive while it answers: checked at the end.
    alive: () => (name === undefined ? true : runningPid(dir, name) !== undefined),
    stop: async () => {},
  };
}

/** ERROR (50) and FATAL (60) lines of a pino log, from byte `from` on. */
function logErrors(file: string | undefined, from: number): { errors: number; fatal: number; samples: string[]; size: number } {
  if (file === undefined || !existsSync(file)) return { errors: 0, fatal: 0, samples: [], size: 0 };
  const text = readFileSync(file).subarray(from).toString('utf8');
  let errors = 0;
  let fatal = 0;
  const samples: string[] = [];
  for (const line of text.split('\n')) {
    if (!line.includes('"level":5') && !line.includes('"level":6')) continue;
    try {
      const entry = JSON.parse(line) as { level: number; msg?: string; err?: { message?: string; stack?: string } };
      if (entry.level >= 60) fatal++;
      else if (entry.level >= 50) errors++;
      else continue;
      if (samples.length < 10) samples.push([entry.msg, entry.err?.message, entry.err?.stack?.split('\n')[1]?.trim()].filter(Boolean).join(': '));
    } catch {
      // A line cut by a crash: counted by the crash.
    }
  }
  return { errors, fatal, samples, size: from + Buffer.byteLength(text) };
}

/** Runs tasks with at most `limit` at once; `run` waits only for a free slot. */
class Pool {
  private active = 0;
  private waiters: Array<() => void> = [];
  constructor(private readonly limit: number) {}
  async run(task: () => Promise<void>): Promise<void> {
    while (this.active >= this.limit) await new Promise<void>((r) => this.waiters.push(r));
    this.active++;
    void task()
      .catch(() => undefined)
      .finally(() => {
        this.active--;
        this.waiters.shift()?.();
      });
  }
  async idle(): Promise<void> {
    while (this.active > 0) await new Promise<void>((r) => this.waiters.push(r));
  }
}

async function drained(ws: WebSocket): Promise<void> {
  while (ws.readyState === WebSocket.OPEN && ws.bufferedAmount > MAX_BUFFERED) await sleep(2);
}

/** A peer connection through the real handshake; reopened when the node closes it (too many bad frames, say). */
class PeerChannel {
  reconnects = 0;
  private ws: WebSocket | undefined;
  private readonly nonces: SeededRandom;
  constructor(private readonly t: Target, seed: number) {
    this.nonces = new SeededRandom(seed, 'fuzz-handshake-nonces');
  }

  private async open(): Promise<WebSocket | undefined> {
    const ws = new WebSocket(`ws://${this.t.host}${PEER_PATH}`, { perMessageDeflate: false, handshakeTimeout: 5_000 });
    const handshake = new ClientHandshake({ clusterName: this.t.clusterName, secret: Buffer.from(this.t.secret, 'utf8'), localNode: FUZZ_PEER, random: this.nonces }, nodeId(this.t.host));
    const done = await new Promise<boolean>((resolveDone) => {
      const timer = setTimeout(() => resolveDone(false), 5_000);
      ws.on('error', () => resolveDone(false));
      ws.on('close', () => resolveDone(false));
      ws.once('open', () => ws.send(handshake.hello()));
      ws.on('message', (data: Buffer) => {
        try {
          const step = handshake.receive(new Uint8Array(data));
          if (step.reply) ws.send(step.reply);
          if (step.done) {
            clearTimeout(timer);
            ws.removeAllListeners('message');
            resolveDone(true);
          }
        } catch {
          resolveDone(false);
        }
      });
    });
    if (!done) {
      ws.terminate();
      return undefined;
    }
    return ws;
  }

  async send(data: Uint8Array | string, binary: boolean): Promise<void> {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      if (this.ws) this.reconnects++;
      this.ws = undefined;
      for (let attempt = 0; attempt < 20 && !this.ws; attempt++) {
        this.ws = await this.open();
        if (!this.ws) await sleep(100);
      }
      if (!this.ws) throw new CliError(`cannot complete a peer handshake with ${this.t.host}`);
    }
    this.ws.send(data, { binary });
    await drained(this.ws);
  }

  close(): void {
    this.ws?.terminate();
  }
}

/** A client-protocol connection; reopened when the node closes it (a message that is not a request closes it). */
class ClientChannel {
  reconnects = 0;
  private ws: WebSocket | undefined;
  constructor(private readonly host: string) {}

  private async open(): Promise<WebSocket | undefined> {
    const ws = new WebSocket(`ws://${this.host}${protocol.CLIENT_PATH}`, { perMessageDeflate: false, handshakeTimeout: 5_000 });
    const open = await new Promise<boolean>((r) => {
      ws.once('open', () => r(true));
      ws.once('error', () => r(false));
    });
    ws.on('error', () => undefined);
    return open ? ws : undefined;
  }

  async send(data: Uint8Array | string, binary: boolean): Promise<void> {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      if (this.ws) this.reconnects++;
      this.ws = undefined;
      for (let attempt = 0; attempt < 20 && !this.ws; attempt++) {
        this.ws = await this.open();
        if (!this.ws) await sleep(100);
      }
      if (!this.ws) throw new CliError(`cannot open a client connection to ${this.host}`);
    }
    this.ws.send(data, { binary });
    await drained(this.ws);
  }

  close(): void {
    this.ws?.terminate();
  }
}

/** Opens a peer connection and sends handshake messages without the secret; the node must refuse and close it. */
async function strangerHandshake(host: string, messages: Uint8Array[]): Promise<void> {
  const ws = new WebSocket(`ws://${host}${PEER_PATH}`, { perMessageDeflate: false, handshakeTimeout: 3_000 });
  ws.on('error', () => undefined);
  await new Promise<void>((r) => {
    const timer = setTimeout(r, 500);
    ws.once('close', () => {
      clearTimeout(timer);
      r();
    });
    ws.once('open', () => {
      for (const m of messages) if (ws.readyState === WebSocket.OPEN) ws.send(m);
    });
  });
  ws.terminate();
}

function sendHttp(host: string, agent: Agent, input: HttpInput): Promise<void> {
  const [hostname, port] = [host.slice(0, host.lastIndexOf(':')), Number(host.slice(host.lastIndexOf(':') + 1))];
  return new Promise<void>((done) => {
    let req: ReturnType<typeof httpRequestTo>;
    try {
      req = httpRequestTo({ hostname, port, method: input.method, path: input.path, headers: input.headers, agent, timeout: 10_000 }, (res) => {
        res.resume();
        res.on('end', done);
        res.on('error', () => done());
      });
    } catch {
      // Node's own client refuses some inputs (a path with spaces); they never reach the node.
      done();
      return;
    }
    req.on('error', () => done());
    req.on('timeout', () => req.destroy());
    req.end(input.body);
  });
}

function sendRaw(host: string, bytes: Buffer): Promise<void> {
  const at = host.lastIndexOf(':');
  return new Promise<void>((done) => {
    const socket = tcpConnect({ host: host.slice(0, at), port: Number(host.slice(at + 1)) });
    const finish = () => {
      socket.destroy();
      done();
    };
    socket.setTimeout(500, finish);
    socket.on('error', finish);
    socket.on('close', finish);
    socket.on('data', () => undefined);
    socket.once('connect', () => socket.end(bytes));
  });
}

async function healthy(host: string): Promise<boolean> {
  const agent = new Agent({ keepAlive: false });
  for (let attempt = 0; attempt < 20; attempt++) {
    const ok = await new Promise<boolean>((r) => {
      const [hostname, port] = [host.slice(0, host.lastIndexOf(':')), Number(host.slice(host.lastIndexOf(':') + 1))];
      const req = httpRequestTo({ hostname, port, path: '/health', agent, timeout: 5_000 }, (res) => {
        res.resume();
        r(res.statusCode === 200);
      });
      req.on('error', () => r(false));
      req.on('timeout', () => req.destroy());
      req.end();
    });
    if (ok) return true;
    await sleep(250);
  }
  return false;
}

/**
 * Feeds a live node `frames` inputs made from `seed`: peer frames over an
 * authenticated connection (60 %), handshake messages from a stranger (4 %),
 * client-protocol requests (20 %), HTTP requests (15 %) and bytes that are
 * not HTTP (1 %). Counts the ERROR and FATAL lines the node logs meanwhile
 * and whether its process survives.
 */
export async function runFuzz(o: FuzzOptions): Promise<FuzzReport> {
  const log = o.log ?? (() => {});
  if (!Number.isSafeInteger(o.frames) || o.frames < 1) throw new CliError(`--frames must be a positive integer, got ${o.frames}`);
  if (!Number.isSafeInteger(o.seed)) throw new CliError(`--seed must be an integer, got ${o.seed}`);
  const target = await targetOf(o, log);
  try {
    return await fuzzTarget(o, target, log);
  } finally {
    // Also when the run itself fails: the node the fuzzer started, and its directory, go with it.
    await target.stop();
  }
}

async function fuzzTarget(o: FuzzOptions, target: Target, log: (line: string) => void): Promise<FuzzReport> {
  const startLog = logErrors(target.logFile, 0).size;
  const r = new SeededRandom(o.seed, 'fuzz');
  const codec = wireCodec();
  const packr = protocol.createPackr();
  const digest = createHash('sha256');
  const sent = { peer: 0, handshake: 0, client: 0, http: 0, rawHttp: 0 };
  const peer = new PeerChannel(target, o.seed);
  const client = new ClientChannel(target.host);
  const agent = new Agent({ keepAlive: true, maxSockets: 16 });
  const httpPool = new Pool(16);
  const strangerPool = new Pool(2);
  const rawPool = new Pool(4);
  let clientIds = 1;
  let crashed = false;
  let lastCheck = performance.now();
  let lastReport = performance.now();
  const started = performance.now();
  const record = (bytes: Uint8Array | string) => digest.update(typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes);
  const total = () => sent.peer + sent.handshake + sent.client + sent.http + sent.rawHttp;
  /** Runs a send; false when it failed because the node is gone (a channel that cannot reconnect to a live node is an error of its own). */
  const survived = async (send: () => Promise<void>): Promise<boolean> => {
    try {
      await send();
      return true;
    } catch (error) {
      if (target.alive()) throw error;
      log(`the node exited after ${total()} inputs`);
      return false;
    }
  };
  try {
    while (total() < o.frames && !crashed) {
      const roll = r.int(100);
      if (roll < 60) {
        const frames = Array.from({ length: 1 + r.int(8) }, () => peerFrame(r, codec, packr));
        const message = peerMessage(r, frames);
        record(message.data);
        sent.peer += frames.length;
        crashed = !(await survived(() => peer.send(message.data, message.binary)));
      } else if (roll < 64) {
        const messages = Array.from({ length: 1 + r.int(3) }, () => handshakeMessage(r, packr, { cluster: target.clusterName, node: '127.0.0.1:10', to: target.host }));
        for (const m of messages) record(m);
        sent.handshake += messages.length;
        await strangerPool.run(() => strangerHandshake(target.host, messages));
      } else if (roll < 84) {
        const message = clientMessage(r, packr, () => clientIds++);
        record(message.data);
        sent.client += message.requests;
        crashed = !(await survived(() => client.send(message.data, message.binary)));
      } else if (roll < 99) {
        const input = httpRequest(r);
        record(`${input.method} ${input.path} ${JSON.stringify(input.headers)}`);
        if (input.body) record(input.body);
        sent.http++;
        await httpPool.run(() => sendHttp(target.host, agent, input));
      } else {
        const bytes = rawHttp(r);
        record(bytes);
        sent.rawHttp++;
        await rawPool.run(() => sendRaw(target.host, bytes));
      }
      const now = performance.now();
      if (now - lastCheck > 500) {
        lastCheck = now;
        if (!target.alive()) {
          crashed = true;
          log(`the node exited after ${total()} inputs`);
          break;
        }
        // Let answers and timers run: the loop itself only yields when a channel is full.
        await sleep(0);
      }
      if (now - lastReport > 10_000) {
        lastReport = now;
        log(`${total()} inputs sent (${Math.round(total() / ((now - started) / 1000))}/s)`);
      }
    }
    await Promise.all([httpPool.idle(), strangerPool.idle(), rawPool.idle()]);
    if (!crashed && (!target.alive() || !(await healthy(target.host)))) crashed = true;
  } finally {
    peer.close();
    client.close();
    agent.destroy();
  }
  const elapsedMs = performance.now() - started;
  // Give the node a moment to write what the last inputs made it log.
  await sleep(500);
  const errors = target.logFile === undefined ? undefined : logErrors(target.logFile, startLog);
  return {
    seed: o.seed,
    host: target.host,
    frames: total(),
    sent,
    nodeErrors: errors === undefined ? null : errors.errors,
    nodeFatal: errors === undefined ? null : errors.fatal,
    errorSamples: errors?.samples ?? [],
    crashes: crashed ? 1 : 0,
    peerReconnects: peer.reconnects,
    clientReconnects: client.reconnects,
    inputsSha256: digest.digest('hex'),
    elapsedMs: Math.round(elapsedMs),
    framesPerSec: Math.round(total() / (elapsedMs / 1000)),
  };
}
