import { ConfigError } from './errors.js';

/**
 * The node's heap: one size, `max_heap_size` (V8's old space, as Cassandra's MAX_HEAP_SIZE), from which the
 * byte budgets a user does not set are derived, so that a node under overload answers Overloaded rather
 * than dying of an out-of-memory crash, and an idle or busy node does not let garbage grow its RSS.
 */

const MiB = 1024 * 1024;

/** What the node holds beside its budgets: actors, rings, peer links, fastify, compiled code. (The row cache is outside the heap.) */
export const HEAP_RESERVE_BYTES = 48 * MiB;
/** The least room the byte budgets may share once the reserve is counted. */
export const MIN_BUDGET_ROOM_BYTES = 16 * MiB;
/** Every byte budget holds at least one largest value (1 MiB) and its keys (as the settings' own minimum). */
const MIN_BUDGET_BYTES = 2 * MiB;
/**
 * The most a derived budget may be, whatever the heap. The writes a node coordinates stay below the 16 MiB
 * each peer link queues, so that their excess is refused as Overloaded rather than dropped on a link and
 * timed out; a bigger heap does not change the link.
 */
const DERIVED_BUDGET_CAPS: Partial<Record<keyof typeof HEAP_BUDGETS, number>> = { max_coordinator_inflight_bytes: 12 * MiB };
/**
 * A young generation of 32 MiB semi-spaces, twice V8's default on 64-bit, pinned so the RSS beside the old space
 * (up to 3 × 32 MiB) does not move with the Node version. A request lives about as long as a scavenge cycle at
 * full load, so a young generation twice as large lets most of them die before they are copied: the cluster
 * bench (README, Benchmarks) measured 10 % less CPU per write and 14 % less per hot read than with 16 MiB ones,
 * for about 30 MiB more RSS at the start and no higher peak over a long mixed load.
 */
const SEMI_SPACE_MIB = 32;

/**
 * When V8 starts marking the old space for a full collection: once this share of the room it allowed the old
 * space after the last one is used. Left to itself, V8 starts as soon as that room is smaller than the young
 * generation's capacity (what one scavenge could promote at most): with 32 MiB semi-spaces and a node's old
 * space of about 25 MiB live, which V8 gives 18–36 MiB of room, a node under write load started marking again
 * right after each collection: about one a second, each with its marking steps, its pause and its concurrent
 * marking. A scavenge promotes well under 1 MiB here, so the room left does not run out while marking runs.
 * Measured with `chorus bench --concurrency 1024` on 3 nodes, alternated: 9–18 full collections over the three
 * nodes in 12 s of load against 24–41, a GC share about one to two points lower; the cluster bench's 3-minute
 * mixed load peaked 5–8 MiB higher (25 MiB higher at 80 %, which the memory target does not leave room for).
 */
const MARKING_START_PERCENT = 40;

/** Byte budgets derived from the heap unless set, and each one's share of the room they have. */
export const HEAP_BUDGETS = {
  max_inflight_request_bytes: 1 / 4,
  max_inflight_request_bytes_per_connection: 1 / 16,
  max_coordinator_inflight_bytes: 1 / 8,
  max_mailbox_bytes: 1 / 4,
  max_storage_batch_bytes: 1 / 16,
} as const;
export type HeapBudget = keyof typeof HEAP_BUDGETS;

/**
 * How many of each budget may be full at once on one node: the replica's and the storage actor's mailboxes
 * each take max_mailbox_bytes; a connection's requests are part of the node's request bytes, so counted there.
 */
const FULL_AT_ONCE: Record<HeapBudget, number> = {
  max_inflight_request_bytes: 1,
  max_inflight_request_bytes_per_connection: 0,
  max_coordinator_inflight_bytes: 1,
  max_mailbox_bytes: 2,
  max_storage_batch_bytes: 1,
};

export interface HeapSettings extends Record<HeapBudget, number> {
  max_heap_size: number;
}

/** Room the byte budgets share: the heap less the reserve. */
export function budgetRoom(heapBytes: number): number {
  return heapBytes - HEAP_RESERVE_BYTES;
}

/** Each budget's size for a heap, as the node takes it when the budget is not set. */
export function derivedBudgets(heapBytes: number): Record<HeapBudget, number> {
  const room = Math.max(0, budgetRoom(heapBytes));
  const out = {} as Record<HeapBudget, number>;
  // Whole KiB, readable in the metrics and the log.
  for (const [name, share] of Object.entries(HEAP_BUDGETS) as Array<[HeapBudget, number]>) {
    out[name] = Math.min(DERIVED_BUDGET_CAPS[name] ?? Infinity, Math.max(MIN_BUDGET_BYTES, Math.floor((room * share) / 1024) * 1024));
  }
  return out;
}

/**
 * Fills in the budgets not in `explicit` from the heap, then checks that the reserve and every budget full at
 * once fit in it; a configuration that cannot is refused with the figures that do not add up.
 */
export function fitBudgetsToHeap<S extends HeapSettings>(settings: S, explicit: ReadonlySet<string>): S {
  const derived = derivedBudgets(settings.max_heap_size);
  const out = { ...settings };
  for (const name of Object.keys(HEAP_BUDGETS) as HeapBudget[]) if (!explicit.has(name)) out[name] = derived[name];
  const room = budgetRoom(out.max_heap_size);
  const mib = (bytes: number) => `${Math.round((bytes / MiB) * 10) / 10} MiB`;
  if (room < MIN_BUDGET_ROOM_BYTES) {
    throw new ConfigError(
      `max_heap_size ${mib(out.max_heap_size)} is too small: the node keeps ${mib(HEAP_RESERVE_BYTES)} for itself and the byte budgets need at least ${mib(MIN_BUDGET_ROOM_BYTES)}, so max_heap_size must be at least ${mib(HEAP_RESERVE_BYTES + MIN_BUDGET_ROOM_BYTES)}`,
    );
  }
  const full = (Object.keys(HEAP_BUDGETS) as HeapBudget[]).filter((name) => FULL_AT_ONCE[name] > 0);
  const total = full.reduce((sum, name) => sum + FULL_AT_ONCE[name] * out[name], 0);
  if (total > room) {
    const parts = full.map((name) => `${name} ${mib(out[name])}${FULL_AT_ONCE[name] > 1 ? ` × ${FULL_AT_ONCE[name]}` : ''}`).join(' + ');
    throw new ConfigError(
      `the byte budgets do not fit max_heap_size ${mib(out.max_heap_size)}: ${parts} = ${mib(total)}, but the heap leaves them ${mib(room)} (after ${mib(HEAP_RESERVE_BYTES)} for the node); raise max_heap_size to at least ${mib(out.max_heap_size + total - room)} or lower the budgets set (${full.filter((n) => explicit.has(n)).join(', ') || 'none'})`,
    );
  }
  return out;
}

/** Node flags that give a process the heap of `max_heap_size`, and the schedule of full collections it runs best with. */
export function heapFlags(settings: Pick<HeapSettings, 'max_heap_size'>): string[] {
  return [
    `--max-old-space-size=${Math.floor(settings.max_heap_size / MiB)}`,
    `--max-semi-space-size=${SEMI_SPACE_MIB}`,
    `--incremental-marking-soft-trigger=${MARKING_START_PERCENT}`,
  ];
}

/**
 * Whether a process started with `execArgv` (and NODE_OPTIONS, which its command line overrides) already runs
 * with these flags: each flag's last value is the one V8 takes.
 */
export function runsWithFlags(flags: string[], execArgv: readonly string[], nodeOptions = ''): boolean {
  const given = [...nodeOptions.split(/\s+/).filter(Boolean), ...execArgv];
  const valueOf = (name: string) => {
    let value: string | undefined;
    for (const arg of given) {
      const eq = arg.indexOf('=');
      if (eq > 0 && arg.slice(0, eq).replaceAll('_', '-') === name) value = arg.slice(eq + 1);
    }
    return value;
  };
  return flags.every((flag) => {
    const eq = flag.indexOf('=');
    return valueOf(flag.slice(0, eq)) === flag.slice(eq + 1);
  });
}
