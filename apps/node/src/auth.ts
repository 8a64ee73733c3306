import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { ConfigError } from './errors.js';

/**
 * Client authentication by bearer token (`authenticator: token`): the HTTP
 * API and the `/client` protocol require `Authorization: Bearer <token>` with
 * a token of the tokens file. `/health` stays open, `/metrics` unless
 * `metrics_require_auth`; peers authenticate by the cluster secret instead.
 */
export interface Authenticator {
  /** Tokens in force. */
  readonly tokens: number;
  /** Whether an `Authorization` header carries a token of the file. Takes as long whichever token it holds. */
  allows(authorization: string | string[] | undefined): boolean;
  /** Records a refused request: a log line with its source, at most a few per window however many arrive. */
  refused(remote: string | undefined, path: string): void;
  /** Reads the tokens file again (on SIGHUP). A file that cannot be read or parsed throws and leaves the tokens in force. */
  reload(): number;
}

/** Bearer tokens of RFC 6750: letters, digits and `-._~+/`, optionally ending in `=`. */
const TOKEN_PATTERN = /^[A-Za-z0-9\-._~+/]+=*$/;
const MIN_TOKEN_CHARS = 16;
const MAX_TOKEN_CHARS = 1024;
const MAX_TOKENS = 10_000;
/** Refusals logged in full per window; the rest are counted into the next line. */
const LOG_WINDOW_MS = 10_000;
const LOG_PER_WINDOW = 3;

/**
 * Reads a tokens file: one token per line, blank lines and lines starting
 * with `#` skipped. Returns the SHA-256 of each token: a presented token is
 * hashed and compared to every one of them in constant time, so neither the
 * comparison nor the number of tokens matched tells which token was close.
 */
export function readTokensFile(path: string): Buffer[] {
  const where = `authenticator_tokens_file ${path}`;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`${where} cannot be read: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  const digests: Buffer[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const token = lines[i]!.trim();
    if (token === '' || token.startsWith('#')) continue;
    // Messages name the line, never the token.
    if (token.length < MIN_TOKEN_CHARS || token.length > MAX_TOKEN_CHARS) throw new ConfigError(`${where}, line ${i + 1}: a token has at least ${MIN_TOKEN_CHARS} characters and at most ${MAX_TOKEN_CHARS}, this one ${token.length}`);
    if (!TOKEN_PATTERN.test(token)) throw new ConfigError(`${where}, line ${i + 1}: a token is made of letters, digits and - . _ ~ + / (an = may end it), nothing else on its line`);
    digests.push(digestOf(token));
    if (digests.length > MAX_TOKENS) throw new ConfigError(`${where} holds more than ${MAX_TOKENS} tokens`);
  }
  if (digests.length === 0) throw new ConfigError(`${where} holds no token (one a line; lines starting with # are comments)`);
  return digests;
}

function digestOf(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

export function tokenAuthenticator(file: string, logger: Logger, now: () => number = Date.now): Authenticator {
  let digests = readTokensFile(file);
  let windowStart = Number.NEGATIVE_INFINITY;
  let loggedInWindow = 0;
  let suppressed = 0;
  return {
    get tokens() {
      return digests.length;
    },
    allows(authorization) {
      const header = Array.isArray(authorization) ? authorization[0] : authorization;
      if (typeof header !== 'string' || header.length > MAX_TOKEN_CHARS + 16) return false;
      const match = /^Bearer +(\S+)\s*$/i.exec(header);
      if (!match) return false;
      const presented = digestOf(match[1]!);
      let found = false;
      // Every stored digest is compared, found or not.
      for (const digest of digests) found = timingSafeEqual(presented, digest) || found;
      return found;
    },
    refused(remote, path) {
      const t = now();
      if (t - windowStart >= LOG_WINDOW_MS) {
        windowStart = t;
        loggedInWindow = 0;
      }
      if (loggedInWindow >= LOG_PER_WINDOW) {
        suppressed++;
        return;
      }
      loggedInWindow++;
      logger.warn({ remote, path: path.slice(0, 200), ...(suppressed > 0 ? { alsoRefusedSinceLastLine: suppressed } : {}) }, 'refused a request without a valid token');
      suppressed = 0;
    },
    reload() {
      digests = readTokensFile(file);
      return digests.length;
    },
  };
}
