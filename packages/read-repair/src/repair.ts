import type { NodeId } from '@chorus/core';
import type { Cell, RowAddress, RowWrite } from '@chorus/model';

/** What to send one stale replica so it holds the resolved version. */
export interface RepairMutation {
  target: NodeId;
  mutation: RowWrite;
}

/**
 * The mutations that bring each stale replica up to the resolved version of
 * `row`: the resolved cell itself, with its own timestamp and expiry, so a
 * repair never makes a version newer than the one it copies (a fresh
 * timestamp would beat writes that raced the read) and a tombstone stays a
 * tombstone (it must keep shadowing older values until it is purged).
 * Every target gets the same mutation object; it must not be changed.
 *
 * Nothing to send when no replica held the row (`resolved` undefined).
 */
export function repairMutations(resolved: Cell | undefined, stale: readonly NodeId[], row: RowAddress): RepairMutation[] {
  if (resolved === undefined || stale.length === 0) return [];
  // Optional fields are left out rather than set to undefined: the mutation may travel, and the wire schema refuses undefined.
  const mutation: RowWrite =
    row.clustering === undefined
      ? { keyspace: row.keyspace, token: row.token, partition: row.partition, cell: resolved }
      : { keyspace: row.keyspace, token: row.token, partition: row.partition, clustering: row.clustering, cell: resolved };
  return stale.map((target) => ({ target, mutation }));
}
