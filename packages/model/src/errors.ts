import { ChorusError, InvalidRequest } from '@chorus/core';

/**
 * Every malformed request maps to HTTP 400 `InvalidRequest`; `fields.reason`
 * is a stable sub-code so callers and tests can tell the cases apart without
 * parsing messages.
 */
export class InvalidKeyspaceName extends InvalidRequest {
  constructor(keyspace: string) {
    super(`invalid keyspace name ${JSON.stringify(keyspace).slice(0, 80)}: expected /^[A-Za-z][A-Za-z0-9_]{0,47}$/`, {
      reason: 'INVALID_KEYSPACE',
    });
  }
}

export class KeyTooLarge extends InvalidRequest {
  constructor(which: 'partition' | 'clustering', size: number, limit: number) {
    super(`${which} key is ${size} bytes; the limit is ${limit}`, { reason: 'KEY_TOO_LARGE', which, size, limit });
  }
}

export class EmptyPartitionKey extends InvalidRequest {
  constructor() {
    super('partition key must not be empty', { reason: 'EMPTY_PARTITION_KEY' });
  }
}

export class InvalidTimestamp extends InvalidRequest {
  constructor(what: string, value: unknown) {
    super(`${what} must be a non-negative safe integer of microseconds, got ${String(value)}`, {
      reason: 'INVALID_TIMESTAMP',
      what,
    });
  }
}

export class InvalidTtl extends InvalidRequest {
  constructor(value: unknown, max: number) {
    super(`ttl must be an integer number of seconds in [1, ${max}], got ${String(value)}`, { reason: 'INVALID_TTL', max });
  }
}

export class InvalidMutation extends InvalidRequest {
  constructor(message: string) {
    super(message, { reason: 'INVALID_MUTATION' });
  }
}

/** Maps to HTTP 413, as DESIGN.md section 4 asks for values over the size limit. */
export class ValueTooLarge extends ChorusError {
  constructor(size: number, limit: number) {
    super('ValueTooLarge', 'VALUE_TOO_LARGE', `value is ${size} bytes; the limit is ${limit}`, { size, limit }, 413);
  }
}
