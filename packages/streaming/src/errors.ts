import { ChorusError } from '@chorus/core';

/** A range could be copied from none of its sources this round; the movement keeps what it did and can run again. */
export class StreamFailed extends ChorusError {
  constructor(keyspace: string, start: string, end: string, reason: string, rangesLeft: number) {
    super('StreamFailed', 'STREAM_FAILED', `streaming ${keyspace} (${start}, ${end}] failed: ${reason} (${rangesLeft} range(s) left)`, { keyspace, start, end, reason, rangesLeft }, 503);
  }
}

/** No source of a range is up. */
export class NoLiveSource extends ChorusError {
  constructor(sources: readonly string[]) {
    super('NoLiveSource', 'NO_LIVE_SOURCE', sources.length === 0 ? 'the range has no replica to copy it from' : `no replica to copy the range from is up (${sources.join(', ')})`, { sources: [...sources] }, 503);
  }
}

/** This node already runs a range movement; a second one at once would break the first one's consistency. */
export class MovementInProgress extends ChorusError {
  constructor(id: string, kind: string) {
    super('MovementInProgress', 'MOVEMENT_IN_PROGRESS', `this node is already streaming for ${kind} (${id}); wait until it ends`, { id, kind }, 409);
  }
}
