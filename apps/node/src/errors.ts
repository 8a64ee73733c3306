import type { WireError } from '@chorus/client-protocol';
import { ChorusError, isChorusError } from '@chorus/core';

/** A bad setting, with a one-line message that names it. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** A reason the node cannot start, printed as one line. */
export class StartupError extends Error {
  override name = 'StartupError';
}

/** What a request that met a starting node is told to wait before asking it again (HTTP `Retry-After`). */
export const STARTING_RETRY_AFTER_SECONDS = 1;
/** What a request refused by a full byte budget or queue is told to wait before asking again. */
export const OVERLOADED_RETRY_AFTER_SECONDS = 1;
/** What a request for a keyspace this node's schema does not hold yet, while a live peer's differs, is told to wait (a pull takes a gossip round or two). */
export const SCHEMA_RETRY_AFTER_SECONDS = 1;

/**
 * Every refusal by a bounded queue or byte budget, wherever it happened (a
 * full mailbox here or on a replica, the coordinator's budget, the client
 * requests' own), is `Overloaded` to a user: one name to back off on. The
 * numbers stay.
 */
function asOverloaded(error: ChorusError): Record<string, unknown> {
  const body = error.toJSON();
  return error.code === 'OVERLOADED' ? { ...body, error: 'Overloaded' } : body;
}

/**
 * The node has not finished starting, so it serves nothing yet. Nothing was
 * done: any other node can take the request, and the client sends it to one.
 */
export class NodeStarting extends ChorusError {
  constructor() {
    super('NodeStarting', 'NODE_STARTING', 'the node is starting; try another node', {}, 503);
  }
}

/** The node is stopping: requests in flight get their answers, new ones this. Nothing was done. */
export class NodeStopping extends ChorusError {
  constructor() {
    super('NodeStopping', 'NODE_STOPPING', 'the node is stopping; try another node', {}, 503);
  }
}

/** This node was built without a repair service, so it starts no repair job; nothing was done. */
export class RepairNotAvailable extends ChorusError {
  constructor() {
    super('RepairNotAvailable', 'REPAIR_NOT_AVAILABLE', 'this node runs no repair service', {}, 501);
  }
}

/**
 * Client authentication is on and the request carried no valid token. The
 * answer says nothing of which tokens exist, nor why the one sent was wrong.
 */
export class Unauthorized extends ChorusError {
  constructor() {
    super('Unauthorized', 'UNAUTHORIZED', 'a valid bearer token is required', {}, 401);
  }
}

/** `WWW-Authenticate` of a 401, as RFC 6750 asks. */
export const AUTHENTICATE_HEADER = 'Bearer realm="chorus"';

/** The HTTP answer to an error a route threw. */
export interface HttpError {
  status: number;
  body: Record<string, unknown>;
  headers: Record<string, string>;
  /** Neither a ChorusError nor the client's mistake: a bug or an I/O failure, worth a log line with the stack. */
  unexpected: boolean;
}

/**
 * Errors to HTTP answers: a ChorusError keeps its status, name and numbers; a
 * body over `bodyLimit` is a 413; fastify's own 4xx (a malformed request)
 * become InvalidRequest; anything else is a 500.
 */
export function httpErrorOf(error: unknown, bodyLimit: number): HttpError {
  if (isChorusError(error)) {
    const headers: Record<string, string> =
      error instanceof NodeStarting
        ? { 'retry-after': String(STARTING_RETRY_AFTER_SECONDS) }
        : error instanceof Unauthorized
          ? { 'www-authenticate': AUTHENTICATE_HEADER }
          : error.code === 'OVERLOADED'
            ? { 'retry-after': String(OVERLOADED_RETRY_AFTER_SECONDS) }
            : error.code === 'SCHEMA_DISAGREEMENT'
              ? { 'retry-after': String(SCHEMA_RETRY_AFTER_SECONDS) }
              : {};
    return { status: error.code === 'OVERLOADED' ? 503 : error.httpStatus, body: asOverloaded(error), headers, unexpected: false };
  }
  const fastifyError = error as { code?: string; statusCode?: number; message: string };
  if (fastifyError.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    return { status: 413, body: { error: 'ValueTooLarge', message: `request body over ${bodyLimit} bytes`, limit: bodyLimit }, headers: {}, unexpected: false };
  }
  if (fastifyError.statusCode && fastifyError.statusCode < 500) {
    return { status: fastifyError.statusCode, body: { error: 'InvalidRequest', message: fastifyError.message }, headers: {}, unexpected: false };
  }
  return { status: 500, body: { error: 'InternalError', message: fastifyError.message }, headers: {}, unexpected: true };
}

/** The client protocol's `error` of an answer: the same name and numbers as over HTTP. */
export function wireErrorOf(error: ChorusError): WireError {
  if (error.code === 'OVERLOADED') return { ...error.fields, name: 'Overloaded', message: error.message, retryAfterMs: OVERLOADED_RETRY_AFTER_SECONDS * 1000 };
  return { name: error.name, message: error.message, ...error.fields };
}
