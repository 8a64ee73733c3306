/** Slots a table starts with, and the least it keeps. */
const MIN_CAPACITY = 1024;

/**
 * Values under non-negative integer ids handed out in increasing order (asks,
 * requests in flight), in place of a `Map` for state that comes and goes by
 * the thousand every second.
 *
 * Why not a Map: V8 keeps a Map's entries in a hash table that it replaces by
 * a new one as deletions pile up. Once the Map has lived long enough to be in
 * the old space, each table it drops still points at the young objects its
 * entries held, and the scavenger takes those pointers as roots until the
 * next full collection: requests long finished are copied, promoted, and
 * collected only by full collections. A loop of 1,000 live entries with
 * 5 ms lives promoted 78 % of what it allocated behind a Map and nothing
 * behind this table.
 *
 * Each id has one slot, `id mod capacity`, cleared on delete. An entry still
 * there when a newer id needs its slot (it outlived `capacity` newer ones)
 * moves to a small Map of stragglers, which only long-lived entries reach.
 * The table doubles once it is half full, so its slots stay mostly free, and
 * halves, on a `set`, once under an eighth full (never below its first size),
 * so that a burst does not leave every later walk of it (`entries()`) the
 * burst's length: between two resizes come at least an eighth of its slots'
 * worth of sets or deletes.
 */
export class IdTable<V> {
  private values: Array<V | undefined> = new Array(MIN_CAPACITY).fill(undefined);
  private ids = new Float64Array(MIN_CAPACITY);
  private mask = MIN_CAPACITY - 1;
  private inSlots = 0;
  private stragglers: Map<number, V> | undefined;

  get size(): number {
    return this.inSlots + (this.stragglers?.size ?? 0);
  }

  /** Slots the table holds now. */
  get capacity(): number {
    return this.values.length;
  }

  get(id: number): V | undefined {
    const slot = id & this.mask;
    const value = this.values[slot];
    if (value !== undefined && this.ids[slot] === id) return value;
    return this.stragglers?.get(id);
  }

  has(id: number): boolean {
    return this.get(id) !== undefined;
  }

  /** Stores `value` (not undefined) under `id`. */
  set(id: number, value: V): void {
    // One entry per id: a straggler set again goes back to its slot.
    this.stragglers?.delete(id);
    this.place(id, value);
    const capacity = this.values.length;
    if (this.inSlots * 2 > capacity) this.resize(capacity * 2);
    else if (this.inSlots * 8 < capacity && capacity > MIN_CAPACITY) this.resize(capacity / 2);
  }

  /** Removes `id`; whether it was there. */
  delete(id: number): boolean {
    const slot = id & this.mask;
    if (this.values[slot] !== undefined && this.ids[slot] === id) {
      this.values[slot] = undefined;
      this.inSlots--;
      return true;
    }
    return this.stragglers?.delete(id) ?? false;
  }

  clear(): void {
    this.values = new Array(MIN_CAPACITY).fill(undefined);
    this.ids = new Float64Array(MIN_CAPACITY);
    this.mask = MIN_CAPACITY - 1;
    this.inSlots = 0;
    this.stragglers = undefined;
  }

  /** Every entry, in no particular order. Deleting the entry being visited is safe. */
  *entries(): IterableIterator<[number, V]> {
    for (let slot = 0; slot < this.values.length; slot++) {
      const value = this.values[slot];
      if (value !== undefined) yield [this.ids[slot]!, value];
    }
    if (this.stragglers !== undefined) yield* [...this.stragglers];
  }

  /** Puts `id` in its slot; an older id there moves to the stragglers. */
  private place(id: number, value: V): void {
    const slot = id & this.mask;
    const occupant = this.values[slot];
    if (occupant !== undefined) {
      const occupantId = this.ids[slot]!;
      if (occupantId === id) {
        this.values[slot] = value;
        return;
      }
      // The newer id keeps the slot: stragglers are for entries that outlive many newer ones.
      if (occupantId > id) {
        (this.stragglers ??= new Map()).set(id, value);
        return;
      }
      (this.stragglers ??= new Map()).set(occupantId, occupant);
      this.inSlots--;
    }
    this.values[slot] = value;
    this.ids[slot] = id;
    this.inSlots++;
  }

  private resize(capacity: number): void {
    const values = this.values;
    const ids = this.ids;
    this.values = new Array(capacity).fill(undefined);
    this.ids = new Float64Array(capacity);
    this.mask = capacity - 1;
    this.inSlots = 0;
    for (let slot = 0; slot < values.length; slot++) {
      const value = values[slot];
      if (value !== undefined) this.place(ids[slot]!, value);
    }
    // The old slots would otherwise keep their values reachable from wherever the old array lives.
    values.fill(undefined);
  }
}
