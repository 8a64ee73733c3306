import { type Env, type HostId, type NodeId, type Token, hostId, nodeId, token } from '@chorus/core';
import { type EndpointState, MAX_VALUE_LENGTH } from '@chorus/gossip';
import { LOCAL, type StorageHandle, flush, readCell, systemRow, write } from '@chorus/storage';
import { GenerationNotIncreasing } from './errors.js';

export interface LocalState {
  hostId: HostId;
  /** Empty until the node has chosen its tokens. */
  tokens: Token[];
  /** Gossip generation of this start: later than every earlier start of this node, even if the clock stepped back. */
  generation: number;
  /** The other members of the ring as this node last knew it; empty on a first start or in a ring of its own. */
  peers: NodeId[];
  /** The clock's high-water mark the last run recorded (µs); 0 on a first start. */
  clockMarkMicros: number;
}

type LocalRow = ReturnType<typeof systemRow>;

/** The ring's other members, kept so that a restart knows whom gossip must tell it about before the node coordinates. */
const PEERS: LocalRow = systemRow('local', 'peers');
/** The hybrid logical clock's high-water mark, so that a restart stamps above every timestamp the last run issued. */
const CLOCK: LocalRow = systemRow('local', 'clock');

const decoder = new TextDecoder();
const encoder = new TextEncoder();

type StoredCell = Awaited<ReturnType<StorageHandle['reader']['getCell']>>;

const textOf = (cell: StoredCell): string | undefined => (cell && 'value' in cell ? decoder.decode(cell.value) : undefined);

/**
 * Writes one of the node's own rows so that it replaces what the row holds.
 * The store keeps the version with the larger timestamp, so a row stamped
 * with the clock alone would lose to the one written before a clock step
 * back, and the next start would read the old value again. Returns false
 * when the stored version is stamped so high that nothing can follow it.
 */
async function replaceRow(storage: StorageHandle, env: Env, address: LocalRow, text: string, timeoutMs: number): Promise<boolean> {
  const stored = await readCell(storage.ref, address, timeoutMs);
  const timestampMicros = Math.max(env.clock.nowMicros(), stored === undefined ? 0 : stored.timestampMicros + 1);
  if (!Number.isSafeInteger(timestampMicros)) return false;
  await write(storage.ref, { ...address, cell: { value: encoder.encode(text), timestampMicros } }, timeoutMs);
  return true;
}

const listOf = (text: string | undefined): string[] => (text ? text.split(',').filter(Boolean) : []);

/** Loads (or, on a first start, creates) the node's identity, and records this start's generation. */
export async function loadLocalState(storage: StorageHandle, env: Env, timeoutMs: number): Promise<LocalState> {
  let id = textOf(await storage.reader.getCell(LOCAL.hostId));
  if (!id) {
    id = env.random.uuid();
    await replaceRow(storage, env, LOCAL.hostId, id, timeoutMs);
    // Synced at once, whatever commit_sync says (as Cassandra flushes its system tables): a power failure before the
    // next periodic sync would otherwise bring the node back as a stranger, with a new host id and new tokens.
    await flush(storage.ref, timeoutMs);
  }
  const tokens = listOf(textOf(await storage.reader.getCell(LOCAL.tokens))).map((t) => token(t));
  const generation = await nextGeneration(storage, env, timeoutMs);
  const peers = listOf(textOf(await storage.reader.getCell(PEERS))).map((p) => nodeId(p));
  const mark = Number(textOf(await storage.reader.getCell(CLOCK)) ?? 0);
  // A damaged mark only loses the protection it gave: the node starts from its clock, as before marks were kept.
  if (!Number.isSafeInteger(mark) || mark < 0) env.logger.warn({ mark: String(mark) }, 'the recorded clock high-water mark is unreadable; starting from the wall clock');
  return { hostId: hostId(id), tokens, generation, peers, clockMarkMicros: Number.isSafeInteger(mark) && mark > 0 ? mark : 0 };
}

/**
 * This start's gossip generation: the clock's seconds, or one more than the
 * last recorded generation when the clock is behind it (stepped back, or a
 * restart within the same second). It is recorded before gossip starts, and
 * read back: a generation that did not reach the disk would be handed out
 * again by the next start, which peers would ignore.
 */
async function nextGeneration(storage: StorageHandle, env: Env, timeoutMs: number): Promise<number> {
  const stored = await storage.reader.getCell(LOCAL.generation);
  const text = textOf(stored);
  const previous = text === undefined ? 0 : Number(text);
  if (!Number.isSafeInteger(previous) || previous < 0) {
    throw new GenerationNotIncreasing('unreadable', `the recorded generation ${JSON.stringify(text).slice(0, 40)} is not a number; the system keyspace is damaged`);
  }
  const generation = Math.max(Math.floor(env.clock.nowMicros() / 1_000_000), previous + 1);
  if (!Number.isSafeInteger(generation)) {
    throw new GenerationNotIncreasing('exhausted', `the recorded generation ${previous} leaves no larger one`, { previousGeneration: previous });
  }
  if (!(await replaceRow(storage, env, LOCAL.generation, String(generation), timeoutMs))) {
    throw new GenerationNotIncreasing('exhausted', `the recorded generation ${previous} is stamped at ${stored!.timestampMicros} µs, past which nothing can be written`, {
      previousGeneration: previous,
      storedAtMicros: stored!.timestampMicros,
    });
  }
  // Synced before gossip announces it: a power failure must not let the next start hand out the same generation again.
  await flush(storage.ref, timeoutMs);
  const recorded = textOf(await readCell(storage.ref, LOCAL.generation, timeoutMs));
  if (recorded !== String(generation)) {
    throw new GenerationNotIncreasing('not-stored', `generation ${generation} was written but the store holds ${JSON.stringify(recorded).slice(0, 40)}`, { previousGeneration: previous, generation });
  }
  return generation;
}

/** How often the clock's high-water mark is recorded while the node runs. */
export const CLOCK_MARK_INTERVAL_MS = 1_000;

/**
 * Records the clock's high-water mark (`peek`) every `CLOCK_MARK_INTERVAL_MS`
 * when it moved, and once more on `stop()`, after the node has stopped
 * stamping. A clean stop therefore records the last timestamp issued; a crash
 * loses at most the last interval, which the wall clock covers unless it
 * stepped back by more, or the clock had adopted timestamps ahead of it in
 * that interval.
 */
export function keepClockMark(storage: StorageHandle, env: Env, peek: () => number, saved: number, timeoutMs: number): { stop(): Promise<void> } {
  let stopped = false;
  let saving: Promise<void> = Promise.resolve();
  const save = (): Promise<void> => {
    const mark = peek();
    if (mark <= saved) return saving;
    saving = saving
      .then(() => replaceRow(storage, env, CLOCK, String(mark), timeoutMs))
      .then(() => {
        if (mark > saved) saved = mark;
      })
      .catch((error: unknown) => env.logger.warn({ err: error }, 'could not record the clock high-water mark'));
    return saving;
  };
  let timer = env.scheduler.setTimer(CLOCK_MARK_INTERVAL_MS, function tick() {
    if (stopped) return;
    void save();
    timer = env.scheduler.setTimer(CLOCK_MARK_INTERVAL_MS, tick);
  });
  return {
    async stop() {
      stopped = true;
      timer.cancel();
      await save();
    },
  };
}

/**
 * Records a generation gossip took after the one `loadLocalState` recorded (a
 * start a second later, a supervised restart of the gossiper), so that the
 * next start of the node goes past it too. Never lowers the recorded one.
 */
export async function recordGeneration(storage: StorageHandle, env: Env, generation: number, timeoutMs: number): Promise<void> {
  const recorded = Number(textOf(await storage.reader.getCell(LOCAL.generation)) ?? 0);
  if (Number.isSafeInteger(recorded) && recorded >= generation) return;
  await replaceRow(storage, env, LOCAL.generation, String(generation), timeoutMs);
}

export async function saveTokens(storage: StorageHandle, env: Env, tokens: readonly Token[], timeoutMs: number): Promise<void> {
  await replaceRow(storage, env, LOCAL.tokens, tokens.join(','), timeoutMs);
  // Synced at once, as the host id: tokens lost to a power failure would be chosen anew, moving ranges without streaming.
  await flush(storage.ref, timeoutMs);
}

export async function savePeers(storage: StorageHandle, env: Env, peers: readonly NodeId[], timeoutMs: number): Promise<void> {
  await replaceRow(storage, env, PEERS, peers.join(','), timeoutMs);
}

/** LEFT and REMOVED endpoints this node has learned of, so that a restart keeps refusing them (and telling them so). */
const GONE: LocalRow = systemRow('local', 'gone');

/** A gone endpoint as it is kept: its last gossip state and when this node first saw it gone (wall clock, µs). */
export interface GoneRecord {
  state: EndpointState;
  atMicros: number;
}

function isEndpointState(x: unknown): x is EndpointState {
  if (typeof x !== 'object' || x === null) return false;
  const { heartbeat, app } = x as Partial<EndpointState>;
  if (typeof heartbeat !== 'object' || heartbeat === null || !Number.isSafeInteger(heartbeat.generation) || !Number.isSafeInteger(heartbeat.version)) return false;
  if (typeof app !== 'object' || app === null) return false;
  return Object.values(app).every((v) => typeof v === 'object' && v !== null && typeof v.value === 'string' && Number.isSafeInteger(v.version));
}

/** The entries of a row holding one JSON object; none, with a warning, when the row is unreadable. */
async function jsonEntries(storage: StorageHandle, env: Env, row: LocalRow, what: string): Promise<Array<[string, unknown]>> {
  const text = textOf(await storage.reader.getCell(row));
  if (text === undefined) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    env.logger.warn({}, `${what} is unreadable; starting without it`);
    return [];
  }
  return Object.entries(typeof parsed === 'object' && parsed !== null ? parsed : {});
}

/**
 * The gone endpoints recorded by earlier runs, younger than `retentionMs`,
 * with their age. A damaged record is skipped with a warning: it only loses
 * the protection it gave.
 */
export async function loadGone(storage: StorageHandle, env: Env, retentionMs: number): Promise<Map<NodeId, GoneRecord>> {
  const out = new Map<NodeId, GoneRecord>();
  const now = env.clock.nowMicros();
  for (const [node, rec] of await jsonEntries(storage, env, GONE, 'the record of nodes gone from the ring')) {
    const r = rec as Partial<GoneRecord>;
    if (!isEndpointState(r.state) || !Number.isSafeInteger(r.atMicros)) continue;
    if (now - r.atMicros! >= retentionMs * 1000) continue;
    out.set(nodeId(node), { state: r.state, atMicros: r.atMicros! });
  }
  return out;
}

/** Records gone endpoints as gossip reports them, one write at a time; records past `retentionMs` are dropped on the next write. */
export function keepGone(storage: StorageHandle, env: Env, records: Map<NodeId, GoneRecord>, retentionMs: number, timeoutMs: number): { add(node: NodeId, state: EndpointState): void; flush(): Promise<void> } {
  let saving: Promise<void> = Promise.resolve();
  return {
    add(node, state) {
      const now = env.clock.nowMicros();
      records.set(node, { state, atMicros: now });
      for (const [n, r] of records) if (now - r.atMicros >= retentionMs * 1000) records.delete(n);
      const text = JSON.stringify(Object.fromEntries(records));
      saving = saving
        .then(() => replaceRow(storage, env, GONE, text, timeoutMs))
        // Synced at once: a leaving node stops once its peers hold LEFT, and a peer that forgot it in a power
        // failure would keep the node in its ring for good.
        .then(() => flush(storage.ref, timeoutMs))
        .catch((error: unknown) => env.logger.warn({ err: error, node }, 'could not record a node gone from the ring'));
    },
    flush: () => saving,
  };
}

/**
 * Set once this node has announced LEFT (decommission): a restart must not
 * bring it back NORMAL to the peers that had not heard LEFT yet, so it
 * gossips LEFT again and does not serve.
 */
const LEFT: LocalRow = systemRow('local', 'left');

/** Records, synced, that this node is announcing LEFT; before the announcement, so a crash right after it cannot forget it. */
export async function recordLeft(storage: StorageHandle, env: Env, timeoutMs: number): Promise<void> {
  await replaceRow(storage, env, LEFT, 'LEFT', timeoutMs);
  await flush(storage.ref, timeoutMs);
}

/** Whether an earlier run of this node announced LEFT. */
export async function hasLeft(storage: StorageHandle): Promise<boolean> {
  return textOf(await storage.reader.getCell(LEFT)) === 'LEFT';
}

/**
 * What this node last knew of each peer that is in the ring (Cassandra's
 * `system.peers`): its whole gossip state, so that a restart places a peer
 * that is down with its tokens, status, location and generation. LEFT and
 * REMOVED peers are kept by the gone row instead, with their age.
 */
const PEER_STATES: LocalRow = systemRow('local', 'peer_states');

/** An endpoint state as a peer could have sent it: the shape the wire schema checks, with values within its bound. */
function isPeerState(x: unknown): x is EndpointState {
  return isEndpointState(x) && Object.values(x.app).every((v) => v.value.length <= MAX_VALUE_LENGTH);
}

/**
 * The peers' states recorded by the last run. The row came from disk, so it
 * is checked as a peer's gossip is: a malformed entry is skipped with a
 * warning (that peer is learned from gossip again, as before it was kept),
 * and the gossiper applies the rest of its checks when it takes them.
 */
export async function loadPeerStates(storage: StorageHandle, env: Env): Promise<Map<NodeId, EndpointState>> {
  const out = new Map<NodeId, EndpointState>();
  let skipped = 0;
  for (const [node, state] of await jsonEntries(storage, env, PEER_STATES, "the record of the peers' ring state")) {
    let id: NodeId;
    try {
      id = nodeId(node);
    } catch {
      skipped++;
      continue;
    }
    if (isPeerState(state)) out.set(id, state);
    else skipped++;
  }
  if (skipped > 0) env.logger.warn({ skipped }, "skipped malformed entries of the record of the peers' ring state");
  return out;
}

/**
 * Keeps the peers' states as gossip reports their ring changes. Changes that
 * arrive while a write is pending join it: a burst (a first start learning the
 * whole ring) costs one write, and heartbeats cost none, since gossip does
 * not report them.
 */
export function keepPeerStates(storage: StorageHandle, env: Env, records: Map<NodeId, EndpointState>, timeoutMs: number): { set(node: NodeId, state: EndpointState | undefined): void; flush(): Promise<void> } {
  let saving: Promise<void> = Promise.resolve();
  let pending = false;
  const save = (): Promise<void> => {
    pending = false;
    return replaceRow(storage, env, PEER_STATES, JSON.stringify(Object.fromEntries(records)), timeoutMs).then(() => undefined);
  };
  return {
    set(node, state) {
      if (state === undefined) records.delete(node);
      else records.set(node, state);
      if (pending) return;
      pending = true;
      saving = saving.then(save).catch((error: unknown) => env.logger.warn({ err: error }, "could not record the peers' ring state"));
    },
    flush: () => saving,
  };
}
