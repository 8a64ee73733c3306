/**
 * The container that carries every frame queued to one peer within a tick as
 * a single WebSocket message: a format byte, then each frame as a 4-byte
 * big-endian length and its bytes. Length prefixes cost a copy on the way out
 * but nothing on the way in: received frames are views into the message.
 */

const BATCH_FORMAT = 0x01;
const HEADER_BYTES = 1;
const LENGTH_BYTES = 4;

export function batchBytes(frames: readonly Uint8Array[]): number {
  let total = HEADER_BYTES;
  for (const f of frames) total += LENGTH_BYTES + f.byteLength;
  return total;
}

export function encodeBatch(frames: readonly Uint8Array[]): Buffer {
  const out = Buffer.allocUnsafe(batchBytes(frames));
  out[0] = BATCH_FORMAT;
  let at = HEADER_BYTES;
  for (const f of frames) {
    out.writeUInt32BE(f.byteLength, at);
    at += LENGTH_BYTES;
    out.set(f, at);
    at += f.byteLength;
  }
  return out;
}

/** The frames of a container, or the reason it is not one. Never throws. */
export function decodeBatch(message: Buffer, maxFrameBytes: number): Buffer[] | string {
  if (message.byteLength < HEADER_BYTES + LENGTH_BYTES) return 'container too short';
  if (message[0] !== BATCH_FORMAT) return `unknown container format ${message[0]}`;
  const frames: Buffer[] = [];
  let at = HEADER_BYTES;
  while (at < message.byteLength) {
    if (message.byteLength - at < LENGTH_BYTES) return 'truncated length prefix';
    const length = message.readUInt32BE(at);
    at += LENGTH_BYTES;
    if (length > maxFrameBytes) return `frame of ${length} bytes is over the ${maxFrameBytes}-byte limit`;
    if (length > message.byteLength - at) return 'frame runs past the end of the container';
    frames.push(message.subarray(at, at + length));
    at += length;
  }
  return frames;
}
