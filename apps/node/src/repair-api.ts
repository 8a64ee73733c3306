import { InvalidRequest, MAX_TOKEN, MIN_TOKEN } from '@chorus/core';
import type { ChorusNode } from '@chorus/node';
import { Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';

/**
 * The repair jobs of one node, as the HTTP API, the metrics and `chorus
 * repair` use them. Declared here by shape: the node's own repair service
 * (`ChorusNode.repair`) satisfies it, and a node without one serves no repair.
 */

/** Ranges one job may repair at once. */
export const MAX_PARALLEL = 16;

/** What `POST /v1/repair` asks for. */
export interface RepairRequest {
  /** Absent: every keyspace except system. */
  keyspace?: string;
  /** Only this node's primary ranges (`--pr`): run on every node, each range is repaired once. */
  primaryRangeOnly?: boolean;
  /** Accepted for nodetool's sake; every Chorus repair is a full repair. */
  full?: boolean;
  /** A token range, start exclusive, end inclusive: Murmur3 signed 64-bit decimal strings, both or neither. */
  startToken?: string;
  endToken?: string;
  /** Ranges repaired at once, 1 to 16 (default 1). */
  parallel?: number;
}

export type RepairJobState = 'running' | 'done' | 'failed' | 'cancelled';

export interface RepairJobStatus {
  id: string;
  state: RepairJobState;
  keyspaces: string[];
  rangesTotal: number;
  rangesDone: number;
  rangesFailed: number;
  rowsCompared: number;
  rowsStreamed: number;
  bytesStreamed: number;
  elapsedMs: number;
  startedAtMicros: number;
  error?: string;
  failures?: Array<{ keyspace: string; start: string; end: string; reason: string }>;
}

export interface RepairService {
  /** Throws ChorusErrors that carry their HTTP status: an unknown keyspace is a 400, too many jobs running a 503. */
  start(request: RepairRequest): Promise<{ id: string }>;
  /** A running job, or one of the bounded history of finished ones. */
  status(id: string): RepairJobStatus | undefined;
  /** Newest first. */
  jobs(): RepairJobStatus[];
  /** The job's status after cancelling it; undefined when unknown. */
  cancel(id: string): Promise<RepairJobStatus | undefined>;
}

/** The node's repair service, when it runs one. */
export function repairServiceOf(node: ChorusNode): RepairService | undefined {
  // Read by shape, so that this compiles against a node with or without the member.
  const candidate = (node as unknown as { repair?: Partial<RepairService> }).repair;
  if (candidate === null || typeof candidate !== 'object') return undefined;
  const methods: Array<keyof RepairService> = ['start', 'status', 'jobs', 'cancel'];
  return methods.every((m) => typeof candidate[m] === 'function') ? (candidate as RepairService) : undefined;
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
