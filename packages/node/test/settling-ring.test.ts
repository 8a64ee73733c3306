import { type Env, nodeId, token } from '@chorus/core';
import { RingView, tokenOf } from '@chorus/ring';
import { describe, expect, it } from 'vitest';
import { SettlingRing } from '../src/settling-ring.js';

const member = (name: string, t: bigint, status: 'normal' | 'joining') => ({ node: nodeId(name), dc: 'dc1', rack: 'rack1', tokens: [token(String(t))], status });
const replication = { class: 'SimpleStrategy' as const, rf: 3 };

describe('the ring requests are planned on', () => {
  it('keeps a node that finished joining pending for the settle time: writes still reach a quorum of the old replicas', () => {
    let now = 0;
    const env = { clock: { monotonicMs: () => now } } as unknown as Env;
    const settling = new SettlingRing(env, 30_000);
    const old = [member('n1', -6n * 10n ** 18n, 'normal'), member('n2', -2n * 10n ** 18n, 'normal'), member('n3', 2n * 10n ** 18n, 'normal')];
    const joining = RingView.of([...old, member('n4', 0n, 'joining')]);
    const joined = RingView.of([...old, member('n4', 0n, 'normal')]);
    const key = tokenOf('k');
    expect(settling.of(joining)).toBe(joining);
    now = 1_000;
    const planned = settling.of(joined);
    expect(planned.member(nodeId('n4'))?.status).toBe('joining');
    expect(planned.naturalReplicas(key, replication)).toEqual(joining.naturalReplicas(key, replication));
    expect(planned.pendingReplicas(key, replication)).toEqual(joining.pendingReplicas(key, replication));
    now = 30_999;
    expect(settling.of(joined).member(nodeId('n4'))?.status).toBe('joining');
    now = 31_000;
    expect(settling.of(joined)).toBe(joined);
    // A node first seen NORMAL (a restart, a new observer) was never pending here: nothing to settle.
    const fresh = new SettlingRing(env, 30_000);
    expect(fresh.of(joined)).toBe(joined);
  });
});
