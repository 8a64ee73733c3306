import { InvalidRequest } from '@chorus/core';
import { describe, expect, it } from 'vitest';
import { type KeyspaceDef, parseReadRepair, parseReplication, parseTombstoneGc, readRepairOf, replicationKey, tombstoneGcOf, totalReplicationFactor, validateKeyspace } from '../src/index.js';

describe('replication settings', () => {
  it('reads the shapes users write', () => {
    expect(parseReplication({ class: 'SimpleStrategy', rf: 3 })).toEqual({ class: 'SimpleStrategy', rf: 3 });
    expect(parseReplication({ class: 'org.apache.cassandra.locator.SimpleStrategy', replication_factor: '2' })).toEqual({ class: 'SimpleStrategy', rf: 2 });
    expect(parseReplication({ class: 'NetworkTopologyStrategy', dc1: 3, dc2: '2' })).toEqual({ class: 'NetworkTopologyStrategy', dcs: { dc1: 3, dc2: 2 } });
    expect(parseReplication({ class: 'NetworkTopologyStrategy', dcs: { dc1: 1 } })).toEqual({ class: 'NetworkTopologyStrategy', dcs: { dc1: 1 } });
  });

  it.each([
    [null, /replication must be an object/],
    [{ class: 'LocalStrategy' }, /replication class/],
    [{ class: 'SimpleStrategy' }, /rf must be an integer/],
    [{ class: 'SimpleStrategy', rf: 0 }, /rf must be an integer/],
    [{ class: 'SimpleStrategy', rf: 1.5 }, /rf must be an integer/],
    [{ class: 'SimpleStrategy', rf: 3, dc1: 2 }, /takes only rf/],
    [{ class: 'NetworkTopologyStrategy' }, /at least one datacenter/],
    [{ class: 'NetworkTopologyStrategy', dc1: -1 }, /rf of dc1/],
    [{ class: 'NetworkTopologyStrategy', 'bad dc': 1 }, /invalid datacenter name/],
  ])('refuses %j with a clear InvalidRequest', (input, message) => {
    expect(() => parseReplication(input)).toThrow(InvalidRequest);
    expect(() => parseReplication(input)).toThrow(message);
  });

  it('refuses unknown datacenters when the known ones are given', () => {
    const spec = { class: 'NetworkTopologyStrategy', dc1: 3, dc9: 1 };
    expect(() => parseReplication(spec, ['dc1', 'dc2'])).toThrow(/unknown datacenter dc9; known: dc1, dc2/);
    expect(parseReplication(spec)).toEqual({ class: 'NetworkTopologyStrategy', dcs: { dc1: 3, dc9: 1 } });
  });

  it('keys equal settings equally', () => {
    const a = parseReplication({ class: 'NetworkTopologyStrategy', dc1: 3, dc2: 2 });
    const b = parseReplication({ class: 'NetworkTopologyStrategy', dc2: 2, dc1: 3 });
    expect(replicationKey(a)).toBe(replicationKey(b));
    expect(replicationKey(a)).not.toBe(replicationKey({ class: 'SimpleStrategy', rf: 5 }));
    expect(totalReplicationFactor(a)).toBe(5);
  });
});

describe('keyspace definitions', () => {
  it('accepts a valid definition', () => {
    expect(validateKeyspace({ name: 'default', replication: { class: 'SimpleStrategy', rf: 3 } })).toEqual({
      name: 'default',
      replication: { class: 'SimpleStrategy', rf: 3 },
      readRepair: 'blocking',
      tombstoneGc: 'repair',
    });
    expect(validateKeyspace({ name: 'A'.repeat(48), replication: { class: 'SimpleStrategy', rf: 1 } }).name).toHaveLength(48);
  });

  it('reads read_repair (blocking by default, or none), in either spelling and any case', () => {
    const replication = { class: 'SimpleStrategy', rf: 3 };
    expect(validateKeyspace({ name: 'ks', replication, read_repair: 'none' }).readRepair).toBe('none');
    expect(validateKeyspace({ name: 'ks', replication, readRepair: 'BLOCKING' }).readRepair).toBe('blocking');
    expect(parseReadRepair(undefined)).toBe('blocking');
    // A definition made before the option existed (or by hand, without it) reads as blocking.
    const older: KeyspaceDef = { name: 'ks', replication: { class: 'SimpleStrategy', rf: 1 } };
    expect(readRepairOf(older)).toBe('blocking');
    for (const bad of ['async', '', 1, null]) {
      expect(() => validateKeyspace({ name: 'ks', replication, read_repair: bad })).toThrow(/read_repair must be blocking or none/);
    }
    expect(() => validateKeyspace({ name: 'ks', replication, read_repair: 'none', readRepair: 'none' })).toThrow(InvalidRequest);
  });

  it('reads tombstone_gc (repair by default, or grace), in either spelling and any case', () => {
    const replication = { class: 'SimpleStrategy', rf: 3 };
    expect(validateKeyspace({ name: 'ks', replication, tombstone_gc: 'grace' }).tombstoneGc).toBe('grace');
    expect(validateKeyspace({ name: 'ks', replication, tombstoneGc: ' REPAIR ' }).tombstoneGc).toBe('repair');
    expect(validateKeyspace({ name: 'ks', replication }).tombstoneGc).toBe('repair');
    expect(parseTombstoneGc(undefined)).toBe('repair');
    // A definition made before the option existed reads as repair: purging on gc grace alone is the unsafe reading.
    const older: KeyspaceDef = { name: 'ks', replication: { class: 'SimpleStrategy', rf: 1 } };
    expect(tombstoneGcOf(older)).toBe('repair');
    expect(tombstoneGcOf({ tombstoneGc: 'grace' })).toBe('grace');
    for (const bad of ['immediate', 'timeout', '', 0, null]) {
      expect(() => validateKeyspace({ name: 'ks', replication, tombstone_gc: bad })).toThrow(/tombstone_gc must be grace or repair/);
    }
    expect(() => validateKeyspace({ name: 'ks', replication, tombstone_gc: 'grace', tombstoneGc: 'grace' })).toThrow(InvalidRequest);
  });

  it.each(['', '1abc', '_x', 'has-dash', 'A'.repeat(49), 42])('refuses the name %j', (name) => {
    const attempt = (): unknown => validateKeyspace({ name, replication: { class: 'SimpleStrategy', rf: 1 } });
    expect(attempt).toThrow(InvalidRequest);
    expect(attempt).toThrow(/invalid keyspace name/);
  });

  it('carries the offending field in the error body', () => {
    try {
      validateKeyspace({ name: 'ks', replication: { class: 'SimpleStrategy', rf: 'x' } });
      expect.unreachable();
    } catch (e) {
      expect((e as InvalidRequest).toJSON()).toMatchObject({ error: 'InvalidRequest', field: 'rf' });
    }
  });
});
