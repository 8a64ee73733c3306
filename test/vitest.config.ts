import { defineConfig } from 'vitest/config';

// Real processes on a 2-core machine: one file at a time, generous but bounded timeouts.
export default defineConfig({
  test: { include: ['cluster/**/*.test.ts'], fileParallelism: false, testTimeout: 120_000, hookTimeout: 120_000 },
});
