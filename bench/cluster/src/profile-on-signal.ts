/**
 * Loaded into each Chorus node by `pnpm bench:cluster --cpu-prof DIR` (Node's `--import`): SIGUSR2 starts the
 * inspector's CPU profiler, the next SIGUSR2 stops it and writes `<pid>-<n>.cpuprofile` into
 * $CHORUS_BENCH_PROFILE_DIR. The bench signals at the start and the end of a workload's measured seconds, so a
 * profile holds that load and nothing else: a profile of the whole process would also hold the cluster's start,
 * the keys' preparation, the warm-up and every other workload.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';

const dir = process.env.CHORUS_BENCH_PROFILE_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  let profiling = false;
  let profiles = 0;
  const toggle = async (): Promise<void> => {
    profiling = !profiling;
    if (profiling) {
      await session.post('Profiler.enable');
      await session.post('Profiler.setSamplingInterval', { interval: 250 });
      await session.post('Profiler.start');
    } else {
      const { profile } = await session.post('Profiler.stop');
      // Written whole under another name first: the bench waits for the file's final name.
      const file = join(dir, `${process.pid}-${++profiles}.cpuprofile`);
      writeFileSync(`${file}.partial`, JSON.stringify(profile));
      renameSync(`${file}.partial`, file);
    }
  };
  process.on('SIGUSR2', () => {
    toggle().catch((error: unknown) => process.stderr.write(`cpu profile: ${String(error)}\n`));
  });
}
