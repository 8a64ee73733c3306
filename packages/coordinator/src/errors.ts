import { ChorusError } from '@chorus/core';

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
  constructor(consistency: string, required: number, received: number, writeType: WriteType = 'SIMPLE') {
    super(
      'WriteTimeout',
      'WRITE_TIMEOUT',
      `write timed out at consistency level ${consistency}: ${received} of ${required} required replicas acknowledged; ` +
        'the write may have been applied on some replicas',
      { consistency, required, received, writeType },
      504,
    );
    this.consistency = consistency;
    this.required = required;
    this.received = received;
    this.writeType = writeType;
  }
}

/** Fewer replicas than the level needs answered in time; `dataPresent` tells whether the data replica was among them. */
export class ReadTimeout extends ChorusError {
  readonly consistency: string;
  readonly required: number;
  readonly received: number;
  readonly dataPresent: boolean;
  constructor(consistency: string, required: number, received: number, dataPresent: boolean) {
    super(
      'ReadTimeout',
      'READ_TIMEOUT',
      `read timed out at consistency level ${consistency}: ${received} of ${required} required replicas answered` +
        (dataPresent ? '' : ', and none of them with data'),
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
