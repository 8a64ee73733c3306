import { InvalidRequest, MAX_TOKEN, MIN_TOKEN } from '@chorus/core';
import { MAX_PARALLEL, type RepairRequest, type RepairService } from '@chorus/anti-entropy';
import type { ChorusNode } from '@chorus/node';
import { Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';

export type { RepairRequest, RepairJobState, RepairJobStatus, RepairService } from '@chorus/anti-entropy';

/** The node's repair service: the HTTP API and the metrics take it through this, so tests can give them another. */
export function repairServiceOf(node: ChorusNode): RepairService | undefined {
  return node.repair;
}

const KEYSPACE_NAME = '^[A-Za-z][A-Za-z0-9_]{0,47}$';
const TOKEN = '^-?[0-9]{1,19}$';
const RequestSchema = Type.Object(
  {
    keyspace: Type.Optional(Type.String({ pattern: KEYSPACE_NAME })),
    primaryRangeOnly: Type.Optional(Type.Boolean()),
    full: Type.Optional(Type.Boolean()),
    startToken: Type.Optional(Type.String({ pattern: TOKEN })),
    endToken: Type.Optional(Type.String({ pattern: TOKEN })),
    parallel: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PARALLEL })),
  },
  { additionalProperties: false },
);
const checkRequest = TypeCompiler.Compile(RequestSchema);
const FIELDS = Object.keys(RequestSchema.properties);
/** What each field must be, in the words of the error a client gets. */
const EXPECTED: Record<string, string> = {
  keyspace: 'a keyspace name (a letter, then up to 47 letters, digits or underscores)',
  primaryRangeOnly: 'true or false',
  full: 'true or false',
  startToken: `a token: a decimal string from ${MIN_TOKEN} to ${MAX_TOKEN}`,
  endToken: `a token: a decimal string from ${MIN_TOKEN} to ${MAX_TOKEN}`,
  parallel: `an integer from 1 to ${MAX_PARALLEL}`,
};

/**
 * Validates the body of `POST /v1/repair` at the edge: an empty body asks for
 * the defaults; anything the service would misread is a 400 naming the field.
 */
export function parseRepairRequest(body: unknown): RepairRequest {
  let value: unknown = {};
  if (Buffer.isBuffer(body) && body.length > 0) {
    try {
      value = JSON.parse(body.toString('utf8'));
    } catch {
      throw new InvalidRequest('body is not valid JSON');
    }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new InvalidRequest(`body must be a JSON object with any of ${FIELDS.join(', ')}`);
  const fields = value as Record<string, unknown>;
  const unknown = Object.keys(fields).find((k) => !FIELDS.includes(k));
  if (unknown !== undefined) throw new InvalidRequest(`unknown field ${JSON.stringify(unknown).slice(0, 60)}; a repair request has ${FIELDS.join(', ')}`, { field: unknown.slice(0, 60) });
  if (!checkRequest.Check(fields)) {
    const field = checkRequest.Errors(fields).First()?.path.split('/')[1] ?? '';
    throw new InvalidRequest(`${field} must be ${EXPECTED[field] ?? 'valid'}, got ${JSON.stringify(fields[field]).slice(0, 60)}`, { field });
  }
  const request = fields as RepairRequest;
  if ((request.startToken === undefined) !== (request.endToken === undefined)) {
    throw new InvalidRequest('startToken and endToken go together: give both (a range, start exclusive, end inclusive) or neither', { field: request.startToken === undefined ? 'startToken' : 'endToken' });
  }
  if (request.startToken !== undefined && request.endToken !== undefined) {
    for (const field of ['startToken', 'endToken'] as const) {
      const t = BigInt(request[field]!);
      if (t < MIN_TOKEN || t > MAX_TOKEN) throw new InvalidRequest(`${field} must be ${EXPECTED[field]}, got ${JSON.stringify(request[field])}`, { field });
    }
    // As in nodetool: (t, t] would be empty, or the whole ring by the ring's wrap-around rule; neither is what was meant.
    if (BigInt(request.startToken) === BigInt(request.endToken)) throw new InvalidRequest(`startToken and endToken must differ, got ${request.startToken} for both`, { field: 'endToken' });
  }
  return request;
}
