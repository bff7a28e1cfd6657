/**
 * Token buckets kept in an object's memory. Losing them on eviction only forgives
 * a burst, so they are not worth a storage write per request.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; refilledAt: number }>();

  /** Takes one token for `key`; returns 0 if allowed, else the seconds to wait. */
  take(key: string, perMinute: number, now: number): number {
    const bucket = this.buckets.get(key) ?? { tokens: perMinute, refilledAt: now };
    const refill = ((now - bucket.refilledAt) / 60_000) * perMinute;
    bucket.tokens = Math.min(perMinute, bucket.tokens + refill);
    bucket.refilledAt = now;
    this.buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil(((1 - bucket.tokens) * 60) / perMinute));
  }

  forget(key: string): void {
    this.buckets.delete(key);
  }
}
