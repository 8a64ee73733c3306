// The README's example, kept runnable.
import { ActorSystem } from '@chorus/actors';
import { hostId, nodeId, realEnv, token } from '@chorus/core';
import { HybridLogicalClock } from '@chorus/replica';
import { MemoryLevel } from 'memory-level';
import { expect, it } from 'vitest';
import { startHints } from '../src/index.js';

it('README example', async () => {
  const env = realEnv(nodeId('127.0.0.1:7100'));
  const system = new ActorSystem({ env });
  const n2 = nodeId('127.0.0.1:7101');
  // What gossip would report: n2 is down, and announced this host id.
  const membership = { isAlive: () => false, locationOf: () => undefined, liveNodes: () => [env.node], hostIdOf: () => hostId('6f1c2c7e-6a7b-4b5e-9d4f-2f1e0c3b9a10') };
  const hints = await startHints(system, {
    env,
    membership,
    events: { subscribe: () => () => {} },
    db: new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' }),
    hlc: new HybridLogicalClock(() => env.clock.nowMicros()),
  });
  const utf8 = new TextEncoder();
  const stored = await hints.offer(n2, { keyspace: 'app', token: token(42n), partition: utf8.encode('user:42'), cell: { value: utf8.encode('hello'), timestampMicros: env.clock.nowMicros() } });
  console.log(stored, hints.targets().map((t) => [t.node, t.hints])); // true [ [ '127.0.0.1:7101', 1 ] ]
  expect(stored).toBe(true);
  expect(hints.targets().map((t) => [t.node, t.hints])).toEqual([['127.0.0.1:7101', 1]]);
  await hints.stop();
  await system.shutdown();
});
