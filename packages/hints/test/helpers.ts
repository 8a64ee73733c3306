import { type Env, type HostId, SeededRandom, hostId, nodeId, silentLogger, token } from '@chorus/core';
import type { Mutation } from '@chorus/model';
import { MemoryLevel } from 'memory-level';

/** An Env whose clock moves only when the test says so; timers are not used by the store. */
export function manualEnv(startMicros = 1_700_000_000_000_000): Env & { advanceMs(ms: number): void } {
  let micros = startMicros;
  return {
    node: nodeId('n1'),
    clock: { nowMicros: () => micros, monotonicMs: () => micros / 1000 },
    scheduler: {
      setTimer: () => ({ cancel() {} }),
      defer: (fn) => void Promise.resolve().then(fn),
      deferIo: (fn) => void Promise.resolve().then(fn),
      track: (work) => work,
    },
    random: new SeededRandom(1),
    logger: silentLogger,
    advanceMs(ms: number) {
      micros += ms * 1000;
    },
  };
}

export function memoryDb() {
  return new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' });
}

export const HOST_A: HostId = hostId('aaaaaaaa-0000-4000-8000-000000000001');
export const HOST_B: HostId = hostId('bbbbbbbb-0000-4000-8000-000000000002');
export const NODE_A = nodeId('10.0.0.1:7000');
export const NODE_B = nodeId('10.0.0.2:7000');

const utf8 = new TextEncoder();

export function write(key: string, value: string, timestampMicros: number, extra: { expiresAtMicros?: number; clustering?: string; keyspace?: string } = {}): Mutation {
  const cell = extra.expiresAtMicros === undefined ? { value: utf8.encode(value), timestampMicros } : { value: utf8.encode(value), timestampMicros, expiresAtMicros: extra.expiresAtMicros };
  const m: Mutation = { keyspace: extra.keyspace ?? 'app', token: token(BigInt(key.length) * 1_000n - 7n), partition: utf8.encode(key), cell };
  if (extra.clustering !== undefined) (m as { clustering?: Uint8Array }).clustering = utf8.encode(extra.clustering);
  return m;
}
