import { Overloaded } from '@chorus/core';

/**
 * Bytes that client requests may hold at once: their bodies while they are
 * read and coordinated, and a small fixed cost each. A request that would take
 * the total past the bound is refused (Overloaded, HTTP 503 with Retry-After)
 * rather than queued; one request alone always fits, so no size the API takes
 * is refused forever.
 */
export class RequestBudget {
  private heldBytes = 0;
  private readonly refusedBy = { http: 0, client: 0 };

  constructor(
    readonly maxBytes: number,
    /** What the refusal says was full. */
    private readonly what = 'client requests in flight',
  ) {
    if (!(maxBytes >= 1)) throw new RangeError('a request budget must be at least 1 byte');
  }

  get held(): number {
    return this.heldBytes;
  }

  /** Requests refused so far, by the API they came over. */
  get refused(): Readonly<{ http: number; client: number }> {
    return this.refusedBy;
  }

  /** Takes `bytes` for a request of `api`, or returns the Overloaded error to answer with. */
  take(bytes: number, api: 'http' | 'client' = 'http'): Overloaded | undefined {
    if (this.heldBytes > 0 && this.heldBytes + bytes > this.maxBytes) {
      this.refusedBy[api]++;
      return new Overloaded(this.what, this.maxBytes, { heldBytes: this.heldBytes, requestBytes: bytes });
    }
    this.heldBytes += bytes;
    return undefined;
  }

  release(bytes: number): void {
    this.heldBytes = Math.max(0, this.heldBytes - bytes);
  }
}
