import type { Env, Token } from '@chorus/core';
import { type TokenRange, rangeContains } from '@chorus/ring';
import type { RepairRecords } from './records.js';

/** A token range of a keyspace and the start of the last repair that covered it on every replica. */
export interface RepairedRange {
  keyspace: string;
  start: Token;
  end: Token;
  repairedAtMicros: number;
}

const PREFIX = 'repaired/';
/** Ranges kept per keyspace: a ring has a few hundred ranges; topology changes leave old ones behind, which newer ones cover. */
const MAX_RANGES_PER_KEYSPACE = 4_096;

/**
 * Per keyspace and token range, when the last successful repair of that range
 * started, on this node's disk (system keyspace, partition `repair`). The
 * repair coordinator tells every replica of a range once all of them took
 * part and every difference was synced; a tombstone this replica stored
 * before that moment was seen by the repair and is now on every replica, so
 * repair-based tombstone GC may purge it.
 */
export class RepairHistory {
  private readonly byKeyspace = new Map<string, RepairedRange[]>();

  private constructor(private readonly records: RepairRecords) {}

  static async load(env: Env, records: RepairRecords): Promise<RepairHistory> {
    const history = new RepairHistory(records);
    for await (const { name: keyspace, text } of records.load(PREFIX)) {
      try {
        const ranges = (JSON.parse(text) as Array<{ start: string; end: string; at: number }>).map((r) => ({ keyspace, start: BigInt(r.start) as Token, end: BigInt(r.end) as Token, repairedAtMicros: r.at }));
        history.byKeyspace.set(keyspace, ranges);
      } catch (error) {
        env.logger.warn({ err: error, keyspace }, 'unreadable repair history row; its ranges count as never repaired');
      }
    }
    return history;
  }

  /** The start of the newest successful repair that covered `t` of `keyspace` on every replica; undefined when none did. */
  repairedAt(keyspace: string, t: Token): number | undefined {
    let newest: number | undefined;
    for (const r of this.byKeyspace.get(keyspace) ?? []) {
      if ((newest === undefined || r.repairedAtMicros > newest) && rangeContains(r, t)) newest = r.repairedAtMicros;
    }
    return newest;
  }

  /** Every recorded range, for inspection. */
  ranges(): RepairedRange[] {
    return [...this.byKeyspace.values()].flat();
  }

  /** Records a repaired range and persists the keyspace's ranges; a newer record of the same range replaces the older. */
  async record(keyspace: string, range: TokenRange, repairedAtMicros: number): Promise<void> {
    const kept = (this.byKeyspace.get(keyspace) ?? []).filter((r) => !(r.start === range.start && r.end === range.end && r.repairedAtMicros <= repairedAtMicros));
    if (kept.some((r) => r.start === range.start && r.end === range.end)) return;
    kept.push({ keyspace, start: range.start, end: range.end, repairedAtMicros });
    // Oldest first out: a range repaired long ago is the least useful to keep.
    if (kept.length > MAX_RANGES_PER_KEYSPACE) kept.sort((a, b) => b.repairedAtMicros - a.repairedAtMicros).length = MAX_RANGES_PER_KEYSPACE;
    this.byKeyspace.set(keyspace, kept);
    await this.records.save(`${PREFIX}${keyspace}`, JSON.stringify(kept.map((r) => ({ start: r.start.toString(), end: r.end.toString(), at: r.repairedAtMicros }))));
  }
}
