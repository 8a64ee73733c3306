import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type ClusterLayout, startCluster } from '../src/cluster.js';

describe('chorus cluster start on an existing directory', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  function existing(layout: Partial<ClusterLayout> = {}): string {
    const dir = mkdtempSync(join(tmpdir(), 'chorus-cli-cluster-'));
    dirs.push(dir);
    const full: ClusterLayout = { basePort: 17_100, nodes: ['n1', 'n2', 'n3'], secret: 'a-secret-long-enough', rf: 3, numTokens: 16, overrides: [], ...layout };
    writeFileSync(join(dir, 'cluster.json'), JSON.stringify(full));
    return dir;
  }

  // Both refusals come before any node is spawned: nothing here starts a process.
  it('refuses other ports than the cluster was made with', async () => {
    const dir = existing();
    await expect(startCluster({ dir, basePort: 17_200 })).rejects.toThrow(/holds a cluster on base port 17100, not 17200/);
  });

  it('refuses another node count than the cluster has', async () => {
    const dir = existing();
    await expect(startCluster({ dir, nodes: 5 })).rejects.toThrow(/holds a 3-node cluster/);
  });
});
