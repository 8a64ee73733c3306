import type { Transport } from '@chorus/core';
import { describeTransportCompliance } from '@chorus/transport-compliance';
import { Simulation } from '../src/index.js';

describeTransportCompliance('MemoryNetwork', () => {
  const sim = new Simulation({ seed: 7, network: { latencyMs: 2, jitterMs: 3 } });
  const latest = new Map<string, Transport>();
  const names: string[] = [];
  return {
    nobody: 'nobody' as Transport['localNode'],
    async create(count) {
      for (let i = 0; i < count; i++) {
        const name = `n${names.length + 1}`;
        names.push(name);
        await sim.addNode(name, ({ transport }) => void latest.set(name, transport));
      }
      return names.map((n) => latest.get(n)!);
    },
    async kill(index) {
      sim.crash(names[index]!);
    },
    async revive(index) {
      await sim.restart(names[index]!);
      return latest.get(names[index]!)!;
    },
    async until(condition, timeoutMs) {
      const deadline = sim.now + timeoutMs;
      while (!condition()) {
        if (sim.now >= deadline) return false;
        await sim.run({ untilMs: Math.min(deadline, sim.now + 1) });
      }
      return true;
    },
    async dispose() {},
  };
});
