import { defineConfig } from 'vitest/config';
import { scaled } from './cluster/scale.js';

// Real processes on a 2-core machine: one file at a time. The timeouts are backstops for a hang, far above
// what a test takes even on a slow, busy machine, and grow with CHORUS_TEST_TIME_SCALE like every deadline.
export default defineConfig({
  test: {
    include: ['cluster/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: scaled(240_000),
    hookTimeout: scaled(240_000),
    teardownTimeout: scaled(60_000),
    globalSetup: ['cluster/global-setup.ts'],
  },
});
