import type { ServerOptions as HttpsServerOptions } from 'node:https';
import { InvalidRequest, isChorusError } from '@chorus/core';
import { LIMITS } from '@chorus/model';
import type { ChorusNode, KeyspaceView } from '@chorus/node';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest, LogController } from 'fastify';
import type { Logger } from 'pino';
import type { Authenticator } from './auth.js';
import { NodeStarting, RepairNotAvailable, Unauthorized, httpErrorOf } from './errors.js';
import { readLocal } from './local-read.js';
import { RequestBudget } from './request-budget.js';
import type { Metrics, RequestOp, RequestTimer } from './metrics.js';
import { type RepairService, parseRepairRequest, repairServiceOf } from './repair-api.js';
import { type RowId, SESSION_HEADER, type SessionToken, floorOf, formatSessionToken, observe, parseSessionToken, recordWrite, rowIdOf, sliceFloorsOf } from './session-token.js';

/**
 * Largest request body read. Looser than the value limit on purpose: a value
 * somewhat over it still reaches the coordinator, whose 413 ValueTooLarge
 * carries the value's size and the model's limit; only a far larger body is
 * cut off unread (413 with this limit).
 */
const BODY_LIMIT = 2 * LIMITS.maxValueBytes;
const HOST_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Counted for every request beside its body: headers, the request's objects, an answer with no large value. */
const REQUEST_OVERHEAD_BYTES = 1024;
/** Client requests in flight on a node (HTTP and the client protocol together), by default. */
export const DEFAULT_MAX_INFLIGHT_REQUEST_BYTES = 32 * 1024 * 1024;
/** Paths that hold no client data, answered whatever the budget: a node busy with a flood must still show it is alive. */
const UNBUDGETED = new Set(['/health', '/metrics']);

export interface ApiOptions {
  logger: Logger;
  metrics: Metrics;
  /** Undefined until the node has finished starting; requests meanwhile get 503 NodeStarting. */
  node: () => ChorusNode | undefined;
  /** Called once the node has left the ring after `POST /v1/decommission`; the server stops then. */
  onLeft?: () => void;
  /** The node's repair jobs; by default its own repair service, if it runs one. */
  repair?: (node: ChorusNode) => RepairService | undefined;
  /** Client authentication: every request but `/health` (and `/metrics` unless `metrics`) needs a token. */
  auth?: { authenticator: Authenticator; metrics: boolean };
  /** TLS options of the HTTPS server when the port is encrypted. */
  https?: HttpsServerOptions;
  /** Bytes client requests may hold at once, shared with the client protocol (max_inflight_request_bytes). */
  budget?: RequestBudget;
}

/** The HTTP API of DESIGN.md section 4 on this node's one port. */
export function buildApi(options: ApiOptions) {
  // Per-request log lines would drown the node's own; errors are logged by the error handler.
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT,
    return503OnClosing: true,
    ...(options.https ? { https: options.https } : {}),
  }) as unknown as FastifyInstance;

  const auth = options.auth;
  if (auth) {
    // Before routing and body parsing: a stranger's request costs a hash and no more.
    app.addHook('onRequest', async (request) => {
      const path = request.url.split('?')[0]!;
      if (path === '/health' || (path === '/metrics' && !auth.metrics)) return;
      if (auth.authenticator.allows(request.headers.authorization)) return;
      auth.authenticator.refused(request.ip, path);
      throw new Unauthorized();
    });
  }

  // Bodies arrive as raw bytes: values are opaque, and JSON bodies are parsed where they are expected, with our own errors.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  app.setErrorHandler((error, request, reply) => {
    const answer = httpErrorOf(error, BODY_LIMIT);
    if (answer.unexpected) request.log.error({ err: error, url: request.url }, 'request failed');
    void reply.status(answer.status).headers(answer.headers).send(answer.body);
  });
  const budget = options.budget ?? new RequestBudget(DEFAULT_MAX_INFLIGHT_REQUEST_BYTES);
  // Decided from the headers, before the body is read: a refused body is never held. A chunked body counts as the largest one taken.
  app.addHook('onRequest', (request, reply, done) => {
    if (UNBUDGETED.has(request.url.split('?')[0]!)) return done();
    const length = Number(request.headers['content-length']);
    const body = request.headers['transfer-encoding'] !== undefined ? BODY_LIMIT : Number.isSafeInteger(length) && length > 0 ? Math.min(length, BODY_LIMIT) : 0;
    const bytes = REQUEST_OVERHEAD_BYTES + body;
    const refused = budget.take(bytes);
    if (refused) {
      // The unread body is drained by the server, not kept; closing tells a flooding client to reconnect, not to pipeline more.
      if (body > 0) void reply.header('connection', 'close');
      return done(refused);
    }
    // 'close' comes once the answer is sent or the connection is gone, whichever first.
    reply.raw.once('close', () => budget.release(bytes));
    done();
  });
  app.setNotFoundHandler((request, reply) => void reply.status(404).send({ error: 'NotFound', message: `no route for ${request.method} ${request.url.split('?')[0]}` }));

  const ready = (): ChorusNode => {
    const node = options.node();
    if (!node) throw new NodeStarting();
    return node;
  };

  app.get('/health', async (_req, reply) => {
    const node = options.node();
    return reply.status(node ? 200 : 503).send({ status: node ? 'serving' : 'starting' });
  });
  app.get('/metrics', async (_req, reply) => reply.type(options.metrics.contentType).send(await options.metrics.render()));
  app.get('/v1/status', async () => ready().status());
  app.get('/v1/ring', async () => ready().ring());
  app.get('/v1/hints', async () => ready().hints());
  app.get('/v1/streams', async () => ready().streams());
  app.post('/v1/decommission', async (_req, reply) => {
    const { movement, left } = await ready().decommission();
    left.then(
      () => options.onLeft?.(),
      (error: unknown) => options.logger.error({ err: error }, 'decommission did not finish'),
    );
    return reply.status(202).send(movement);
  });
  app.post('/v1/removenode', async (request, reply) => {
    const body = parseJsonBody(request.body);
    const id = typeof body === 'object' && body !== null ? (body as { hostId?: unknown }).hostId : undefined;
    if (typeof id !== 'string' || !HOST_ID.test(id)) throw new InvalidRequest('body must be {"hostId": "<host id of a dead node, as chorus status shows it>"}');
    const { movement, removed } = await ready().removeNode(id.toLowerCase());
    removed.catch((error: unknown) => options.logger.error({ err: error, hostId: id }, 'removenode did not finish'));
    return reply.status(202).send(movement);
  });
  app.get('/v1/keyspaces', async () => ({ keyspaces: (await ready().keyspaces()).keyspaces.map(keyspaceJson) }));
  app.put<{ Params: { name: string } }>('/v1/keyspaces/:name', async (request) => {
    const body = parseJsonBody(request.body);
    if (typeof body !== 'object' || body === null || !('replication' in body)) throw new InvalidRequest('body must be {"replication": {...}, "read_repair"?: "blocking" | "none", "tombstone_gc"?: "repair" | "grace"}');
    const b = body as { replication: unknown; read_repair?: unknown; readRepair?: unknown; tombstone_gc?: unknown; tombstoneGc?: unknown };
    // Left out, an option keeps the keyspace's current setting (blocking, repair for a new keyspace).
    return keyspaceJson(await ready().putKeyspace(request.params.name, b.replication, 'read_repair' in b ? b.read_repair : b.readRepair, 'tombstone_gc' in b ? b.tombstone_gc : b.tombstoneGc));
  });
  registerDataRoutes(app, ready, options.metrics.timeRequest);
  registerRepairRoutes(app, ready, options.repair ?? repairServiceOf);
  return app;
}

/** A keyspace as the HTTP API shows it: options named as in the request body (and Cassandra's table options). */
function keyspaceJson(k: KeyspaceView): { name: string; replication: KeyspaceView['replication']; read_repair: KeyspaceView['readRepair']; tombstone_gc: KeyspaceView['tombstoneGc'] } {
  return { name: k.name, replication: k.replication, read_repair: k.readRepair, tombstone_gc: k.tombstoneGc };
}

type Query = Record<string, string | undefined>;
type KvParams = { ks: string; key: string; clustering?: string };

function integerParam(query: Query, name: string, min: number): number | undefined {
  const raw = query[name];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!/^-?\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min) throw new InvalidRequest(`${name} must be an integer ≥ ${min}, got ${JSON.stringify(raw).slice(0, 40)}`, { field: name });
  return n;
}

function consistencyOf(query: Query): { consistency?: string } {
  return query.consistency ? { consistency: query.consistency } : {};
}

/**
 * Runs a data request in the session its `x-chorus-session` header carries,
 * if any: the answer, an error included, carries the session's new value.
 */
async function inSession<T>(request: FastifyRequest, reply: FastifyReply, work: (session: SessionToken | undefined) => Promise<T>): Promise<T> {
  const session = parseSessionToken(request.headers[SESSION_HEADER]);
  try {
    return await work(session);
  } finally {
    if (session !== undefined) void reply.header(SESSION_HEADER, formatSessionToken(session));
  }
}

/** A write in a session: stamped above its high-water mark (unless the client gave the timestamp), and its row's floor recorded once acknowledged. */
async function writeInSession(session: SessionToken | undefined, row: () => RowId, clientTimestamp: boolean, write: (after: { afterMicros?: number }) => Promise<{ timestampMicros: number }>): Promise<{ timestamp: number }> {
  try {
    const result = await write(session !== undefined && !clientTimestamp ? { afterMicros: session.highWater } : {});
    if (session !== undefined) recordWrite(session, row(), result.timestampMicros);
    return { timestamp: result.timestampMicros };
  } catch (error) {
    // A timed-out write may still win later with its timestamp: the session's next write must go above it.
    const ts = isChorusError(error) && error.name === 'WriteTimeout' ? error.fields.timestampMicros : undefined;
    if (session !== undefined && typeof ts === 'number') observe(session, ts);
    throw error;
  }
}

/** Values of the one-row and slice APIs. Keys come from the path, UTF-8; values are the raw body bytes. */
function registerDataRoutes(app: FastifyInstance, ready: () => ChorusNode, timeRequest: RequestTimer): void {
  // Requests before the node serves are not timed: they say nothing about the cluster.
  const timed = async <T>(op: RequestOp, query: Query, work: (node: ChorusNode) => Promise<T>): Promise<T> => {
    const node = ready();
    const done = timeRequest(op, query.consistency);
    try {
      const result = await work(node);
      done();
      return result;
    } catch (error) {
      done(error);
      throw error;
    }
  };
  const kvPaths = ['/v1/kv/:ks/:key', '/v1/kv/:ks/:key/:clustering'];
  for (const path of kvPaths) {
    app.put<{ Params: KvParams; Querystring: Query }>(path, (request, reply) => timed('write', request.query, (node) => inSession(request, reply, (session) => {
      const { ks, key, clustering } = request.params;
      const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
      const ttlSeconds = integerParam(request.query, 'ttl', 1);
      const timestampMicros = integerParam(request.query, 'timestamp', 0);
      return writeInSession(session, () => rowIdOf(ks, key, clustering), timestampMicros !== undefined, (after) =>
        node.coordinator.put(ks, key, clustering, new Uint8Array(body.buffer, body.byteOffset, body.byteLength), {
          ...consistencyOf(request.query),
          ...(ttlSeconds !== undefined ? { ttlSeconds } : {}),
          ...(timestampMicros !== undefined ? { timestampMicros } : {}),
          ...after,
        }),
      );
    })));
    app.get<{ Params: KvParams; Querystring: Query }>(path, async (request, reply) => {
      const { ks, key, clustering } = request.params;
      const found = await timed('read', request.query, (node) => inSession(request, reply, async (session) => {
        const floor = session === undefined ? undefined : floorOf(session, rowIdOf(ks, key, clustering));
        const value = await node.coordinator.get(ks, key, clustering, { ...consistencyOf(request.query), ...(floor !== undefined ? { floorMicros: floor } : {}) });
        if (session !== undefined && value !== undefined) observe(session, value.timestampMicros);
        return value;
      }));
      if (!found) return reply.status(404).send({ error: 'NotFound', message: `no value for ${key}${clustering === undefined ? '' : `/${clustering}`} in ${ks}` });
      return reply.header('x-chorus-timestamp', String(found.timestampMicros)).type('application/octet-stream').send(Buffer.from(found.value));
    });
    app.delete<{ Params: KvParams; Querystring: Query }>(path, (request, reply) => timed('write', request.query, (node) => inSession(request, reply, (session) => {
      const { ks, key, clustering } = request.params;
      const timestampMicros = integerParam(request.query, 'timestamp', 0);
      return writeInSession(session, () => rowIdOf(ks, key, clustering), timestampMicros !== undefined, (after) =>
        node.coordinator.del(ks, key, clustering, { ...consistencyOf(request.query), ...(timestampMicros !== undefined ? { timestampMicros } : {}), ...after }),
      );
    })));
  }
  for (const path of ['/v1/local/:ks/:key', '/v1/local/:ks/:key/:clustering']) {
    app.get<{ Params: KvParams }>(path, async (request, reply) => {
      const { ks, key, clustering } = request.params;
      const cell = await readLocal(ready(), ks, key, clustering);
      if (!cell) return reply.status(404).send({ error: 'NotFound', message: `this node holds nothing for ${key} in ${ks}` });
      const tombstone = 'tombstone' in cell && cell.tombstone === true;
      return {
        value: tombstone ? null : Buffer.from((cell as { value: Uint8Array }).value).toString('base64'),
        timestamp: cell.timestampMicros,
        tombstone,
        ...('expiresAtMicros' in cell && cell.expiresAtMicros !== undefined ? { expiresAt: cell.expiresAtMicros } : {}),
      };
    });
  }
  app.get<{ Params: { ks: string; partition: string }; Querystring: Query }>('/v1/rows/:ks/:partition', (request, reply) => timed('slice', request.query, (node) => inSession(request, reply, async (session) => {
    const { ks, partition } = request.params;
    const q = request.query;
    const limit = integerParam(q, 'limit', 1);
    let page: Uint8Array | undefined;
    if (q.page) {
      if (!/^[A-Za-z0-9_-]*$/.test(q.page)) throw new InvalidRequest('page must be the nextPage token of a previous answer', { field: 'page' });
      page = new Uint8Array(Buffer.from(q.page, 'base64url'));
    }
    const result = await node.coordinator.slice(ks, partition, {
      ...consistencyOf(q),
      ...(q.from !== undefined ? { from: q.from } : {}),
      ...(q.to !== undefined ? { to: q.to } : {}),
      ...(limit !== undefined ? { limit } : {}),
      ...(page ? { page } : {}),
      ...(q.reverse === 'true' ? { reverse: true } : {}),
      ...(session !== undefined ? { floors: sliceFloorsOf(session, ks, partition) } : {}),
    });
    if (session !== undefined) for (const r of result.rows) observe(session, r.timestampMicros);
    return {
      rows: result.rows.map((r) => ({ clustering: Buffer.from(r.clustering).toString('utf8'), value: Buffer.from(r.value).toString('base64'), timestamp: r.timestampMicros, ...(r.expiresAtMicros !== undefined ? { expiresAt: r.expiresAtMicros } : {}) })),
      ...(result.nextPage ? { nextPage: Buffer.from(result.nextPage).toString('base64url') } : {}),
    };
  })));
}

/** Repair jobs: start one, list them, show or cancel one. Status bodies are the service's own. */
function registerRepairRoutes(app: FastifyInstance, ready: () => ChorusNode, serviceOf: (node: ChorusNode) => RepairService | undefined): void {
  const repair = (): RepairService => {
    const service = serviceOf(ready());
    if (!service) throw new RepairNotAvailable();
    return service;
  };
  const notFound = (reply: FastifyReply, job: string) => reply.status(404).send({ error: 'NotFound', message: `no repair job ${job.slice(0, 80)} on this node` });
  app.post('/v1/repair', async (request) => {
    const body = parseRepairRequest(request.body);
    const { id } = await repair().start(body);
    return { id };
  });
  app.get('/v1/repair', async () => ({ jobs: repair().jobs() }));
  app.get<{ Params: { job: string } }>('/v1/repair/:job', async (request, reply) => repair().status(request.params.job) ?? notFound(reply, request.params.job));
  app.delete<{ Params: { job: string } }>('/v1/repair/:job', async (request, reply) => (await repair().cancel(request.params.job)) ?? notFound(reply, request.params.job));
}

function parseJsonBody(body: unknown): unknown {
  if (!Buffer.isBuffer(body) || body.length === 0) throw new InvalidRequest('a JSON body is required');
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new InvalidRequest('body is not valid JSON');
  }
}
