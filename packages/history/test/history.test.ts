import type { Cell } from '@chorus/model';
import { describe, expect, it } from 'vitest';
import { type KeyOnReplicas, type ReadRecord, type SliceRecord, type WriteRecord, checkConvergence, checkQuorumReads, convergenceViolations, readViolations, sliceViolations, writesLostWithNode, writesWithLostHints } from '../src/index.js';

// The checker must be able to fail: each case below is a history it has to reject, next to the nearest one it must accept.

let seq = 0;
const utf8 = new TextEncoder();

function put(id: number, key: string, ts: number | undefined, extra: Partial<WriteRecord> = {}): WriteRecord {
  const startSeq = ++seq;
  return { id, op: 'put', key, value: `${key}#${id}`, consistency: 'QUORUM', via: 'n1', startMs: startSeq, startSeq, endMs: startSeq + 1, endSeq: ++seq, outcome: ts === undefined ? 'failed' : 'ok', ...(ts === undefined ? { error: 'WriteTimeout' } : { timestampMicros: ts }), ...extra };
}

function read(id: number, key: string, cell: Cell | undefined, extra: Partial<ReadRecord> = {}): ReadRecord {
  const startSeq = ++seq;
  return { id, key, consistency: 'QUORUM', via: 'n2', startMs: startSeq, startSeq, endMs: startSeq + 1, endSeq: ++seq, outcome: 'ok', cell, ...extra };
}

const value = (key: string, id: number, ts: number): Cell => ({ value: utf8.encode(`${key}#${id}`), timestampMicros: ts });

function onReplicas(cells: Record<string, Cell | undefined>, replicas = ['n1', 'n2', 'n3']): Map<string, KeyOnReplicas> {
  return new Map([['k', { replicas, cells: new Map(Object.entries(cells)) }]]);
}

describe('the convergence check', () => {
  const writes = [put(1, 'k', 100), put(2, 'k', undefined), put(3, 'k', 300, { consistency: 'ONE' })];

  it('accepts replicas that agree on the newest acknowledged version, or on a newer unacknowledged one', () => {
    expect(checkConvergence(writes, onReplicas({ n1: value('k', 3, 300), n2: value('k', 3, 300), n3: value('k', 3, 300) })).problems).toEqual([]);
    expect(checkConvergence(writes, onReplicas({ n1: value('k', 2, 400), n2: value('k', 2, 400), n3: value('k', 2, 400) })).problems).toEqual([]);
  });

  it('rejects replicas that differ, one that is behind, a non-replica holding the key, and a value never written', () => {
    expect(checkConvergence(writes, onReplicas({ n1: value('k', 3, 300), n2: value('k', 3, 300), n3: value('k', 1, 100) })).problems.join('\n')).toMatch(/replicas differ[\s\S]*n3 holds .* older than the acknowledged/);
    expect(checkConvergence(writes, onReplicas({ n1: value('k', 1, 100), n2: value('k', 1, 100), n3: value('k', 1, 100) })).problems.join('\n')).toMatch(/older than the acknowledged #3/);
    expect(checkConvergence(writes, onReplicas({ n1: value('k', 3, 300), n2: value('k', 3, 300), n3: value('k', 3, 300), n4: value('k', 3, 300) })).problems.join('\n')).toMatch(/n4 is no replica/);
    expect(checkConvergence(writes, onReplicas({ n1: value('k', 9, 900), n2: value('k', 9, 900), n3: value('k', 9, 900) })).problems.join('\n')).toMatch(/never written/);
    expect(checkConvergence(writes, onReplicas({ n1: value('k', 1, 150), n2: value('k', 3, 300), n3: value('k', 3, 300) })).problems.join('\n')).toMatch(/another timestamp than its write/);
  });

  it('lets replicas differ only by the writes whose coordinator crashed while they were open', () => {
    const history = [put(1, 'k', 100), put(2, 'k', 200, { consistency: 'ONE', via: 'n4' }), put(3, 'k', 300, { consistency: 'ONE', via: 'n5' })];
    const lost = writesWithLostHints(history, [{ node: 'n4', atMs: history[1]!.startMs + 500 }], 3_000);
    expect([...lost.keys()]).toEqual([2]);
    // The lost write may be on one replica only: accepted, and reported as left apart.
    const apart = checkConvergence(history.slice(0, 2), onReplicas({ n1: value('k', 2, 200), n2: value('k', 1, 100), n3: value('k', 1, 100) }), new Set(lost.keys()));
    expect(apart).toEqual({ problems: [], divergedByLostHints: ['k'] });
    // But the newest acknowledged write not among them must be everywhere, and only a lost write explains a difference.
    expect(checkConvergence(history, onReplicas({ n1: value('k', 2, 200), n2: value('k', 3, 300), n3: value('k', 3, 300) }), new Set(lost.keys())).problems.join('\n')).toMatch(/n1 holds .* older than the acknowledged #3/);
    expect(checkConvergence(history, onReplicas({ n1: value('k', 3, 300), n2: value('k', 1, 100), n3: value('k', 1, 100) }), new Set(lost.keys())).problems.join('\n')).toMatch(/replicas differ/);
    // A crash long after the write was over loses nothing.
    expect(writesWithLostHints(history, [{ node: 'n4', atMs: history[1]!.startMs + 5_000 }], 3_000).size).toBe(0);
  });
});

describe('the quorum read check', () => {
  it('rejects a quorum read older than an earlier completed quorum read or acknowledged QUORUM write, and nothing concurrent', () => {
    const w1 = put(1, 'k', 100);
    const r1 = read(10, 'k', value('k', 2, 200));
    const w2 = put(2, 'k', undefined);
    const older = read(11, 'k', value('k', 1, 100));
    expect(checkQuorumReads([w1, w2], [r1, older]).join('\n')).toMatch(/read #11 .* older than .* earlier read #10/);

    const w3 = put(3, 'k', 300);
    const stale = read(12, 'k', value('k', 1, 100));
    expect(checkQuorumReads([w1, w2, w3], [stale]).join('\n')).toMatch(/read #12 .* older than .* #3 put/);

    // A read that started before the newer one completed may return either.
    const concurrent: ReadRecord = { ...read(13, 'k', value('k', 1, 100)), startSeq: w3.endSeq! - 1 };
    expect(checkQuorumReads([w1, w3], [concurrent])).toEqual([]);
    // A write at ONE promises nothing to a later quorum read; a read at ONE is held to nothing.
    const one = put(4, 'k', 400, { consistency: 'ONE' });
    expect(checkQuorumReads([w1, one], [read(14, 'k', value('k', 1, 100))])).toEqual([]);
    expect(checkQuorumReads([w1, w3], [read(15, 'k', value('k', 1, 100), { consistency: 'ONE' })])).toEqual([]);
  });

  it('rejects a read of a value no write made, or of a write refused before any replica saw it', () => {
    expect(checkQuorumReads([], [read(20, 'k', value('k', 7, 700))]).join('\n')).toMatch(/never written/);
    const refused = put(8, 'k', undefined, { error: 'Unavailable' });
    expect(checkQuorumReads([refused], [read(21, 'k', value('k', 8, 800))]).join('\n')).toMatch(/refused before any replica saw it/);
  });
});

describe('the named checkers', () => {
  const checkers = (vs: Array<{ checker: string }>) => vs.map((v) => v.checker);

  it('a read cannot return a write issued after it ended, tombstones included', () => {
    const r = read(30, 'k', value('k', 31, 3100));
    const late = put(31, 'k', 3100);
    expect(checkers(readViolations([late], [r]))).toEqual(['read-from-the-future']);
    const early = { ...late, startSeq: r.startSeq };
    expect(readViolations([early], [r])).toEqual([]);
    const tomb = read(32, 'k', { tombstone: true, timestampMicros: 3300 });
    const del: WriteRecord = { ...put(33, 'k', 3300), op: 'del' };
    expect(checkers(readViolations([del], [tomb]))).toEqual(['read-from-the-future']);
  });

  it('names a write answered Unavailable that is observed, and a deleted key that comes back', () => {
    const refused = put(40, 'k', undefined, { error: 'Unavailable' });
    expect(checkers(readViolations([refused], [read(41, 'k', value('k', 40, 4000))]))).toEqual(['refused-write-observed']);
    const w = put(42, 'k', 4200);
    const d: WriteRecord = { ...put(43, 'k', 4300), op: 'del' };
    delete d.value;
    const back = convergenceViolations([w, d], onReplicas({ n1: value('k', 42, 4200), n2: { tombstone: true, timestampMicros: 4300 }, n3: { tombstone: true, timestampMicros: 4300 } })).violations;
    expect(checkers(back)).toEqual(['replicas-differ', 'deleted-key-returned']);
  });

  it('a quorum slice neither goes below a row\'s floor nor leaves out a live row nothing removed', () => {
    const w = put(50, 'p/c1', 5000);
    const slice = (id: number, rows: Map<string, Cell>): SliceRecord => {
      const startSeq = ++seq;
      return { id, key: 'p', consistency: 'QUORUM', via: 'n1', startMs: startSeq, startSeq, endMs: startSeq + 1, endSeq: ++seq, outcome: 'ok', rows, spans: ['p/c1'] };
    };
    expect(sliceViolations([w], [], [slice(51, new Map([['p/c1', value('p/c1', 50, 5000)]]))])).toEqual([]);
    expect(checkers(sliceViolations([w], [], [slice(52, new Map())]))).toEqual(['quorum-slice']);
    const ttl = put(53, 'p/c1', 5300, { ttlSeconds: 1, consistency: 'ONE' });
    expect(sliceViolations([w, ttl], [], [slice(54, new Map())])).toEqual([]);
  });
});

describe('membership that changed: former replicas', () => {
  it('lets a former replica keep a stale copy, while the final ring\'s replicas must still agree and a stranger may hold nothing', () => {
    const writes = [put(501, 'k', 100), put(502, 'k', 200)];
    const state = (cells: Record<string, Cell | undefined>) => new Map<string, KeyOnReplicas>([['k', { replicas: ['n2', 'n3', 'n4'], formerReplicas: ['n1'], cells: new Map(Object.entries(cells)) }]]);
    const newest = value('k', 502, 200);
    expect(convergenceViolations(writes, state({ n1: value('k', 501, 100), n2: newest, n3: newest, n4: newest })).violations).toEqual([]);
    expect(convergenceViolations(writes, state({ n1: newest, n2: newest, n3: newest, n4: value('k', 501, 100) })).violations.map((v) => v.checker)).toEqual(['replicas-differ', 'acknowledged-write-lost']);
    expect(convergenceViolations(writes, state({ n1: newest, n2: newest, n3: newest, n4: newest, n5: newest })).violations.map((v) => v.checker)).toEqual(['non-replica-holds-key']);
    // Even a former replica's stale copy must trace back to a write.
    expect(convergenceViolations(writes, state({ n1: value('k', 9, 900), n2: newest, n3: newest, n4: newest })).violations.map((v) => v.checker)).toEqual(['untraceable-version']);
  });
});

describe('a lost unsynced batch (commit_sync periodic, one node loses power)', () => {
  const lost = [{ node: 'n3', atMs: 1_000, syncedAtMs: 500 }];
  const at = (startMs: number, endMs: number) => ({ startMs, endMs });

  it('takes a write acknowledged by one replica while that batch was unsynced out of the floor, but no quorum write, and none outside the window', () => {
    const one = put(601, 'k', 300, { consistency: 'ONE', ...at(600, 610) });
    const quorum = put(602, 'k', 200, { ...at(600, 610) });
    const oneBefore = put(603, 'k', 100, { consistency: 'ONE', ...at(100, 110) });
    const oneAfter = put(604, 'j', 100, { consistency: 'ANY', ...at(1_200, 1_210) });
    const writes = [one, quorum, oneBefore, oneAfter];
    const q = value('k', 602, 200);
    const cells = { n1: q, n2: q, n3: q };
    // Without the loss, the ONE write is the floor and every replica is behind it.
    expect(convergenceViolations(writes, onReplicas(cells)).violations.map((v) => v.checker)).toEqual(['acknowledged-write-lost', 'acknowledged-write-lost', 'acknowledged-write-lost']);
    expect(convergenceViolations(writes, onReplicas(cells), new Set(), { lostBatches: lost }).violations).toEqual([]);
    // The quorum write stays a floor: another replica that acknowledged it kept its disk.
    const older = value('k', 603, 100);
    expect(convergenceViolations(writes, onReplicas({ n1: older, n2: older, n3: older }), new Set(), { lostBatches: lost }).violations.map((v) => v.checker)).toEqual(['acknowledged-write-lost', 'acknowledged-write-lost', 'acknowledged-write-lost']);
    // Replicas must still agree.
    expect(convergenceViolations(writes, onReplicas({ n1: q, n2: q, n3: older }), new Set(), { lostBatches: lost }).violations.map((v) => v.checker)).toContain('replicas-differ');
  });

  it('lets a quorum read running after the loss miss a version that may have been on the lost batch only, but no older floor and no read before the loss', () => {
    const early = put(701, 'k', 100, { ...at(100, 110) });
    const late = put(702, 'k', 200, { ...at(600, 610) });
    const afterLoss = read(703, 'k', value('k', 701, 100), { ...at(1_100, 1_110) });
    const beforeLoss = read(704, 'k', value('k', 701, 100), { ...at(800, 810) });
    const belowEarly = read(705, 'k', undefined, { ...at(1_200, 1_210) });
    const writes = [early, late];
    expect(readViolations(writes, [afterLoss]).map((v) => v.checker)).toEqual(['monotonic-quorum-read']);
    expect(readViolations(writes, [afterLoss], { lostBatches: lost })).toEqual([]);
    expect(readViolations(writes, [beforeLoss], { lostBatches: lost }).map((v) => v.checker)).toEqual(['monotonic-quorum-read']);
    expect(readViolations(writes, [belowEarly], { lostBatches: lost }).map((v) => v.checker)).toEqual(['monotonic-quorum-read']);
  });
});

describe('a topology change', () => {
  const at = (startMs: number, endMs: number) => ({ startMs, endMs });

  it('keeps a quorum read seen before a ring change from binding a quorum read after it, but not a quorum write', () => {
    const w1 = put(801, 'k', 100, { ...at(100, 110) });
    const w2 = put(802, 'k', 200, { consistency: 'ONE', ...at(200, 210) });
    const sawW2 = read(803, 'k', value('k', 802, 200), { ...at(300, 310) });
    const after = read(804, 'k', value('k', 801, 100), { ...at(2_000, 2_010) });
    const belowWrite = read(805, 'k', undefined, { ...at(2_100, 2_110) });
    const change = [{ fromMs: 250, toMs: 1_500 }];
    expect(readViolations([w1, w2], [sawW2, after]).map((v) => v.checker)).toEqual(['monotonic-quorum-read']);
    expect(readViolations([w1, w2], [sawW2, after], { ringChanges: change })).toEqual([]);
    expect(readViolations([w1, w2], [sawW2, belowWrite], { ringChanges: change }).map((v) => v.checker)).toEqual(['monotonic-quorum-read']);
  });

  it('names the single-acknowledged writes a removed node may have taken with it: through it, or to a key it held, before it died', () => {
    const writes = [
      put(901, 'a', 100, { consistency: 'ONE', ...at(100, 110) }),
      put(902, 'b', 100, { consistency: 'ANY', via: 'n4', ...at(100, 110) }),
      put(903, 'a', 200, { ...at(100, 110) }),
      put(904, 'c', 100, { consistency: 'ONE', ...at(100, 110) }),
      put(905, 'a', 300, { consistency: 'ONE', ...at(600, 610) }),
    ];
    expect([...writesLostWithNode(writes, 'n4', 500, (key) => key === 'a')]).toEqual([901, 902]);
  });
});
