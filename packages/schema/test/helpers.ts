import type { NodeId, SchemaGossip, SchemaMismatch } from '@chorus/core';

/**
 * A stand-in for gossip's side of SchemaGossip: every published version is
 * seen by every node at once, and each node whose version differs from a
 * peer's hears of that peer, as gossip reports it once the peer is UP.
 */
export class VersionBus {
  readonly versions = new Map<NodeId, string>();
  private readonly listeners = new Map<NodeId, Set<(m: SchemaMismatch) => void>>();

  gossipOf(self: NodeId): SchemaGossip {
    return {
      publishVersion: (version) => {
        this.versions.set(self, version);
        this.compare();
      },
      onVersionMismatch: (listener) => {
        const set = this.listeners.get(self) ?? new Set();
        this.listeners.set(self, set);
        set.add(listener);
        return () => set.delete(listener);
      },
    };
  }

  listenerCount(node: NodeId): number {
    return this.listeners.get(node)?.size ?? 0;
  }

  private compare(): void {
    for (const [node, ours] of this.versions) {
      for (const [peer, theirs] of this.versions) {
        if (peer === node || theirs === ours) continue;
        for (const listener of this.listeners.get(node) ?? []) listener({ peer, theirs, ours });
      }
    }
  }
}
