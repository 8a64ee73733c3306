/** A failed command: its message is the one line printed on stderr. */
export class CliError extends Error {
  override name = 'CliError';
}

export const DEFAULT_HOST = '127.0.0.1:7100';

export interface Answer {
  status: number;
  headers: Headers;
  body: Buffer;
  json<T = unknown>(): T;
}

/** One request to a node's HTTP API, with a bounded wait and errors a person can read. */
export async function request(host: string, method: string, path: string, options: { body?: Uint8Array | string; timeoutMs?: number } = {}): Promise<Answer> {
  const url = `http://${host}${path}`;
  let response: Response;
  try {
    response = await fetch(url, { method, body: options.body, signal: AbortSignal.timeout(options.timeoutMs ?? 10_000) });
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).name;
    throw new CliError(`cannot reach ${host} (${cause === 'TimeoutError' ? 'timed out' : cause})`);
  }
  const body = Buffer.from(await response.arrayBuffer());
  return {
    status: response.status,
    headers: response.headers,
    body,
    json<T>() {
      try {
        return JSON.parse(body.toString('utf8')) as T;
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
  return `${String(error ?? `HTTP ${answer.status}`)}: ${String(message ?? '')}${details ? ` (${details})` : ''}`;
}

export async function getJson<T>(host: string, path: string): Promise<T> {
  const answer = await request(host, 'GET', path);
  if (answer.status !== 200) throw new CliError(errorLine(answer));
  return answer.json<T>();
}
