import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@chorus/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, TestCluster, chorus, freeBasePort, stateOf } from './harness.js';

const NODES = ['n1', 'n2', 'n3', 'n4', 'n5'];

describe('a five-node cluster of real processes', () => {
  const cluster = new TestCluster();
  let startMs = 0;

  beforeAll(async () => {
    const started = Date.now();
    await cluster.start(5, ['--timeout', '15']);
    startMs = Date.now() - started;
  });
  afterAll(() => cluster.destroy());

  it('comes up with every node seeing every other UP and NORMAL within 15 s', async () => {
    console.log(`cluster start --nodes 5: every node sees all five UN after ${startMs} ms`);
    for (const observer of NODES) {
      const view = await cluster.status(observer);
      expect(view.map((n) => `${n.name} ${n.state}`).sort()).toEqual(NODES.map((n) => `${n} UN`));
    }
    const status = JSON.parse(await chorus(['status', '--host', cluster.address('n3'), '--json'])) as { nodes: Array<Record<string, unknown>> };
    expect(status.nodes).toHaveLength(5);
    for (const n of status.nodes) {
      expect(n).toMatchObject({ state: 'UN', dc: 'dc1', rack: 'rack1', tokens: 16 });
      expect(n.hostId).toMatch(/^[0-9a-f-]{36}$/);
      expect(n.owns).toBeGreaterThan(0.5); // rf 3 of 5 nodes: each owns about 60%
    }
    const table = await chorus(['status', '--host', cluster.address('n1')]);
    expect(table).toContain('Datacenter: dc1');
    expect(table.match(/^UN /gm)).toHaveLength(5);
  });

  it('marks a SIGKILLed node DN on every survivor within 20 s, and UN again with a higher generation after a restart', async () => {
    const before = await stateOf(cluster, 'n1', 'n4');
    await chorus(['cluster', 'kill', 'n4', '--dir', cluster.dir]);
    const survivors = NODES.filter((n) => n !== 'n4');
    const detectMs = await cluster.waitFor('n4 DN everywhere', async () => (await Promise.all(survivors.map((s) => stateOf(cluster, s, 'n4')))).every((n) => n?.state === 'DN'), 20_000);
    console.log(`SIGKILL: n4 reported DN by all four survivors after ${detectMs} ms`);

    await chorus(['cluster', 'start', '--dir', cluster.dir, '--json']);
    const back = await stateOf(cluster, 'n1', 'n4');
    expect(back?.state).toBe('UN');
    expect(back!.generation).toBeGreaterThan(before!.generation!);
    expect(back!.hostId).toBe(before!.hostId);
  });

  it('marks a SIGSTOPped node DN, and UN again after SIGCONT', async () => {
    const pid = cluster.pid('n2');
    process.kill(pid, 'SIGSTOP');
    try {
      const detectMs = await cluster.waitFor('n2 DN on n1', async () => (await stateOf(cluster, 'n1', 'n2'))?.state === 'DN', 30_000);
      console.log(`SIGSTOP: n2 reported DN by n1 after ${detectMs} ms`);
      await new Promise((r) => setTimeout(r, Math.max(0, 30_000 - detectMs)));
      expect((await stateOf(cluster, 'n3', 'n2'))?.state).toBe('DN');
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    const recoverMs = await cluster.waitFor('n2 UN on every node', async () => (await Promise.all(NODES.map((o) => stateOf(cluster, o, 'n2')))).every((n) => n?.state === 'UN'), 20_000);
    console.log(`SIGCONT: n2 UN everywhere again after ${recoverMs} ms`);
  });

  it('stops a node cleanly on SIGTERM: peers hear it leave at once, and it comes back with its data', async () => {
    // A key n5 holds a replica of, so its own copy can be checked after the restart.
    const client = connect([cluster.address('n1')]);
    await client.ready();
    let kept = '';
    for (let i = 0; !kept; i++) if (client.replicasOf('default', `kept-${i}`).includes(cluster.address('n5'))) kept = `kept-${i}`;
    await client.close();
    expect((await fetch(`http://${cluster.address('n5')}/v1/kv/default/${kept}?consistency=ALL`, { method: 'PUT', body: 'across restarts' })).status).toBe(200);
    await chorus(['cluster', 'stop', 'n5', '--dir', cluster.dir]);
    // The shutdown announcement, not the failure detector: well under the time phi or a ping timeout would take.
    const heardMs = await cluster.waitFor('n5 DN on n1', async () => (await stateOf(cluster, 'n1', 'n5'))?.state === 'DN', 3_000);
    console.log(`SIGTERM: n1 reports n5 DN after ${heardMs} ms`);
    expect(cluster.log('n5')).toMatch(/"msg":"stopped"/);
    await chorus(['cluster', 'start', '--dir', cluster.dir, '--json']);
    const local = await fetch(`http://${cluster.address('n5')}/v1/local/default/${kept}`);
    expect(await local.json()).toMatchObject({ value: Buffer.from('across restarts').toString('base64'), tombstone: false });
  });

  it('never admits a node with the wrong secret, and the others log why', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'chorus-intruder-'));
    const port = await freeBasePort(1);
    const intruder = spawn(process.execPath, [CLI, 'node', 'start', '--name', 'intruder', '--listen', `127.0.0.1:${port}`, '--seeds', cluster.address('n1'), '--data', dir, '--secret', 'not-the-cluster-secret'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let intruderLog = '';
    intruder.stdout.on('data', (chunk: Buffer) => (intruderLog += chunk.toString()));
    try {
      await new Promise((r) => setTimeout(r, 6_000));
      for (const observer of NODES) expect((await cluster.status(observer)).map((n) => n.name)).not.toContain('intruder');
      expect(cluster.log('n1')).toMatch(/bad secret/);
      expect(intruderLog).toMatch(/bad secret/);
    } finally {
      intruder.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('node start', () => {
  it('refuses a bad setting and a port in use with a one-line reason', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'chorus-bad-'));
    try {
      await expect(chorus(['node', 'start', '--name', 'x', '--listen', '127.0.0.1:1', '--data', dir, '--secret', 'long-enough-secret', '--set', 'write_request_timeout=soon'])).rejects.toThrow(/chorus: config: write_request_timeout must be a duration/);
      const busy = await freeBasePort(1);
      const { createServer } = await import('node:net');
      const blocker = createServer().listen(busy, '127.0.0.1');
      try {
        await expect(chorus(['node', 'start', '--name', 'x', '--listen', `127.0.0.1:${busy}`, '--data', dir, '--secret', 'long-enough-secret'])).rejects.toThrow(new RegExp(`chorus: port ${busy} on 127.0.0.1 is in use`));
      } finally {
        blocker.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
