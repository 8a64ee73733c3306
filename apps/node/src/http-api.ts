import { InvalidRequest, isChorusError } from '@chorus/core';
import type { ChorusNode } from '@chorus/node';
import Fastify from 'fastify';
import type { Logger } from 'pino';
import type { Metrics } from './metrics.js';

/** Largest request body accepted; values have their own, smaller limit in storage. */
const BODY_LIMIT = 2 * 1024 * 1024;

export interface ApiOptions {
  logger: Logger;
  metrics: Metrics;
  /** Undefined until the node has finished starting; requests meanwhile get 503. */
  node: () => ChorusNode | undefined;
}

/** The HTTP API of DESIGN.md section 4 on this node's one port. */
export function buildApi(options: ApiOptions) {
  const app = Fastify({ loggerInstance: options.logger, disableRequestLogging: true, bodyLimit: BODY_LIMIT, return503OnClosing: true });

  // Bodies arrive as raw bytes: values are opaque, and JSON bodies are parsed where they are expected, with our own errors.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  app.setErrorHandler((error, request, reply) => {
    if (isChorusError(error)) {
      void reply.status(error.httpStatus).send(error.toJSON());
      return;
    }
    const fastifyError = error as { code?: string; statusCode?: number; message: string };
    if (fastifyError.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      void reply.status(413).send({ error: 'ValueTooLarge', message: `request body over ${BODY_LIMIT} bytes`, limit: BODY_LIMIT });
      return;
    }
    if (fastifyError.statusCode && fastifyError.statusCode < 500) {
      void reply.status(fastifyError.statusCode).send({ error: 'InvalidRequest', message: fastifyError.message });
      return;
    }
    request.log.error({ err: error, url: request.url }, 'request failed');
    void reply.status(500).send({ error: 'InternalError', message: fastifyError.message });
  });
  app.setNotFoundHandler((request, reply) => void reply.status(404).send({ error: 'NotFound', message: `no route for ${request.method} ${request.url.split('?')[0]}` }));

  const ready = (): ChorusNode => {
    const node = options.node();
    if (!node) throw Object.assign(new Error('node is starting'), { statusCode: 503 });
    return node;
  };

  app.get('/health', async (_req, reply) => {
    const node = options.node();
    return reply.status(node ? 200 : 503).send({ status: node ? 'serving' : 'starting' });
  });
  app.get('/metrics', async (_req, reply) => reply.type(options.metrics.contentType).send(await options.metrics.render()));
  app.get('/v1/status', async () => ready().status());
  app.get('/v1/ring', async () => ready().ring());
  app.get('/v1/keyspaces', async () => ready().keyspaces());
  app.put<{ Params: { name: string } }>('/v1/keyspaces/:name', async (request) => {
    const body = parseJsonBody(request.body);
    if (typeof body !== 'object' || body === null || !('replication' in body)) throw new InvalidRequest('body must be {"replication": {...}}');
    return ready().putKeyspace(request.params.name, (body as { replication: unknown }).replication);
  });
  return app;
}

function parseJsonBody(body: unknown): unknown {
  if (!Buffer.isBuffer(body) || body.length === 0) throw new InvalidRequest('a JSON body is required');
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new InvalidRequest('body is not valid JSON');
  }
}
