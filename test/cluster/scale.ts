/**
 * One knob for every deadline and timeout of the real-process tests: a slow or busy machine
 * sets CHORUS_TEST_TIME_SCALE (e.g. 3) and every wait grows by that factor. Kept free of
 * imports so the vitest config can use it too.
 */
export const TIME_SCALE = Math.max(1, Number(process.env.CHORUS_TEST_TIME_SCALE ?? 1) || 1);
export function scaled(ms: number): number {
  return Math.round(ms * TIME_SCALE);
}
