import { describe, expect, it } from 'vitest';
import { InvalidRequest, MAX_TOKEN, MIN_TOKEN, NO_HINTS, hostId, nodeId, token, uuidFromBytes } from '../src/index.js';

describe('ids', () => {
  it('accepts node names and addresses, refuses junk', () => {
    expect(nodeId('n1')).toBe('n1');
    expect(nodeId('127.0.0.1:7100')).toBe('127.0.0.1:7100');
    expect(() => nodeId('')).toThrow(/invalid node id/);
    expect(() => nodeId('a b')).toThrow(/invalid node id/);
  });

  it('keeps tokens inside the signed 64-bit range', () => {
    expect(token('-9223372036854775808')).toBe(MIN_TOKEN);
    expect(token(MAX_TOKEN)).toBe(MAX_TOKEN);
    expect(() => token(2n ** 63n)).toThrow(RangeError);
  });

  it('formats v4 uuids that hostId accepts', () => {
    const id = uuidFromBytes(new Uint8Array(16).fill(0xff));
    expect(id).toBe('ffffffff-ffff-4fff-bfff-ffffffffffff');
    expect(hostId(id)).toBe(id);
    expect(() => hostId('nope')).toThrow(TypeError);
  });
});

describe('errors', () => {
  it('carry a stable name, code, status and the numbers in their JSON body', () => {
    const e = new InvalidRequest('bad consistency level', { value: 'SOME' });
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('InvalidRequest');
    expect(e.code).toBe('INVALID_REQUEST');
    expect(e.httpStatus).toBe(400);
    expect(e.toJSON()).toEqual({ error: 'InvalidRequest', message: 'bad consistency level', value: 'SOME' });
  });
});

describe('realEnv', () => {
  it('gives microsecond wall time that does not go back, timers and uuids', async () => {
    const { realEnv } = await import('../src/index.js');
    const env = realEnv(nodeId('n1'));
    const a = env.clock.nowMicros();
    await new Promise<void>((resolve) => env.scheduler.setTimer(2, resolve));
    expect(env.clock.nowMicros()).toBeGreaterThan(a);
    expect(Math.abs(a / 1000 - Date.now())).toBeLessThan(1000);
    expect(hostId(env.random.uuid())).toBeTruthy();
  });
});

describe('NO_HINTS', () => {
  it('refuses every hint without throwing', async () => {
    await expect(NO_HINTS.offer(nodeId('n2'), { anything: true })).resolves.toBe(false);
  });
});
