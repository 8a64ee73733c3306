import { defineConfig, type ViteUserConfig } from 'vitest/config';

/**
 * Every package's test settings. Tests assert behaviour, never speed, so the only thing a slow
 * or busy machine changes is how long they may run: CHORUS_TEST_TIME_SCALE stretches every limit.
 */
export const TIME_SCALE = Math.max(1, Number(process.env.CHORUS_TEST_TIME_SCALE ?? 1) || 1);

type TestOptions = NonNullable<ViteUserConfig['test']>;

export function chorusTestConfig(test: TestOptions = {}) {
  const { testTimeout = 30_000, hookTimeout = 30_000, ...rest } = test;
  return defineConfig({
    test: {
      include: ['test/**/*.test.ts'],
      ...rest,
      testTimeout: testTimeout * TIME_SCALE,
      hookTimeout: hookTimeout * TIME_SCALE,
    },
  });
}
