import { type Env, type HostId, type NodeId, type Token, hostId, nodeId, token } from '@chorus/core';
import { LOCAL, type StorageHandle, systemRow, write } from '@chorus/storage';

export interface LocalState {
  hostId: HostId;
  /** Empty until the node has chosen its tokens. */
  tokens: Token[];
  /** Gossip generation of this start: later than every earlier start of this node, even if the clock stepped back. */
  generation: number;
  /** The other members of the ring as this node last knew it; empty on a first start or in a ring of its own. */
  peers: NodeId[];
}

type LocalRow = ReturnType<typeof systemRow>;

/** The ring's other members, kept so that a restart knows whom gossip must tell it about before the node coordinates. */
const PEERS: LocalRow = systemRow('local', 'peers');

const decoder = new TextDecoder();
const encoder = new TextEncoder();

async function readText(storage: StorageHandle, address: LocalRow): Promise<string | undefined> {
  const cell = await storage.reader.get(address);
  return cell ? decoder.decode(cell.value) : undefined;
}

async function writeText(storage: StorageHandle, env: Env, address: LocalRow, text: string, timeoutMs: number): Promise<void> {
  await write(storage.ref, { ...address, cell: { value: encoder.encode(text), timestampMicros: env.clock.nowMicros() } }, timeoutMs);
}

const listOf = (text: string | undefined): string[] => (text ? text.split(',').filter(Boolean) : []);

/** Loads (or, on a first start, creates) the node's identity, and records this start's generation. */
export async function loadLocalState(storage: StorageHandle, env: Env, timeoutMs: number): Promise<LocalState> {
  let id = await readText(storage, LOCAL.hostId);
  if (!id) {
    id = env.random.uuid();
    await writeText(storage, env, LOCAL.hostId, id, timeoutMs);
  }
  const tokens = listOf(await readText(storage, LOCAL.tokens)).map((t) => token(t));
  const previous = Number((await readText(storage, LOCAL.generation)) ?? 0);
  const generation = Math.max(Math.floor(env.clock.nowMicros() / 1_000_000), previous + 1);
  await writeText(storage, env, LOCAL.generation, String(generation), timeoutMs);
  const peers = listOf(await readText(storage, PEERS)).map((p) => nodeId(p));
  return { hostId: hostId(id), tokens, generation, peers };
}

export async function saveTokens(storage: StorageHandle, env: Env, tokens: readonly Token[], timeoutMs: number): Promise<void> {
  await writeText(storage, env, LOCAL.tokens, tokens.join(','), timeoutMs);
}

export async function savePeers(storage: StorageHandle, env: Env, peers: readonly NodeId[], timeoutMs: number): Promise<void> {
  await writeText(storage, env, PEERS, peers.join(','), timeoutMs);
}
