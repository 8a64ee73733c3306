import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { caPath, createCa, firstToken, issueCert, tokensPath } from '@chorus/cli';
import { type ChorusClient, NoHostAvailable, connect } from '@chorus/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { TestCluster, chorus, scaled, spawnChorus, tempDir } from './harness.js';

interface StatusNode {
  name: string;
  address: string;
  state: string;
}

/** What a plain (non-TLS) connection to the port gets: a status, or the error that cut it. */
function plainHttp(address: string, path: string): Promise<string> {
  return fetch(`http://${address}${path}`, { signal: AbortSignal.timeout(scaled(5_000)) }).then((r) => `status ${r.status}`, (error: Error) => `error ${error.message}`);
}

function httpsGet(address: string, path: string, ca: string, token?: string): Promise<{ status: number; body: string }> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host, port, path, ca, timeout: scaled(5_000), headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

/** Opens a WebSocket and tells how it ended: `open`, the HTTP status of a refused upgrade, or the error. */
function tryWebSocket(url: string, options: WebSocket.ClientOptions = {}): Promise<string> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { handshakeTimeout: scaled(5_000), ...options });
    ws.on('open', () => {
      ws.terminate();
      resolve('open');
    });
    ws.on('unexpected-response', (req, res) => {
      resolve(`status ${res.statusCode}`);
      req.destroy();
    });
    ws.on('error', (error) => resolve(`error ${error.message}`));
  });
}

describe('a local cluster started with --tls --auth', () => {
  const cluster = new TestCluster();
  const clients: ChorusClient[] = [];
  const rogues: ChildProcess[] = [];
  let ca: string;
  let token: string;
  let access: string[];

  beforeAll(async () => {
    await cluster.start(2, ['--tls', '--auth']);
    ca = readFileSync(caPath(cluster.dir), 'utf8');
    token = firstToken(tokensPath(cluster.dir));
    access = ['--tls-ca', caPath(cluster.dir), '--token', token];
  });
  afterAll(async () => {
    for (const c of clients) await c.close();
    for (const rogue of rogues) rogue.kill('SIGKILL');
    await cluster.destroy();
  });

  it('forms, and serves chorus put and get over TLS with the token', async () => {
    const status = JSON.parse(await chorus(['status', '--json', '--host', cluster.address('n2'), ...access])) as { nodes: StatusNode[] };
    expect(status.nodes.map((n) => `${n.name} ${n.state}`).sort()).toEqual(['n1 UN', 'n2 UN']);
    await chorus(['put', 'greeting', 'over tls', '--consistency', 'ALL', '--host', cluster.address('n1'), ...access]);
    expect((await chorus(['get', 'greeting', '--consistency', 'ALL', '--host', cluster.address('n2'), ...access])).trim()).toBe('over tls');
  });

  it('refuses the CLI without a token, with a wrong one, and without the CA', async () => {
    await expect(chorus(['get', 'greeting', '--host', cluster.address('n1'), '--tls-ca', caPath(cluster.dir)])).rejects.toThrow(/Unauthorized: a valid bearer token is required \(give --token or set CHORUS_TOKEN\)/);
    await expect(chorus(['get', 'greeting', '--host', cluster.address('n1'), '--tls-ca', caPath(cluster.dir), '--token', 'a-wrong-token-of-no-file-0000'])).rejects.toThrow(/Unauthorized/);
    await expect(chorus(['get', 'greeting', '--host', cluster.address('n1'), '--token', token])).rejects.toThrow(/cannot reach .*give --tls-ca/);
  });

  it('answers HTTP without a valid token 401, and leaves /health open', async () => {
    expect(await httpsGet(cluster.address('n1'), '/v1/status', ca)).toEqual({ status: 401, body: '{"error":"Unauthorized","message":"a valid bearer token is required"}' });
    expect((await httpsGet(cluster.address('n1'), '/v1/status', ca, 'a-wrong-token-of-no-file-0000')).status).toBe(401);
    expect((await httpsGet(cluster.address('n1'), '/v1/status', ca, token)).status).toBe(200);
    expect((await httpsGet(cluster.address('n1'), '/health', ca)).status).toBe(200);
    expect((await httpsGet(cluster.address('n1'), '/metrics', ca)).status).toBe(200);
    expect(cluster.log('n1')).toMatch(/"remote":"127\.0\.0\.1".*"msg":"refused a request without a valid token"/);
  });

  it('serves @chorus/client with the token and the CA, and refuses it without the token', async () => {
    const client = connect([cluster.address('n1')], { token, ca, requestTimeoutMs: scaled(8_000) });
    clients.push(client);
    await client.put('default', 'from-client', 'hi', { consistency: 'ALL' });
    expect(Buffer.from((await client.get('default', 'from-client', { consistency: 'ALL' }))!.value).toString()).toBe('hi');
    const anonymous = connect([cluster.address('n1')], { ca, discover: false, maxAttempts: 1, requestTimeoutMs: scaled(8_000) });
    clients.push(anonymous);
    const error = await anonymous.get('default', 'from-client').then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(NoHostAvailable);
    expect((error as Error).message).toMatch(/Unauthorized/);
    expect(await tryWebSocket(`wss://${cluster.address('n1')}/client`, { ca })).toBe('status 401');
  });

  it('encrypts the port: plain HTTP, a plain ws:// peer connection and a TLS one without a certificate are refused', async () => {
    expect(await plainHttp(cluster.address('n1'), '/health')).toMatch(/^error/);
    expect(await tryWebSocket(`ws://${cluster.address('n1')}/peer`)).toMatch(/^error/);
    expect(await tryWebSocket(`wss://${cluster.address('n1')}/peer`, { ca })).toBe('status 403');
  });

  /** A node process outside the cluster, on the port after the cluster's, dialing n1 as its seed. */
  const rogue = (name: string, pem: { cert: string; key: string }, caPem: string, secret: string) => {
    const dir = tempDir(`${name}-`);
    const files = { cert: join(dir, 'node.pem'), key: join(dir, 'node-key.pem'), ca: join(dir, 'ca.pem') };
    writeFileSync(files.cert, pem.cert);
    writeFileSync(files.key, pem.key);
    writeFileSync(files.ca, caPem);
    const address = `127.0.0.1:${cluster.basePort + 2}`;
    const child = spawnChorus(
      ['node', 'start', '--name', name, '--listen', address, '--seeds', cluster.address('n1'), '--data', join(dir, 'data'), '--secret', secret, '--num-tokens', '4',
        '--set', 'internode_encryption=all', '--set', 'client_encryption=true', '--set', `tls_cert_file=${files.cert}`, '--set', `tls_key_file=${files.key}`, '--set', `tls_ca_file=${files.ca}`],
      { pidFile: join(dir, 'pid') },
    );
    rogues.push(child);
    return child;
  };
  const stopRogue = async (child: ChildProcess) => {
    child.kill('SIGKILL');
    if (child.exitCode === null && child.signalCode === null) await new Promise((resolve) => child.once('exit', resolve));
  };
  const seenByN1 = async (name: string) => ((JSON.parse(await chorus(['status', '--json', '--host', cluster.address('n1'), ...access])) as { nodes: StatusNode[] }).nodes).some((n) => n.name === name);
  const secretOf = () => (JSON.parse(readFileSync(join(cluster.dir, 'cluster.json'), 'utf8')) as { secret: string }).secret;

  it('refuses a node whose certificate another CA signed, though it has the cluster secret', async () => {
    const otherCa = createCa('another CA');
    const refusals = () => cluster.log('n1').split('\n').filter((line) => line.includes('refused a peer connection without a certificate of the cluster CA')).length;
    const before = refusals();
    // The stranger trusts the cluster's CA, so it completes TLS with n1: only n1's check of the stranger's certificate stands in its way.
    const child = rogue('stranger', issueCert(otherCa, 'stranger', ['127.0.0.1']), ca, secretOf());
    await cluster.waitFor('n1 to refuse the stranger', async () => refusals() > before, scaled(30_000));
    expect(await seenByN1('stranger')).toBe(false);
    await stopRogue(child);
  });

  it('refuses a node with a certificate of the cluster CA but without the cluster secret', async () => {
    const clusterCa = { cert: ca, key: readFileSync(join(cluster.dir, 'tls', 'ca-key.pem'), 'utf8') };
    const child = rogue('intruder', issueCert(clusterCa, 'intruder', ['127.0.0.1']), ca, 'not-the-cluster-secret');
    await cluster.waitFor('n1 to refuse the intruder', async () => /"reason":"bad secret"/.test(cluster.log('n1')), scaled(30_000));
    expect(await seenByN1('intruder')).toBe(false);
    await stopRogue(child);
  });
});

describe('security settings at start', () => {
  const start = (dir: string, ...sets: string[]) =>
    chorus(['node', 'start', '--name', 'n1', '--listen', '127.0.0.1:1', '--data', join(dir, 'data'), '--secret', 'a-secret-long-enough', ...sets.flatMap((s) => ['--set', s])], scaled(30_000));
  const oneLine = async (promise: Promise<unknown>): Promise<string> => {
    const error = (await promise.then(() => undefined, (e: unknown) => e)) as Error | undefined;
    expect(error).toBeInstanceOf(Error);
    const stderr = error!.message.slice(error!.message.indexOf('failed: ') + 'failed: '.length);
    expect(stderr.split('\n')).toHaveLength(1);
    return stderr;
  };

  it('stops with one line for a missing file or mismatched settings, before anything listens', async () => {
    const dir = tempDir('settings-');
    expect(await oneLine(start(dir, 'internode_encryption=all', 'client_encryption=true'))).toMatch(/^chorus: config: internode_encryption: all needs tls_cert_file, tls_key_file and tls_ca_file/);
    expect(await oneLine(start(dir, 'internode_encryption=all'))).toMatch(/^chorus: config: .*one port/);
    const missing = join(dir, 'missing.pem');
    expect(await oneLine(start(dir, 'internode_encryption=all', 'client_encryption=true', `tls_cert_file=${missing}`, `tls_key_file=${missing}`, `tls_ca_file=${missing}`))).toMatch(/^chorus: config: tls_cert_file .*missing\.pem cannot be read: ENOENT$/);
    const ca = createCa('settings CA');
    const other = issueCert(ca, 'elsewhere', ['10.9.9.9']);
    const files = { cert: join(dir, 'n.pem'), key: join(dir, 'n-key.pem'), ca: join(dir, 'ca.pem'), wrongKey: join(dir, 'wrong-key.pem') };
    writeFileSync(files.cert, other.cert);
    writeFileSync(files.key, other.key);
    writeFileSync(files.ca, ca.cert);
    writeFileSync(files.wrongKey, issueCert(ca, 'x', ['127.0.0.1']).key);
    const tls = ['internode_encryption=all', 'client_encryption=true', `tls_cert_file=${files.cert}`, `tls_ca_file=${files.ca}`];
    expect(await oneLine(start(dir, ...tls, `tls_key_file=${files.wrongKey}`))).toMatch(/^chorus: config: tls_key_file .* cannot be used with tls_cert_file/);
    expect(await oneLine(start(dir, ...tls, `tls_key_file=${files.key}`))).toMatch(/^chorus: config: tls_cert_file .* does not name 127\.0\.0\.1, this node's listen address/);
    expect(await oneLine(start(dir, 'authenticator=token'))).toMatch(/^chorus: config: authenticator: token needs authenticator_tokens_file/);
    expect(await oneLine(start(dir, 'authenticator=token', `authenticator_tokens_file=${join(dir, 'no-tokens')}`))).toMatch(/^chorus: config: authenticator_tokens_file .* cannot be read: ENOENT$/);
  });
});
