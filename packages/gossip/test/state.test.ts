import { type NodeId, type Token, hostId, nodeId } from '@chorus/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type EndpointState,
  InvalidAppState,
  REMOVED_VERSION,
  SHUTDOWN_VERSION,
  answerSyn,
  decodeAppState,
  decodeTokens,
  deltaAbove,
  digestsOf,
  encodeAppState,
  encodeTokens,
  markedRemoved,
  markedShutdown,
  maxVersion,
  mergeEndpoint,
  statesRequested,
  withinBudget,
} from '../src/index.js';

const A = nodeId('a');
const B = nodeId('b');
const C = nodeId('c');

function ep(generation: number, heartbeat: number, app: Record<string, [string, number]> = {}): EndpointState {
  return { heartbeat: { generation, version: heartbeat }, app: Object.fromEntries(Object.entries(app).map(([k, [value, version]]) => [k, { value, version }])) };
}

describe('endpoint state merge', () => {
  it('takes a new endpoint whole and reports its values', () => {
    const r = mergeEndpoint(undefined, ep(10, 3, { STATUS: ['NORMAL', 2] }));
    expect(r).toMatchObject({ outcome: 'new', heartbeatAdvanced: true, changes: [{ key: 'STATUS', oldValue: undefined, newValue: 'NORMAL' }] });
  });

  it('lets a newer generation replace the whole state, even with smaller versions', () => {
    const local = ep(10, 500, { STATUS: ['NORMAL', 2], LOAD: ['100', 400] });
    const r = mergeEndpoint(local, ep(11, 2, { STATUS: ['NORMAL', 1] }));
    expect(r.outcome).toBe('restarted');
    if (r.outcome === 'ignored') throw new Error('unreachable');
    expect(r.state).toEqual(ep(11, 2, { STATUS: ['NORMAL', 1] }));
    expect(r.changes).toEqual([]); // same status value: nothing changed for subscribers
  });

  it('ignores an older generation, however large its versions', () => {
    expect(mergeEndpoint(ep(11, 2), ep(10, 9_999, { STATUS: ['NORMAL', 9_999] }))).toEqual({ outcome: 'ignored' });
  });

  it('within a generation keeps the newer version of each part', () => {
    const local = ep(10, 5, { STATUS: ['BOOTSTRAPPING', 2], LOAD: ['100', 5] });
    const r = mergeEndpoint(local, ep(10, 7, { STATUS: ['NORMAL', 6], LOAD: ['50', 4] }));
    if (r.outcome === 'ignored') throw new Error('expected an update');
    expect(r.outcome).toBe('updated');
    expect(r.state).toEqual(ep(10, 7, { STATUS: ['NORMAL', 6], LOAD: ['100', 5] }));
    expect(r.changes).toEqual([{ key: 'STATUS', oldValue: 'BOOTSTRAPPING', newValue: 'NORMAL' }]);
    expect(r.heartbeatAdvanced).toBe(true);
    expect(mergeEndpoint(r.state, r.state)).toEqual({ outcome: 'ignored' });
  });

  it('keeps the app object when only the heartbeat moved', () => {
    const local = ep(10, 5, { LOAD: ['1', 2] });
    const r = mergeEndpoint(local, ep(10, 6));
    if (r.outcome === 'ignored') throw new Error('expected an update');
    expect(r.state.app).toBe(local.app);
    expect(r.changes).toEqual([]);
  });

  it('shutdown and removal outrank any gossip of the same generation; removal outranks shutdown', () => {
    const live = ep(10, 40, { STATUS: ['NORMAL', 3] });
    const down = markedShutdown(live);
    expect(down.heartbeat.version).toBe(SHUTDOWN_VERSION);
    expect(down.app.STATUS).toEqual({ value: 'shutdown', version: SHUTDOWN_VERSION });
    expect(mergeEndpoint(down, ep(10, 10_000, { STATUS: ['NORMAL', 10_000] }))).toEqual({ outcome: 'ignored' });
    const removed = markedRemoved(down);
    expect(mergeEndpoint(down, removed)).toMatchObject({ outcome: 'updated', changes: [{ key: 'STATUS', newValue: 'REMOVED' }] });
    expect(mergeEndpoint(removed, down)).toEqual({ outcome: 'ignored' });
    expect(removed.heartbeat.version).toBe(REMOVED_VERSION);
    // A node that left keeps LEFT when its shutdown is heard.
    expect(markedShutdown(ep(10, 40, { STATUS: ['LEFT', 39] })).app.STATUS).toEqual({ value: 'LEFT', version: 39 });
  });
});

describe('digests and deltas', () => {
  it('maxVersion covers heartbeat and application states', () => {
    expect(maxVersion(ep(1, 7, { LOAD: ['1', 9] }))).toBe(9);
    expect(maxVersion(ep(1, 7, { LOAD: ['1', 3] }))).toBe(7);
  });

  it('a delta carries only versions newer than asked, or nothing', () => {
    const s = ep(1, 9, { STATUS: ['NORMAL', 2], LOAD: ['5', 8] });
    expect(deltaAbove(s, 7)).toEqual(ep(1, 9, { LOAD: ['5', 8] }));
    expect(deltaAbove(s, 8)).toEqual(ep(1, 9));
    expect(deltaAbove(s, 9)).toBeUndefined();
  });

  it('a SYN is answered with what the initiator lacks and a request for what the receiver lacks', () => {
    const receiver = new Map<NodeId, EndpointState>([
      [A, ep(5, 20, { STATUS: ['NORMAL', 2], LOAD: ['7', 19] })], // initiator has up to 10
      [B, ep(5, 3)], // initiator has a newer version
      [C, ep(6, 1)], // initiator has an older generation
    ]);
    const digests = [
      { node: 'a', generation: 5, maxVersion: 10 },
      { node: 'b', generation: 5, maxVersion: 8 },
      { node: 'c', generation: 5, maxVersion: 99 },
      { node: 'd', generation: 2, maxVersion: 4 }, // unknown to the receiver
    ];
    const { request, send } = answerSyn(receiver, digests, nodeId('r'));
    expect(send).toEqual({ a: ep(5, 20, { LOAD: ['7', 19] }), c: ep(6, 1) });
    expect(request).toEqual([
      { node: 'b', generation: 5, maxVersion: 3 },
      { node: 'd', generation: 2, maxVersion: 0 },
    ]);
    // Equal digests: nothing crosses in either direction.
    expect(answerSyn(receiver, digestsOf(receiver), nodeId('r'))).toEqual({ request: [], send: {} });
    // Endpoints the initiator never mentioned are sent whole.
    expect(answerSyn(receiver, [], nodeId('r')).send).toEqual(Object.fromEntries(receiver));
  });

  it('keeps whole endpoints within a byte budget, at least one', () => {
    const big = ep(1, 1, { TOKENS: ['1'.repeat(1_000), 1] });
    const states = { a: big, b: big, c: big };
    expect(Object.keys(withinBudget(states, 2_500))).toEqual(['a', 'b']);
    expect(Object.keys(withinBudget(states, 10))).toEqual(['a']);
    expect(withinBudget(states, 1_000_000)).toBe(states);
  });

  it('never requests state about the receiver itself', () => {
    const { request } = answerSyn(new Map([[A, ep(5, 1)]]), [{ node: 'a', generation: 9, maxVersion: 9 }], A);
    expect(request).toEqual([]);
  });

  it('the ACK2 carries what was requested, newer than the request', () => {
    const initiator = new Map<NodeId, EndpointState>([[B, ep(5, 9, { LOAD: ['1', 4] })], [C, ep(7, 2)]]);
    expect(statesRequested(initiator, [
      { node: 'b', generation: 5, maxVersion: 3 },
      { node: 'c', generation: 5, maxVersion: 0 },
      { node: 'x', generation: 1, maxVersion: 0 },
    ])).toEqual({ b: ep(5, 9, { LOAD: ['1', 4] }), c: ep(7, 2) });
  });

  it('one SYN/ACK/ACK2 exchange leaves both sides with the newest of everything (property)', () => {
    // Each node's true history: in a generation, versions 1..n, each one a heartbeat or an application state;
    // each side has seen every version up to some point of some generation.
    const side = fc.dictionary(fc.constantFrom('a', 'b', 'c', 'd', 'e'), fc.record({ generation: fc.integer({ min: 1, max: 3 }), seen: fc.integer({ min: 1, max: 30 }) }));
    const truth = (generation: number, seen: number): EndpointState => {
      const app: Record<string, [string, number]> = {};
      let heartbeat = 0;
      for (let v = 1; v <= seen; v++) {
        if (v % 3 === 0) heartbeat = v;
        else app[`K${v % 4}`] = [`g${generation}v${v}`, v];
      }
      return ep(generation, heartbeat, app);
    };
    fc.assert(
      fc.property(side, side, (x, y) => {
        const build = (s: typeof x) => new Map(Object.entries(s).map(([n, { generation, seen }]) => [n as NodeId, truth(generation, seen)]));
        const initiator = build(x);
        const receiver = build(y);
        const { request, send } = answerSyn(receiver, digestsOf(initiator), nodeId('r'));
        const ack2 = statesRequested(initiator, request);
        const apply = (into: Map<NodeId, EndpointState>, states: Record<string, EndpointState>) => {
          for (const [n, s] of Object.entries(states)) {
            const r = mergeEndpoint(into.get(n as NodeId), s);
            if (r.outcome !== 'ignored') into.set(n as NodeId, r.state);
          }
        };
        apply(initiator, send);
        apply(receiver, ack2);
        expect(Object.fromEntries(initiator)).toEqual(Object.fromEntries(receiver));
        for (const [n, s] of initiator) {
          const best = [x[n], y[n]].filter((v) => v !== undefined).sort((p, q) => q!.generation - p!.generation || q!.seen - p!.seen)[0]!;
          expect(s).toEqual(truth(best.generation, best.seen));
        }
      }),
      { seed: 7 },
    );
  });
});

describe('application state values', () => {
  it('encodes tokens as comma-separated decimals and back', () => {
    const tokens = [-(2n ** 63n), 0n, 42n, 2n ** 63n - 1n] as Token[];
    expect(encodeTokens(tokens)).toBe('-9223372036854775808,0,42,9223372036854775807');
    expect(decodeTokens(encodeTokens(tokens))).toEqual(tokens);
    expect(decodeTokens('')).toEqual([]);
    expect(() => decodeTokens('1,x')).toThrow(InvalidAppState);
    expect(() => decodeTokens('9223372036854775808')).toThrow(InvalidAppState);
  });

  it('round-trips typed values and rejects bad ones at the caller', () => {
    const values = { status: 'NORMAL' as const, tokens: [1n, -5n] as Token[], dc: 'dc1', rack: 'r1', hostId: hostId('123e4567-e89b-42d3-a456-426614174000'), load: 1234, schema: 'abc', release: '0.1.0', rpcAddress: '127.0.0.1:7100', name: 'n1' };
    const app = Object.fromEntries(encodeAppState(values).map(([k, value], i) => [k, { value, version: i + 1 }]));
    expect(decodeAppState(app)).toEqual(values);
    expect(() => encodeAppState({ status: 'SLEEPING' as never })).toThrow(InvalidAppState);
    expect(() => encodeAppState({ load: -1 })).toThrow(InvalidAppState);
    expect(() => encodeAppState({ hostId: 'nope' as never })).toThrow(InvalidAppState);
    expect(() => encodeAppState({ tokens: [2n ** 64n as Token] })).toThrow(InvalidAppState);
  });

  it('leaves out malformed values from peers instead of throwing', () => {
    const app = { STATUS: { value: 'WEIRD', version: 1 }, TOKENS: { value: '1,zz', version: 2 }, LOAD: { value: 'lots', version: 3 }, DC: { value: 'dc1', version: 4 } };
    expect(decodeAppState(app)).toEqual({ dc: 'dc1' });
  });
});
