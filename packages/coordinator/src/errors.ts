import { ChorusError } from '@chorus/core';

/** Moved to core, where the repair service and local reads meet it too; still exported here. */
export { SchemaDisagreement } from '@chorus/core';

/**
 * Too few replicas are alive to meet the consistency level. Decided from the
 * request's replica plan before any replica is contacted, so nothing was
 * written: retrying later (or at a weaker level) is safe.
 */
export class Unavailable extends ChorusError {
  readonly consistency: string;
  readonly required: number;
  readonly alive: number;
  constructor(consistency: string, required: number, alive: number, dc?: string) {
    const where = dc === undefined ? '' : ` in datacenter ${dc}`;
    super(
      'Unavailable',
      'UNAVAILABLE',
      `cannot achieve consistency level ${consistency}${where}: ${required} replicas required, ${alive} alive`,
      dc === undefined ? { consistency, required, alive } : { consistency, required, alive, dc },
      503,
    );
    this.consistency = consistency;
    this.required = required;
    this.alive = alive;
  }
}

/** What the timed-out write was, as Cassandra's WriteType names it. */
export type WriteType = 'SIMPLE';

/**
 * Fewer replicas than the level needs acknowledged in time. The mutation was
 * sent, so it may have been applied on some replicas (and may later reach
 * the others through repair): the write is neither confirmed nor undone.
 */
export class WriteTimeout extends ChorusError {
  readonly consistency: string;
  readonly required: number;
  readonly received: number;
  readonly writeType: WriteType;
  /**
   * The timestamp the write carried, when known: if it was applied somewhere
   * it may win later with this timestamp, so a session moves its high-water
   * mark past it (its next write must not be ordered before this one).
   */
  readonly timestampMicros: number | undefined;
  /** `detail` says why, when it was not the deadline (a replica refused, the coordinator restarted). */
  constructor(consistency: string, required: number, received: number, writeType: WriteType = 'SIMPLE', detail?: string, timestampMicros?: number) {
    super(
      'WriteTimeout',
      'WRITE_TIMEOUT',
      `write timed out at consistency level ${consistency}: ${received} of ${required} required replicas acknowledged` +
        (detail === undefined ? '' : ` (${detail})`) +
        '; the write may have been applied on some replicas',
      timestampMicros === undefined ? { consistency, required, received, writeType } : { consistency, required, received, writeType, timestampMicros },
      504,
    );
    this.consistency = consistency;
    this.required = required;
    this.received = received;
    this.writeType = writeType;
    this.timestampMicros = timestampMicros;
  }
}

/** Fewer replicas than the level needs answered in time; `dataPresent` tells whether the data replica was among them. */
export class ReadTimeout extends ChorusError {
  readonly consistency: string;
  readonly required: number;
  readonly received: number;
  readonly dataPresent: boolean;
  constructor(consistency: string, required: number, received: number, dataPresent: boolean, detail?: string) {
    super(
      'ReadTimeout',
      'READ_TIMEOUT',
      `read timed out at consistency level ${consistency}: ${received} of ${required} required replicas answered` +
        (dataPresent ? '' : ', and none of them with data') +
        (detail === undefined ? '' : ` (${detail})`),
      { consistency, required, received, dataPresent },
      504,
    );
    this.consistency = consistency;
    this.required = required;
    this.received = received;
    this.dataPresent = dataPresent;
  }
}

/**
 * A read in a session found no version of the row as new as the session's
 * own last write of it (`floorMicros`), even after asking every live replica
 * and not only those the level needs: the replicas holding that write are
 * down or did not answer in time. Returning what was found would show the
 * session an older value than it wrote, so the read fails instead. A problem
 * of the cluster, never of the request: retry once the replicas are back (or
 * hints and repair have caught the others up). `foundMicros` is the newest
 * timestamp found, 0 when no replica had a version at all.
 */
export class SessionFloorNotMet extends ChorusError {
  readonly floorMicros: number;
  readonly foundMicros: number;
  readonly consistency: string;
  readonly answered: number;
  readonly alive: number;
  constructor(consistency: string, floorMicros: number, foundMicros: number, answered: number, alive: number, detail?: string) {
    super(
      'SessionFloorNotMet',
      'SESSION_FLOOR_NOT_MET',
      `read at ${consistency} in a session found nothing as new as the session's own write of this row (${floorMicros} µs): ` +
        `the newest version from ${answered} of ${alive} live replicas is ` +
        (foundMicros === 0 ? 'none' : `at ${foundMicros} µs`) +
        (detail === undefined ? '' : ` (${detail})`) +
        '; the replicas holding the write are down or slow, retry later',
      { consistency, floorMicros, foundMicros, answered, alive },
      503,
    );
    this.floorMicros = floorMicros;
    this.foundMicros = foundMicros;
    this.consistency = consistency;
    this.answered = answered;
    this.alive = alive;
  }
}

/**
 * This node's clock runs ahead of most of its peers by more than
 * max_clock_skew, so it refuses to stamp writes: its timestamps would beat
 * every honest later write. Fix the clock (NTP); writes through other nodes
 * keep working.
 */
export class ClockSkewed extends ChorusError {
  constructor(aheadMs: number, maxClockSkewMs: number) {
    super(
      'ClockSkewed',
      'CLOCK_SKEWED',
      `this node's clock is about ${Math.round(aheadMs)} ms ahead of its peers (max_clock_skew ${maxClockSkewMs} ms); it refuses to coordinate writes until the clock is fixed`,
      { aheadMs: Math.round(aheadMs), maxClockSkewMs },
      503,
    );
  }
}

/**
 * The coordinator's handling of one request failed on a bug (its state
 * machine threw). The request is failed alone, not the coordinator with every
 * request in flight. Replicas may already have been sent a write, so it may
 * have been applied on some of them.
 */
export class RequestFailed extends ChorusError {
  constructor(op: string, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(
      'RequestFailed',
      'REQUEST_FAILED',
      `the coordinator failed while handling this ${op}: ${reason}` + (op === 'write' ? '; the write may have been applied on some replicas' : ''),
      { op },
      500,
    );
    this.cause = cause;
  }
}
