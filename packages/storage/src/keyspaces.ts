import type { Token } from '@chorus/core';
import { validateKeyspace } from '@chorus/model';
import { escapedLength, keyspacePrefix, writeEscaped, writeToken } from './keys.js';

const DECODE = new TextDecoder();

/** The keyspace name of a data key (`'d' | len | keyspace | …`). */
export function keyspaceNameOf(key: Uint8Array): string {
  return DECODE.decode(key.subarray(2, 2 + key[1]!));
}

/** Validated keyspace names and their key prefixes: a name is validated and encoded the first time it is seen. */
export class KeyspacePrefixes {
  private readonly prefixes = new Map<string, Uint8Array>();

  /** The key prefix of a keyspace, validating the name the first time it is seen. */
  prefix(name: string): Uint8Array {
    let prefix = this.prefixes.get(name);
    if (prefix === undefined) {
      validateKeyspace(name);
      prefix = keyspacePrefix(name);
      if (this.prefixes.size >= 1024) this.prefixes.clear();
      this.prefixes.set(name, prefix);
    }
    return prefix;
  }

  partitionKey(keyspace: string, t: Token, partition: Uint8Array): Uint8Array {
    const ks = this.prefix(keyspace);
    const out = new Uint8Array(ks.length + 8 + escapedLength(partition));
    out.set(ks, 0);
    writeToken(out, ks.length, t);
    writeEscaped(out, ks.length + 8, partition);
    return out;
  }
}
