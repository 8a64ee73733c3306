import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { NoHostAvailable, connect } from '@chorus/client';
import * as protocol from '@chorus/client-protocol';
import type { ChorusNode } from '@chorus/node';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { tokenAuthenticator } from '../src/auth.js';
import { attachClientApi } from '../src/client-api.js';
import { ConfigError } from '../src/errors.js';
import { buildApi } from '../src/http-api.js';
import type { Metrics } from '../src/metrics.js';

const metrics = { contentType: 'text/plain; version=0.0.4', render: async () => '# metrics\n', timeRequest: () => () => undefined } as unknown as Metrics;
const GOOD = 'a-token-of-the-file-0123456789';
const OTHER = 'another-token-of-the-file-987654321';

function recordingLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'info' }, sink), lines };
}

describe('client authentication by token', () => {
  const dirs: string[] = [];
  const closers: Array<() => Promise<unknown>> = [];
  const tokensFile = (text: string) => {
    const dir = mkdtempSync(join(tmpdir(), 'chorus-auth-'));
    dirs.push(dir);
    const file = join(dir, 'tokens');
    writeFileSync(file, text);
    return file;
  };
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  describe('the tokens file', () => {
    it('holds one token per line; blank lines and # comments are skipped', () => {
      const { logger } = recordingLogger();
      const auth = tokenAuthenticator(tokensFile(`# tokens of the ops team\n${GOOD}\n\n   # rotated 2026-11\n  ${OTHER}  \n`), logger);
      expect(auth.tokens).toBe(2);
      expect(auth.allows(`Bearer ${GOOD}`)).toBe(true);
      expect(auth.allows(`bearer ${OTHER}`)).toBe(true);
      expect(auth.allows(`Bearer ${GOOD}x`)).toBe(false);
      expect(auth.allows(GOOD)).toBe(false);
      expect(auth.allows(`Basic ${GOOD}`)).toBe(false);
      expect(auth.allows(undefined)).toBe(false);
      expect(auth.allows('Bearer ')).toBe(false);
    });

    it('refuses a missing file, an empty one, and a short or malformed token, each in one line', () => {
      const { logger } = recordingLogger();
      const oneLine = (make: () => unknown): string => {
        try {
          make();
        } catch (error) {
          expect(error).toBeInstanceOf(ConfigError);
          const message = (error as Error).message;
          expect(message).not.toContain('\n');
          return message;
        }
        throw new Error('no error');
      };
      expect(oneLine(() => tokenAuthenticator('/nonexistent/chorus-tokens', logger))).toMatch(/authenticator_tokens_file .*\/nonexistent\/chorus-tokens.*ENOENT/);
      expect(oneLine(() => tokenAuthenticator(tokensFile('# nothing yet\n\n'), logger))).toMatch(/holds no token/);
      expect(oneLine(() => tokenAuthenticator(tokensFile(`${GOOD}\nshort\n`), logger))).toMatch(/line 2: a token has at least 16 characters/);
      expect(oneLine(() => tokenAuthenticator(tokensFile(`${GOOD} with spaces inside\n`), logger))).toMatch(/line 1: .*letters, digits/);
      // Nothing of the refused file leaks into the message.
      expect(oneLine(() => tokenAuthenticator(tokensFile(`${GOOD}\nshort\n`), logger))).not.toContain(GOOD);
    });

    it('is read again by reload(): a removed token is refused from then on; a broken file keeps the tokens in force', () => {
      const { logger } = recordingLogger();
      const file = tokensFile(`${GOOD}\n`);
      const auth = tokenAuthenticator(file, logger);
      writeFileSync(file, `${OTHER}\n`);
      expect(auth.reload()).toBe(1);
      expect(auth.allows(`Bearer ${GOOD}`)).toBe(false);
      expect(auth.allows(`Bearer ${OTHER}`)).toBe(true);
      writeFileSync(file, 'short\n');
      expect(() => auth.reload()).toThrow(ConfigError);
      expect(auth.allows(`Bearer ${OTHER}`)).toBe(true);
    });
  });

  describe('over HTTP', () => {
    const start = (options: { metricsRequireAuth?: boolean } = {}) => {
      const { logger, lines } = recordingLogger();
      const authenticator = tokenAuthenticator(tokensFile(`${GOOD}\n`), logger);
      const app = buildApi({ logger, metrics, node: () => undefined, auth: { authenticator, metrics: options.metricsRequireAuth ?? false } });
      closers.push(() => app.close());
      return { app, lines };
    };

    it('answers 401 Unauthorized without a token or with a wrong one, and lets a right one through', async () => {
      const { app } = start();
      for (const headers of [{}, { authorization: `Bearer ${OTHER}` }, { authorization: `Basic ${GOOD}` }, { authorization: `Bearer ${GOOD.slice(0, -1)}` }]) {
        for (const request of [{ method: 'GET', url: '/v1/status' }, { method: 'PUT', url: '/v1/kv/default/k', payload: 'v' }, { method: 'GET', url: '/v1/nothing-here' }] as const) {
          const answer = await app.inject({ ...request, headers });
          expect(answer.statusCode, `${request.method} ${request.url} ${JSON.stringify(headers)}`).toBe(401);
          expect(answer.json()).toEqual({ error: 'Unauthorized', message: 'a valid bearer token is required' });
          expect(answer.headers['www-authenticate']).toBe('Bearer realm="chorus"');
        }
      }
      // Past authentication, the request meets the starting node.
      const through = await app.inject({ method: 'GET', url: '/v1/status', headers: { authorization: `Bearer ${GOOD}` } });
      expect(through.statusCode).toBe(503);
      expect(through.json()).toMatchObject({ error: 'NodeStarting' });
    });

    it('leaves /health open, and /metrics open unless metrics_require_auth', async () => {
      const open = start();
      expect((await open.app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(503); // starting, not 401
      expect((await open.app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(200);
      const closed = start({ metricsRequireAuth: true });
      expect((await closed.app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(401);
      expect((await closed.app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${GOOD}` } })).statusCode).toBe(200);
      expect((await closed.app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(503);
    });

    it('logs refusals with the source address, a few lines however many requests are refused', async () => {
      const { app, lines } = start();
      for (let i = 0; i < 200; i++) await app.inject({ method: 'GET', url: '/v1/status', remoteAddress: '10.1.2.3' });
      const refusals = lines.filter((l) => l.msg === 'refused a request without a valid token');
      expect(refusals.length).toBeGreaterThanOrEqual(1);
      expect(refusals.length).toBeLessThanOrEqual(10);
      expect(refusals[0]).toMatchObject({ remote: '10.1.2.3', path: '/v1/status' });
      expect(JSON.stringify(lines)).not.toContain(GOOD);
    });
  });

  describe('over the client protocol', () => {
    const start = async () => {
      const { logger } = recordingLogger();
      const server: Server = createServer((_req, res) => res.writeHead(404).end());
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
      const address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
      const node = { address, name: 'n1', hostId: 'h', coordinator: { get: async () => ({ value: Buffer.from('v'), timestampMicros: 7 }) }, ring: async () => ({ tokens: [] }), keyspaces: async () => ({ keyspaces: [] }) } as unknown as ChorusNode;
      const authenticator = tokenAuthenticator(tokensFile(`${GOOD}\n`), logger);
      const api = attachClientApi({ server, node: () => node, logger, authenticator });
      closers.push(async () => {
        await api.close();
        server.closeAllConnections();
        await new Promise<void>((r) => server.close(() => r()));
      });
      return address;
    };
    const upgrade = (address: string, headers: Record<string, string>) =>
      new Promise<string>((resolve) => {
        const ws = new WebSocket(`ws://${address}${protocol.CLIENT_PATH}`, { headers });
        ws.on('open', () => {
          ws.close();
          resolve('open');
        });
        ws.on('unexpected-response', (_req, res) => {
          let body = '';
          res.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
          res.on('end', () => resolve(`${res.statusCode} ${body}`));
        });
        ws.on('error', (error) => resolve(`error ${error.message}`));
      });

    it('refuses the WebSocket upgrade with 401 without a valid token', async () => {
      const address = await start();
      expect(await upgrade(address, {})).toBe('401 {"error":"Unauthorized","message":"a valid bearer token is required"}');
      expect(await upgrade(address, { authorization: `Bearer ${OTHER}` })).toMatch(/^401 /);
      expect(await upgrade(address, { authorization: `Bearer ${GOOD}` })).toBe('open');
    });

    it('@chorus/client sends its token option; without it, the failure names Unauthorized', async () => {
      const address = await start();
      const client = connect(address, { token: GOOD, discover: false });
      closers.push(() => client.close());
      expect(Buffer.from((await client.get('default', 'k'))!.value).toString()).toBe('v');
      const anonymous = connect(address, { discover: false, maxAttempts: 1, connectTimeoutMs: 2_000 });
      closers.push(() => anonymous.close());
      const error = await anonymous.get('default', 'k').then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(NoHostAvailable);
      expect((error as Error).message).toMatch(/Unauthorized/);
    });
  });
});
