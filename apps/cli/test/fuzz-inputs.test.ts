import { createHash } from 'node:crypto';
import * as protocol from '@chorus/client-protocol';
import { SeededRandom } from '@chorus/core';
import { FrameRejected, wireCodec } from '@chorus/wire';
import { describe, expect, it } from 'vitest';
import { clientMessage, clientRequest, handshakeMessage, httpRequest, peerFrame, peerMessage, rawHttp } from '../src/fuzz-inputs.js';

/** Every kind of input the fuzzer makes, in one seeded stream, hashed. */
function inputsOf(seed: number, count: number): { digest: string; frames: Uint8Array[] } {
  const r = new SeededRandom(seed, 'fuzz');
  const codec = wireCodec();
  const packr = protocol.createPackr();
  const hash = createHash('sha256');
  const frames: Uint8Array[] = [];
  let id = 1;
  for (let i = 0; i < count; i++) {
    const frame = peerFrame(r, codec, packr);
    frames.push(frame);
    hash.update(frame);
    hash.update(peerMessage(r, [frame]).data);
    hash.update(handshakeMessage(r, packr, { cluster: 'chorus', node: '127.0.0.1:10', to: '127.0.0.1:7100' }));
    hash.update(clientMessage(r, packr, () => id++).data);
    const http = httpRequest(r);
    hash.update(`${http.method} ${http.path} ${JSON.stringify(http.headers)}`);
    if (http.body) hash.update(http.body);
    hash.update(rawHttp(r));
  }
  return { digest: hash.digest('hex'), frames };
}

describe('fuzz inputs', () => {
  it('are the same for the same seed, and differ for another', () => {
    expect(inputsOf(7, 100).digest).toBe(inputsOf(7, 100).digest);
    expect(inputsOf(8, 100).digest).not.toBe(inputsOf(7, 100).digest);
  });

  it('reach past the first check: a good share of the peer frames decode, and every other one is a FrameRejected', () => {
    const codec = wireCodec();
    let accepted = 0;
    const { frames } = inputsOf(3, 500);
    for (const frame of frames) {
      try {
        codec.decode(frame);
        accepted++;
      } catch (error) {
        expect(error).toBeInstanceOf(FrameRejected);
      }
    }
    expect(accepted).toBeGreaterThan(frames.length / 10);
  });

  it('make client requests of which a good share are valid', () => {
    const r = new SeededRandom(5, 'fuzz');
    const valid = Array.from({ length: 2_000 }, (_, i) => protocol.validateRequest(clientRequest(r, i + 1)).ok).filter(Boolean).length;
    expect(valid).toBeGreaterThan(200);
  });
});
