import { readFileSync } from 'node:fs';
import { type IncomingHttpHeaders, request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

/** A failed command: its message is the one line printed on stderr. */
export class CliError extends Error {
  override name = 'CliError';
}

export const DEFAULT_HOST = '127.0.0.1:7100';

/**
 * How the command reaches nodes: a bearer token for nodes with client
 * authentication, and the CA of nodes whose port is TLS (`https` then).
 */
export interface Access {
  token?: string;
  /** PEM of the CA that signed the nodes' certificates; given, requests go over TLS. */
  ca?: string;
}

/** `--token`/CHORUS_TOKEN and `--tls-ca`/CHORUS_TLS_CA: the token itself, and the CA's PEM read from its file. */
export function accessOf(token: string | undefined, caFile: string | undefined): Access {
  const access: Access = {};
  if (token !== undefined && token.trim() !== '') access.token = token.trim();
  if (caFile !== undefined && caFile !== '') {
    try {
      access.ca = readFileSync(caFile, 'utf8');
    } catch (error) {
      throw new CliError(`cannot read the CA file ${caFile} (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
    }
  }
  return access;
}

/** What the command was given; set once, before its action runs. */
const current: Access = {};

export function useAccess(access: Access): void {
  Object.assign(current, access);
}

/** The options of `@chorus/client` for the same access. */
export function clientAccess(): { token?: string; ca?: string } {
  return { ...(current.token !== undefined ? { token: current.token } : {}), ...(current.ca !== undefined ? { ca: current.ca } : {}) };
}

export interface Answer {
  status: number;
  headers: { get(name: string): string | null };
  body: Buffer;
  json<T = unknown>(): T;
}

/** One request to a node's HTTP API, with a bounded wait and errors a person can read. */
export async function request(host: string, method: string, path: string, options: { body?: Uint8Array | string; timeoutMs?: number } = {}): Promise<Answer> {
  const colon = host.lastIndexOf(':');
  const hostname = host.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  const port = Number(host.slice(colon + 1));
  if (colon <= 0 || !Number.isInteger(port) || port < 1 || port > 65_535) throw new CliError(`--host must be host:port, got ${JSON.stringify(host)}`);
  const body = options.body === undefined ? undefined : Buffer.from(options.body);
  const headers: Record<string, string | number> = { ...(current.token !== undefined ? { authorization: `Bearer ${current.token}` } : {}), ...(body ? { 'content-length': body.byteLength } : {}) };
  const timeoutMs = options.timeoutMs ?? 10_000;
  const tls = current.ca !== undefined;
  const { status, responseHeaders, data } = await new Promise<{ status: number; responseHeaders: IncomingHttpHeaders; data: Buffer }>((resolve, reject) => {
    const req = (tls ? httpsRequest : httpRequest)({ host: hostname, port, method, path, headers, timeout: timeoutMs, ...(tls ? { ca: current.ca } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, responseHeaders: res.headers, data: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'timed out' })));
    req.on('error', reject);
    req.end(body);
  }).catch((error: NodeJS.ErrnoException) => {
    const cause = error.code ?? error.message;
    // A plain request to a TLS port is cut, a TLS one to a plain port fails its handshake: say which setting to look at.
    const hint = cause === 'ECONNRESET' && !tls ? '; if the node serves TLS, give --tls-ca' : /EPROTO|wrong version/i.test(`${cause} ${error.message}`) ? '; the node may not serve TLS: drop --tls-ca' : '';
    throw new CliError(`cannot reach ${host} (${cause}${hint})`);
  });
  return {
    status,
    headers: {
      get(name) {
        const value = responseHeaders[name.toLowerCase()];
        return value === undefined ? null : Array.isArray(value) ? value.join(', ') : value;
      },
    },
    body: data,
    json<T>() {
      try {
        return JSON.parse(data.toString('utf8')) as T;
      } catch {
        throw new CliError(`${host} answered ${method} ${path} with something that is not JSON`);
      }
    },
  };
}

/** Turns a node's JSON error answer into one line: `Unavailable: … (consistency=QUORUM required=2 alive=1)`. */
export function errorLine(answer: Answer): string {
  let parsed: Record<string, unknown> | undefined;
  try {
    parsed = JSON.parse(answer.body.toString('utf8')) as Record<string, unknown>;
  } catch {
    return `HTTP ${answer.status}: ${answer.body.toString('utf8').slice(0, 200)}`;
  }
  const { error, message, ...numbers } = parsed;
  const details = Object.entries(numbers).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join(' ');
  const hint = answer.status === 401 ? (current.token === undefined ? ' (give --token or set CHORUS_TOKEN)' : ' (the token given is not one of the node\'s)') : '';
  return `${String(error ?? `HTTP ${answer.status}`)}: ${String(message ?? '')}${details ? ` (${details})` : ''}${hint}`;
}

export async function getJson<T>(host: string, path: string): Promise<T> {
  const answer = await request(host, 'GET', path);
  if (answer.status !== 200) throw new CliError(errorLine(answer));
  return answer.json<T>();
}
