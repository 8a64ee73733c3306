import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { formatResult } from '../src/format.js';
import { runSwarmSeed } from '../src/index.js';

const TIME_SCALE = Math.max(1, Number(process.env.CHORUS_TEST_TIME_SCALE ?? 1) || 1);
/** The fixed slice CI runs: seeds 1..CI_RUNS, in worker threads, through the command users run. */
const CI_RUNS = Number(process.env.CHORUS_SWARM_RUNS ?? 100);

/**
 * Seeds the swarm failed on, each with the bug it found. They run on their
 * own, in this process, so a failure shows the whole verdict.
 */
const REGRESSIONS: Array<[seed: number, found: string]> = [
  [8, 'a coordinator paused longer than its ask margin answered AskTimeout, an error no client expects, instead of WriteTimeout'],
  [36, 'a write still open when its target decommissioned offered a hint for the node that left; stored after the drop, it waited forever'],
  [19, 'every peer restarted while a node was dead, forgot it, and kept its hints undeliverable: the swarm now waits only for hints some member can still deliver (and hints drops those of a host id gone before its run started)'],
  [104, 'a power failure before the first periodic sync lost the host id, tokens and keyspaces: the node came back as a stranger'],
  [141, 'a decommission that announced LEFT and crashed before returning was retried by the swarm against a node that had left'],
  [1122, 'a delete acknowledged at ONE by the node later removed was lost with its disk, as the design allows: the checker now drops such writes from the floor'],
  [1606, 'a quorum slice right after a join missed a version an earlier quorum read saw on two replicas of the old ring only: read floors no longer bind across a ring change'],
  [874, 'decommission returned once it had announced LEFT for three gossip rounds, heard or not: cut off meanwhile, the node stopped and no peer learned it left. It now returns only once the live peers hold its LEFT; meanwhile a write at ANY through it counted a hint stored after its hand-off, which left with it: a leaving node stores no new hints'],
  [947, 'a node that announced LEFT, crashed and restarted at once came back NORMAL on the peers that had not heard LEFT. It now records LEFT on disk first, and a restart gossips LEFT again and refuses to serve'],
  [262, "every peer restarted while n3 was down and, keeping only its name, dropped it from the ring; n4 then bootstrapped against a ring without it and streamed ranges it does not own: peers' ring state is now kept across restarts"],
  [2818, 'n4 restarted where only n1 heard it, died, and n2 removed the run it knew: n1 kept the newer run in its ring; a node holding a peer as gone now carries the departure to any later run of the same host id it hears of'],
  [3816, 'n3 echoed n2\'s LEFT, then lost power with it unsynced; n2 counted the echo of that earlier run and stopped, and nobody held LEFT: a peer\'s restart now clears what it had shown, and gone peers are recorded synced'],
  [6613, 'a power loss of n1 and then a double crash took all three members down as the join began: the swarm read the ring before the movement from a running member that did not exist ("undefined is not running"); it now waits for a member to run first'],
  [6402, "a join under a double crash, loss and one-way cuts: the joining node's schema pulls were lost, gossip never reported the mismatch again, and after 30 rounds it bootstrapped without keyspace default (streamed nothing, joined NORMAL, repair failed with InvalidRequest). Failed pulls are now retried with backoff, a joining node announces no tokens until it holds its live peers' schema, and a keyspace unknown while the schema disagrees is the retryable SchemaDisagreement"],
  [1420, 'n4 announced LEFT; n1 heard it and wrote a key at quorum to the new ring, while n2, not yet told, read it at quorum from the old ring, n4 included, and saw an older version: a node that announced LEFT no longer answers as a replica'],
  [4831, 'n4 finished joining; n1 heard it and wrote a key at TWO to n4 and itself, while n3, cut off and not yet told, read it at quorum from the old replicas and saw an older version: a node that finished joining stays pending, for writes and reads planned on each node, for 30 gossip rounds after that node heard it'],
];

describe('simulation swarm: regression seeds', () => {
  for (const [seed, found] of REGRESSIONS) {
    it(`seed ${seed}: ${found}`, async () => {
      const result = await runSwarmSeed(seed);
      expect(result.violations, formatResult(result, true)).toEqual([]);
    }, 120_000 * TIME_SCALE);
  }
});

describe('simulation swarm: the CI slice', () => {
  it(`seeds 1..${CI_RUNS} pass every checker, and the faults fired`, async () => {
    const cli = fileURLToPath(new URL('../dist/swarm-cli.js', import.meta.url));
    const run = await promisify(execFile)(process.execPath, [cli, '--runs', String(CI_RUNS), '--workers', '2', '--quiet'], { maxBuffer: 64 << 20 }).catch((error: { stdout?: string; stderr?: string }) => ({ stdout: error.stdout ?? '', stderr: error.stderr ?? '' }));
    const lines = run.stdout.trim().split('\n');
    expect(lines.at(-1), `${run.stdout}\n${run.stderr}`).toMatch(new RegExp(`^swarm: ${CI_RUNS} runs, \\d+ events, [\\d.]+ simulated hours, 0 failures`));
    // Every kind of fault fired somewhere in the slice.
    const fired = lines.find((l) => l.startsWith('faults fired: '))!;
    for (const kind of ['crash', 'double-crash', 'pause', 'partition', 'flapping', 'one-way', 'loss', 'latency-spike', 'duplicate-reorder', 'clock-step', 'crash-and-partition', 'power-loss', 'join', 'decommission', 'removenode', 'movement-done']) {
      expect(fired, fired).toMatch(new RegExp(`\\b${kind} [1-9]`));
    }
  }, 600_000 * TIME_SCALE);
});
