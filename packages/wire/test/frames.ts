import { Packr } from 'msgpackr';
import { expect } from 'vitest';
import { FrameRejected, wireCodec } from '../src/index.js';

/** Unpacks a frame as plain msgpack, to look at what went on the wire. */
export const raw = new Packr({ useRecords: false, mapsAsObjects: true });

/** The codec's refusal of a frame; fails the test if the frame is accepted. */
export function rejection(frame: Uint8Array): FrameRejected {
  try {
    wireCodec().decode(frame);
  } catch (error) {
    expect(error).toBeInstanceOf(FrameRejected);
    return error as FrameRejected;
  }
  throw new Error('frame was accepted');
}
