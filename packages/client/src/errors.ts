import { ChorusError } from '@chorus/core';
import type { WireError } from '@chorus/client-protocol';

const num = (x: unknown): number => (typeof x === 'number' ? x : Number.NaN);
const str = (x: unknown): string => (typeof x === 'string' ? x : '');

function fieldsOf(wire: WireError): Record<string, unknown> {
  const { name: _name, message: _message, ...fields } = wire;
  return fields;
}

/**
 * Too few replicas were alive for the consistency level. The coordinator
 * decided it before contacting any replica: nothing was written.
 */
export class Unavailable extends ChorusError {
  readonly consistency: string;
  readonly required: number;
  readonly alive: number;
  constructor(message: string, fields: Record<string, unknown>) {
    super('Unavailable', 'UNAVAILABLE', message, fields, 503);
    this.consistency = str(fields.consistency);
    this.required = num(fields.required);
    this.alive = num(fields.alive);
  }
}

/**
 * Too few replicas acknowledged in time. The write may have been applied on
 * some replicas, with `timestampMicros` (when the server says it): a
 * session's next write is stamped above it.
 */
export class WriteTimeout extends ChorusError {
  readonly consistency: string;
  readonly required: number;
  readonly received: number;
  readonly timestampMicros: number | undefined;
  constructor(message: string, fields: Record<string, unknown>) {
    super('WriteTimeout', 'WRITE_TIMEOUT', message, fields, 504);
    this.consistency = str(fields.consistency);
    this.required = num(fields.required);
    this.received = num(fields.received);
    this.timestampMicros = typeof fields.timestampMicros === 'number' ? fields.timestampMicros : undefined;
  }
}

/**
 * A read in a session found no version of a row as new as the session's own
 * last write of it (`floorMicros`), even after asking every live replica:
 * the replicas holding that write are down or slow. The read would have
 * gone back in time, so it failed; retry later. `foundMicros` is the newest
 * timestamp found (0 for none).
 */
export class SessionFloorNotMet extends ChorusError {
  readonly consistency: string;
  readonly floorMicros: number;
  readonly foundMicros: number;
  constructor(message: string, fields: Record<string, unknown>) {
    super('SessionFloorNotMet', 'SESSION_FLOOR_NOT_MET', message, fields, 503);
    this.consistency = str(fields.consistency);
    this.floorMicros = num(fields.floorMicros);
    this.foundMicros = num(fields.foundMicros);
  }
}

/** Too few replicas answered a read in time. */
export class ReadTimeout extends ChorusError {
  readonly consistency: string;
  readonly required: number;
  readonly received: number;
  readonly dataPresent: boolean;
  constructor(message: string, fields: Record<string, unknown>) {
    super('ReadTimeout', 'READ_TIMEOUT', message, fields, 504);
    this.consistency = str(fields.consistency);
    this.required = num(fields.required);
    this.received = num(fields.received);
    this.dataPresent = fields.dataPresent === true;
  }
}

/** The request is wrong (bad consistency level, key too large…); retrying it unchanged will not help. */
export class InvalidRequest extends ChorusError {
  readonly field: string | undefined;
  constructor(message: string, fields: Record<string, unknown> = {}) {
    super('InvalidRequest', 'INVALID_REQUEST', message, fields, 400);
    this.field = typeof fields.field === 'string' ? fields.field : undefined;
  }
}

/**
 * A bounded queue or byte budget on the server (or in this client) is full;
 * nothing was done. Back off (the server says how long, `retryAfterMs`) and
 * retry. A byte budget also gives its size, what it held and what the
 * request needed.
 */
export class Overloaded extends ChorusError {
  readonly capacity: number;
  /** Set when a byte budget refused the request: its size in bytes. */
  readonly budgetBytes: number | undefined;
  readonly heldBytes: number | undefined;
  readonly requestBytes: number | undefined;
  /** How long the server asks to wait before retrying it (NaN when it did not say). */
  readonly retryAfterMs: number;
  constructor(message: string, fields: Record<string, unknown> = {}) {
    super('Overloaded', 'OVERLOADED', message, fields, 503);
    this.capacity = num(fields.capacity);
    this.budgetBytes = typeof fields.budgetBytes === 'number' ? fields.budgetBytes : undefined;
    this.heldBytes = typeof fields.heldBytes === 'number' ? fields.heldBytes : undefined;
    this.requestBytes = typeof fields.requestBytes === 'number' ? fields.requestBytes : undefined;
    this.retryAfterMs = num(fields.retryAfterMs);
  }
}

/**
 * The connection to `host` failed or broke. `sent` tells whether the request
 * had been written to the socket: a write that was sent may have been applied.
 */
export class ConnectionError extends ChorusError {
  readonly host: string;
  readonly sent: boolean;
  constructor(host: string, reason: string, sent = false) {
    super(
      'ConnectionError',
      'CONNECTION_ERROR',
      `connection to ${host} failed: ${reason}${sent ? '; the request had been sent, so a write may have been applied' : ''}`,
      { host, reason, sent },
      503,
    );
    this.host = host;
    this.sent = sent;
  }
}

/** No host could take the request: every candidate is down or failed. `errors` says why, per host. */
export class NoHostAvailable extends ChorusError {
  readonly errors: Readonly<Record<string, string>>;
  constructor(errors: Record<string, string>) {
    const hosts = Object.entries(errors);
    super(
      'NoHostAvailable',
      'NO_HOST_AVAILABLE',
      hosts.length === 0 ? 'no host is known or up' : `no host could take the request: ${hosts.map(([h, e]) => `${h}: ${e}`).join('; ')}`,
      { errors },
      503,
    );
    this.errors = errors;
  }
}

/** No answer within the client's request timeout. A write may or may not have been applied. */
export class RequestTimeout extends ChorusError {
  readonly timeoutMs: number;
  readonly host: string | undefined;
  constructor(timeoutMs: number, host: string | undefined) {
    super('RequestTimeout', 'REQUEST_TIMEOUT', `no answer within ${timeoutMs} ms${host ? ` from ${host}` : ''}; a write may or may not have been applied`, { timeoutMs, ...(host ? { host } : {}) }, 504);
    this.timeoutMs = timeoutMs;
    this.host = host;
  }
}

/** The client was closed while the request was pending, or used after `close()`. */
export class ClientClosed extends ChorusError {
  constructor() {
    super('ClientClosed', 'CLIENT_CLOSED', 'the client is closed', {}, 503);
  }
}

/**
 * The typed error for a server's error answer. Names this client has no
 * class for (ClockSkewed, KeyTooLarge, ValueTooLarge, NodeStarting, …) come
 * back as a plain ChorusError carrying the server's name and fields.
 */
export function errorFromWire(wire: WireError): ChorusError {
  const fields = fieldsOf(wire);
  const message = typeof wire.message === 'string' ? wire.message : String(wire.name);
  switch (wire.name) {
    case 'Unavailable':
      return new Unavailable(message, fields);
    case 'WriteTimeout':
      return new WriteTimeout(message, fields);
    case 'ReadTimeout':
      return new ReadTimeout(message, fields);
    case 'InvalidRequest':
      return new InvalidRequest(message, fields);
    case 'Overloaded':
      return new Overloaded(message, fields);
    case 'SessionFloorNotMet':
      return new SessionFloorNotMet(message, fields);
    default: {
      const name = typeof wire.name === 'string' && wire.name.length > 0 ? wire.name.slice(0, 64) : 'ServerError';
      return new ChorusError(name, name.replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase(), message, fields, 500);
    }
  }
}

/**
 * Server errors after which the request is sent to another host: the node
 * refused before doing anything, so nothing was applied.
 */
export const RETRIED_SERVER_ERRORS: ReadonlySet<string> = new Set(['Overloaded', 'NodeStarting', 'NodeStopping', 'ClockSkewed', 'SchemaDisagreement']);

/**
 * Server errors after which a read-only request (get, slice, ring…) is sent
 * to another host: the node went away mid-request. A write that met them may
 * have reached replicas, so it fails with the error instead.
 */
export const READ_RETRIED_SERVER_ERRORS: ReadonlySet<string> = new Set(['ActorStopped']);
