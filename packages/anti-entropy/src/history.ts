import type { Env, Token } from '@chorus/core';
import { type TokenRange, rangeContains } from '@chorus/ring';
import { SYSTEM_KEYSPACE, type StorageHandle, systemRow, write } from '@chorus/storage';

/** A token range of a keyspace and the start of the last repair that covered it on every replica. */
export interface RepairedRange {
  keyspace: string;
  start: Token;
  end: Token;
  repairedAtMicros: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
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
  private saving: Promise<void> = Promise.resolve();
  /** Each record is written above the last one, so it wins even after this node's clock stepped back. */
  private lastWriteMicros = 0;

  private constructor(
    private readonly env: Env,
    private readonly storage: StorageHandle,
    private readonly timeoutMs: number,
  ) {}

  static async load(env: Env, storage: StorageHandle, timeoutMs: number): Promise<RepairHistory> {
    const history = new RepairHistory(env, storage, timeoutMs);
    const { token, partition } = systemRow('repair', PREFIX);
    let after: Uint8Array | undefined;
    for (;;) {
      const page = await storage.reader.slice(SYSTEM_KEYSPACE, token, partition, { from: encoder.encode(PREFIX), to: encoder.encode(`${PREFIX}\uffff`), limit: 100, ...(after ? { after } : {}) });
      for (const row of page.rows) {
        if (!('value' in row.cell)) continue;
        history.lastWriteMicros = Math.max(history.lastWriteMicros, row.cell.timestampMicros);
        try {
          const ranges = (JSON.parse(decoder.decode(row.cell.value)) as Array<{ start: string; end: string; at: number }>).map((r) => ({
            keyspace: decoder.decode(row.clustering).slice(PREFIX.length),
            start: BigInt(r.start) as Token,
            end: BigInt(r.end) as Token,
            repairedAtMicros: r.at,
          }));
          if (ranges.length > 0) history.byKeyspace.set(ranges[0]!.keyspace, ranges);
        } catch (error) {
          env.logger.warn({ err: error, row: decoder.decode(row.clustering) }, 'unreadable repair history row; its ranges count as never repaired');
        }
      }
      if (page.nextPage === undefined) break;
      after = page.nextPage;
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
    const text = JSON.stringify(kept.map((r) => ({ start: r.start.toString(), end: r.end.toString(), at: r.repairedAtMicros })));
    const row = systemRow('repair', `${PREFIX}${keyspace}`);
    // One write at a time, in order, so the last record on disk is the newest.
    this.lastWriteMicros = Math.max(this.env.clock.nowMicros(), this.lastWriteMicros + 1);
    const cell = { value: encoder.encode(text), timestampMicros: this.lastWriteMicros };
    const saved = this.saving.then(() => write(this.storage.ref, { ...row, cell }, this.timeoutMs));
    this.saving = saved.catch(() => undefined);
    await saved;
  }
}
