import { rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { connect } from '@chorus/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, chorus, freeBasePort, scaled, spawnChorus, stateOf, tempDir } from './harness.js';

const NODES = ['n1', 'n2', 'n3', 'n4', 'n5'];

describe('a five-node cluster of real processes', () => {
  const cluster = new TestCluster();
  let startMs = 0;

  beforeAll(async () => {
    const started = Date.now();
    await cluster.start(5);
    startMs = Date.now() - started;
  });
  afterAll(() => cluster.destroy());

  it('comes up with every node seeing every other UP and NORMAL', async () => {
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

  it('marks a SIGKILLed node DN on every survivor, and UN again with a higher generation after a restart', async () => {
    const before = await stateOf(cluster, 'n1', 'n4');
    await cluster.kill('n4');
    const survivors = NODES.filter((n) => n !== 'n4');
    const detectMs = await cluster.waitFor('n4 DN everywhere', async () => (await Promise.all(survivors.map((s) => stateOf(cluster, s, 'n4')))).every((n) => n?.state === 'DN'), scaled(40_000));
    console.log(`SIGKILL: n4 reported DN by all four survivors after ${detectMs} ms`);

    await cluster.restart();
    const back = await stateOf(cluster, 'n1', 'n4');
    expect(back?.state).toBe('UN');
    expect(back!.generation).toBeGreaterThan(before!.generation!);
    expect(back!.hostId).toBe(before!.hostId);
  });

  it('marks a SIGSTOPped node DN, keeps it DN while it is stopped, and UN again after SIGCONT', async () => {
    const pid = cluster.pid('n2');
    const others = NODES.filter((n) => n !== 'n2');
    const downEverywhere = async () => (await Promise.all(others.map((o) => stateOf(cluster, o, 'n2')))).every((n) => n?.state === 'DN');
    const stopped = Date.now();
    process.kill(pid, 'SIGSTOP');
    try {
      const detectMs = await cluster.waitFor('n2 DN on every other node', downEverywhere, scaled(60_000));
      console.log(`SIGSTOP: n2 reported DN by all four others after ${detectMs} ms`);
      // A stopped process keeps its sockets open: nothing (old gossip, a reconnect, a ping timeout) may bring it back UP.
      await cluster.holds('n2 DN on every other node', downEverywhere, Math.max(5_000, 30_000 - (Date.now() - stopped)));
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    const recoverMs = await cluster.waitFor('n2 UN on every node', async () => (await Promise.all(NODES.map((o) => stateOf(cluster, o, 'n2')))).every((n) => n?.state === 'UN'), scaled(40_000));
    console.log(`SIGCONT: n2 UN everywhere again after ${recoverMs} ms`);
  });

  it('stops a node cleanly on SIGTERM: peers hear it leave at once, and it comes back with its data', async () => {
    // A key n5 holds a replica of, so its own copy can be checked after the restart.
    const client = connect([cluster.address('n1')]);
    await client.ready();
    let kept = '';
    for (let i = 0; !kept; i++) if (client.replicasOf('default', `kept-${i}`).includes(cluster.address('n5'))) kept = `kept-${i}`;
    await client.close();
    expect((await fetch(`http://${cluster.address('n5')}/v1/kv/default/${kept}?consistency=ALL`, { method: 'PUT', body: 'across restarts', signal: AbortSignal.timeout(scaled(10_000)) })).status).toBe(200);
    const others = NODES.filter((n) => n !== 'n5');
    const logFrom = new Map(others.map((o) => [o, cluster.log(o).length]));
    await cluster.stop('n5');
    // The shutdown announcement, not the failure detector: only the announcement sets status shutdown, and a peer logs hearing it.
    const heardMs = await cluster.waitFor(
      'n5 DN with status shutdown on every other node',
      async () => (await Promise.all(others.map((o) => stateOf(cluster, o, 'n5')))).every((n) => n?.state === 'DN' && n.status === 'shutdown'),
      scaled(20_000),
    );
    console.log(`SIGTERM: every other node reports n5 DN (shutdown) ${heardMs} ms after it stopped`);
    const heardAnnouncement = (o: string) =>
      cluster.log(o).slice(logFrom.get(o)).split('\n').some((line) => line.includes('"msg":"peer announced shutdown"') && line.includes(`"peer":"${cluster.address('n5')}"`));
    await cluster.waitFor('a peer to log the shutdown announcement of n5', async () => others.some(heardAnnouncement), scaled(10_000));
    expect(cluster.log('n5')).toMatch(/"msg":"stopped"/);
    await cluster.restart();
    const local = await fetch(`http://${cluster.address('n5')}/v1/local/default/${kept}`, { signal: AbortSignal.timeout(scaled(10_000)) });
    expect(await local.json()).toMatchObject({ value: Buffer.from('across restarts').toString('base64'), tombstone: false });
  });

  it('never admits a node with the wrong secret, and both sides log why', async () => {
    const dir = tempDir('intruder-');
    const port = await freeBasePort(1);
    const n1Before = cluster.log('n1').length;
    const intruder = spawnChorus(['node', 'start', '--name', 'intruder', '--listen', `127.0.0.1:${port}`, '--seeds', cluster.address('n1'), '--data', `${dir}/data`, '--secret', 'not-the-cluster-secret'], { pidFile: `${dir}/intruder.pid` });
    let intruderLog = '';
    intruder.stdout!.on('data', (chunk: Buffer) => (intruderLog += chunk.toString()));
    try {
      // The intruder dials n1, which checks its proof, refuses it with close code 4003, and says so; the intruder hears why.
      const refusedMs = await cluster.waitFor(
        'n1 to refuse the intruder and the intruder to log the refusal',
        async () => /"msg":"refused a peer: bad secret"/.test(cluster.log('n1').slice(n1Before)) && /"msg":"peer refused this node: bad secret"/.test(intruderLog),
        scaled(30_000),
      );
      console.log(`wrong secret: refused on both sides after ${refusedMs} ms`);
      for (const observer of NODES) expect((await cluster.status(observer)).map((n) => n.name)).not.toContain('intruder');
    } finally {
      intruder.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('node start', () => {
  it('refuses a bad setting and a port in use with a one-line reason', async () => {
    const dir = tempDir('bad-');
    try {
      await expect(chorus(['node', 'start', '--name', 'x', '--listen', '127.0.0.1:1', '--data', dir, '--secret', 'long-enough-secret', '--set', 'write_request_timeout=soon'])).rejects.toThrow(/chorus: config: write_request_timeout must be a duration/);
      const busy = await freeBasePort(1);
      const blocker = createServer();
      await new Promise<void>((listening) => blocker.listen(busy, '127.0.0.1', listening));
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
