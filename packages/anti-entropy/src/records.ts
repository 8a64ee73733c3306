import type { Env } from '@chorus/core';
import { SYSTEM_KEYSPACE, type StorageHandle, systemRow, write } from '@chorus/storage';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Repair's own rows in this node's `system` keyspace (partition `repair`):
 * the history of repaired ranges and the repair jobs. Writes go one at a
 * time, in order, each stamped above the last, so the newest record wins
 * even after this node's clock stepped back.
 */
export class RepairRecords {
  private lastWriteMicros = 0;
  private saving: Promise<void> = Promise.resolve();

  constructor(
    private readonly env: Env,
    private readonly storage: StorageHandle,
    private readonly timeoutMs: number,
  ) {}

  /** Every live row whose name starts with `prefix`: its name without the prefix and its text. */
  async *load(prefix: string): AsyncGenerator<{ name: string; text: string }> {
    const { token, partition } = systemRow('repair', prefix);
    let after: Uint8Array | undefined;
    for (;;) {
      const page = await this.storage.reader.slice(SYSTEM_KEYSPACE, token, partition, { from: encoder.encode(prefix), to: encoder.encode(`${prefix}\uffff`), limit: 100, ...(after ? { after } : {}) });
      for (const row of page.rows) {
        if (!('value' in row.cell)) continue;
        this.lastWriteMicros = Math.max(this.lastWriteMicros, row.cell.timestampMicros);
        yield { name: decoder.decode(row.clustering).slice(prefix.length), text: decoder.decode(row.cell.value) };
      }
      if (page.nextPage === undefined) return;
      after = page.nextPage;
    }
  }

  /** Writes (or, with `undefined`, deletes) row `name`; resolves once stored, rejects if the store refused. */
  save(name: string, text: string | undefined): Promise<void> {
    this.lastWriteMicros = Math.max(this.env.clock.nowMicros(), this.lastWriteMicros + 1);
    const timestampMicros = this.lastWriteMicros;
    const cell = text === undefined ? { tombstone: true as const, timestampMicros } : { value: encoder.encode(text), timestampMicros };
    const saved = this.saving.then(() => write(this.storage.ref, { ...systemRow('repair', name), cell }, this.timeoutMs));
    this.saving = saved.catch(() => undefined);
    return saved;
  }

  /** Resolves once every write asked so far has ended. */
  flushed(): Promise<void> {
    return this.saving;
  }
}
