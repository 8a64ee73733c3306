import { type Env, type HostId, type Token, hostId, token } from '@chorus/core';
import { LOCAL, type StorageHandle, write } from '@chorus/storage';

export interface LocalState {
  hostId: HostId;
  /** Empty until the node has chosen its tokens. */
  tokens: Token[];
  /** Gossip generation of this start: later than every earlier start of this node, even if the clock stepped back. */
  generation: number;
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

async function readText(storage: StorageHandle, address: (typeof LOCAL)[keyof typeof LOCAL]): Promise<string | undefined> {
  const cell = await storage.reader.get(address);
  return cell ? decoder.decode(cell.value) : undefined;
}

async function writeText(storage: StorageHandle, env: Env, address: (typeof LOCAL)[keyof typeof LOCAL], text: string, timeoutMs: number): Promise<void> {
  await write(storage.ref, { ...address, cell: { value: encoder.encode(text), timestampMicros: env.clock.nowMicros() } }, timeoutMs);
}

/** Loads (or, on a first start, creates) the node's identity, and records this start's generation. */
export async function loadLocalState(storage: StorageHandle, env: Env, timeoutMs: number): Promise<LocalState> {
  let id = await readText(storage, LOCAL.hostId);
  if (!id) {
    id = env.random.uuid();
    await writeText(storage, env, LOCAL.hostId, id, timeoutMs);
  }
  const tokensText = await readText(storage, LOCAL.tokens);
  const tokens = tokensText ? tokensText.split(',').filter(Boolean).map((t) => token(t)) : [];
  const previous = Number((await readText(storage, LOCAL.generation)) ?? 0);
  const generation = Math.max(Math.floor(env.clock.nowMicros() / 1_000_000), previous + 1);
  await writeText(storage, env, LOCAL.generation, String(generation), timeoutMs);
  return { hostId: hostId(id), tokens, generation };
}

export async function saveTokens(storage: StorageHandle, env: Env, tokens: readonly Token[], timeoutMs: number): Promise<void> {
  await writeText(storage, env, LOCAL.tokens, tokens.join(','), timeoutMs);
}
