/**
 * Every error that crosses a package boundary is a ChorusError: a stable
 * `name` that scripts can match, a stable `code`, the HTTP status it maps
 * to, and the numbers a user needs to act on it.
 */
export class ChorusError extends Error {
  readonly code: string;
  readonly httpStatus: number;
  readonly fields: Readonly<Record<string, unknown>>;

  constructor(name: string, code: string, message: string, fields: Record<string, unknown> = {}, httpStatus = 500) {
    super(message);
    this.name = name;
    this.code = code;
    this.httpStatus = httpStatus;
    this.fields = fields;
  }

  /** The JSON body of an HTTP error answer: `{"error": name, message, ...fields}`. */
  toJSON(): Record<string, unknown> {
    return { error: this.name, message: this.message, ...this.fields };
  }
}

/** The request itself is wrong; retrying it unchanged will not help. */
export class InvalidRequest extends ChorusError {
  constructor(message: string, fields: Record<string, unknown> = {}) {
    super('InvalidRequest', 'INVALID_REQUEST', message, fields, 400);
  }
}

/**
 * A component refused work because a bounded queue or byte budget is full.
 * Nothing was done: back off and retry. `capacity` is the bound that was hit
 * (a count, or bytes when `budgetBytes` is set); byte budgets also say how
 * many bytes were held and how many the refused work needed.
 */
export class Overloaded extends ChorusError {
  constructor(what: string, capacity: number, bytes?: { heldBytes: number; requestBytes: number }) {
    super(
      'Overloaded',
      'OVERLOADED',
      bytes === undefined ? `${what} is full (capacity ${capacity})` : `${what} is full (${bytes.heldBytes} of ${capacity} bytes held, ${bytes.requestBytes} more asked)`,
      bytes === undefined ? { capacity } : { capacity, budgetBytes: capacity, heldBytes: bytes.heldBytes, requestBytes: bytes.requestBytes },
      503,
    );
  }
}

/**
 * This node does not know the keyspace, but its schema differs from a live
 * peer's: the keyspace may have been created there and not have reached
 * this node yet (a pull under way, or lost to a fault and retried). Nothing
 * was done; another node, or this one a moment later, can take the request.
 * A problem of the cluster, so a 503, never the 400 of a keyspace that does
 * not exist.
 */
export class SchemaDisagreement extends ChorusError {
  constructor(keyspace: string) {
    const name = keyspace.slice(0, 80);
    super('SchemaDisagreement', 'SCHEMA_DISAGREEMENT', `keyspace ${JSON.stringify(name)} is unknown to this node, whose schema is not yet the one its live peers hold; retry, or try another node`, { keyspace: name }, 503);
  }
}

export function isChorusError(e: unknown): e is ChorusError {
  return e instanceof ChorusError;
}
