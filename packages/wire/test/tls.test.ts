import type { LinkState, NodeId } from '@chorus/core';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { WsTransport, WsTransportOptions } from '../src/index.js';
import { type Pem, createCa, issueCert } from './certs.js';
import { type LogLine, TEST_TIMEOUT_MS, WAIT_MS, recordingLogger, startNode, until } from './net-helpers.js';

const text = (s: string) => new TextEncoder().encode(s);

describe('ws transport over TLS', { timeout: TEST_TIMEOUT_MS }, () => {
  let ca: Pem;
  let node: Pem;
  let strangerCa: Pem;
  let stranger: Pem;
  beforeAll(() => {
    ca = createCa('cluster CA');
    node = issueCert(ca, 'node', ['127.0.0.1']);
    strangerCa = createCa('another CA');
    stranger = issueCert(strangerCa, 'stranger', ['127.0.0.1']);
  }, TEST_TIMEOUT_MS);

  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  }, TEST_TIMEOUT_MS);
  const started = async (overrides: Partial<WsTransportOptions> & { logger?: ReturnType<typeof recordingLogger> } = {}) => {
    const t = await startNode(overrides);
    cleanups.push(() => t.close());
    return t;
  };
  const tlsOf = (pem: Pem, caPem: Pem) => ({ cert: pem.cert, key: pem.key, ca: caPem.cert });
  const linksOf = (t: WsTransport) => {
    const states: Array<[NodeId, LinkState]> = [];
    t.onLinkState((peer, state) => states.push([peer, state]));
    return states;
  };

  it('peers with certificates of the cluster CA link up over wss and exchange frames', async () => {
    const a = await started({ tls: tlsOf(node, ca) });
    const b = await started({ tls: tlsOf(node, ca) });
    const got: string[] = [];
    b.onFrame((from, frame) => got.push(`${from} ${new TextDecoder().decode(frame)}`));
    a.send(b.localNode, text('over tls'));
    expect(await until(() => got.length === 1)).toBe(true);
    expect(got).toEqual([`${a.localNode} over tls`]);
    expect(b.stats().rejectedHandshakes).toBe(0);
  });

  it('refuses a plain ws:// peer connection and a plain HTTP request on a TLS port', async () => {
    const a = await started({ tls: tlsOf(node, ca) });
    const outcome = await new Promise<string>((resolve) => {
      const ws = new WebSocket(`ws://${a.localNode}/peer`, { handshakeTimeout: WAIT_MS });
      ws.on('open', () => resolve('open'));
      ws.on('error', (error) => resolve(`error ${error.message}`));
    });
    expect(outcome).toMatch(/^error/);
    const plain = await fetch(`http://${a.localNode}/peer`).then((r) => `status ${r.status}`, (error: Error) => `error ${error.message}`);
    expect(plain).toMatch(/^error/);
  });

  it('refuses a TLS peer connection that presents no client certificate', async () => {
    const log: LogLine[] = [];
    const a = await started({ tls: tlsOf(node, ca), logger: recordingLogger(log) });
    const outcome = await new Promise<string>((resolve) => {
      const ws = new WebSocket(`wss://${a.localNode}/peer`, { ca: ca.cert, handshakeTimeout: WAIT_MS });
      ws.on('open', () => resolve('open'));
      ws.on('unexpected-response', (_req, res) => resolve(`status ${res.statusCode}`));
      ws.on('error', (error) => resolve(`error ${error.message}`));
    });
    expect(outcome).toBe('status 403');
    expect(await until(() => log.some((l) => l.level === 'warn' && /certificate/.test(l.msg ?? '')))).toBe(true);
    expect(a.stats().tlsRefused).toBe(1);
  });

  it('refuses a peer whose certificate comes from another CA, in both directions', async () => {
    const aLog: LogLine[] = [];
    const a = await started({ tls: tlsOf(node, ca), logger: recordingLogger(aLog) });
    // The stranger trusts the cluster CA, so only the cluster node's check of the stranger's certificate stops it.
    const s = await started({ tls: { cert: stranger.cert, key: stranger.key, ca: ca.cert } });
    const sLinks = linksOf(s);
    s.send(a.localNode, text('let me in'));
    expect(await until(() => sLinks.some(([, state]) => state === 'down'))).toBe(true);
    expect(await until(() => a.stats().tlsRefused >= 1)).toBe(true);
    expect(aLog.some((l) => l.level === 'warn' && /certificate/.test(l.msg ?? ''))).toBe(true);
    // And a cluster node dialing the stranger, which trusts only its own CA, does not accept the stranger's certificate.
    const foreign = await started({ tls: tlsOf(stranger, strangerCa) });
    const aLinks = linksOf(a);
    a.send(foreign.localNode, text('hello?'));
    expect(await until(() => aLinks.some(([peer, state]) => peer === foreign.localNode && state === 'down'))).toBe(true);
    expect(foreign.stats().framesReceived).toBe(0);
    expect(a.stats().framesReceived).toBe(0);
  });

  it('refuses a peer with a certificate of the cluster CA but without the cluster secret', async () => {
    const aLog: LogLine[] = [];
    const a = await started({ tls: tlsOf(node, ca), logger: recordingLogger(aLog) });
    const intruder = await started({ tls: tlsOf(node, ca), secret: 'not the cluster secret at all' });
    const links = linksOf(intruder);
    intruder.send(a.localNode, text('let me in'));
    expect(await until(() => links.some(([, state]) => state === 'down'))).toBe(true);
    expect(await until(() => aLog.some((l) => l.obj.reason === 'bad secret'))).toBe(true);
    expect(a.stats().framesReceived).toBe(0);
  });

  it('a plain transport cannot reach a TLS one', async () => {
    const a = await started({ tls: tlsOf(node, ca) });
    const plain = await started();
    const links = linksOf(plain);
    plain.send(a.localNode, text('hi'));
    expect(await until(() => links.some(([, state]) => state === 'down'))).toBe(true);
    expect(a.stats().framesReceived).toBe(0);
  });
});

