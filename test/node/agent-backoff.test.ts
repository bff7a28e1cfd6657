import { describe, expect, it } from "vitest";
import { Backoff, backoffCeiling, DEFAULT_BACKOFF_BASE_MS, DEFAULT_BACKOFF_CAP_MS } from "../../agent/src/backoff.ts";

describe("reconnect backoff", () => {
  it("defaults to 1 s doubling up to a 60 s cap", () => {
    expect([DEFAULT_BACKOFF_BASE_MS, DEFAULT_BACKOFF_CAP_MS]).toEqual([1_000, 60_000]);
    expect([0, 1, 2, 5, 6, 7, 40, 5_000].map((n) => backoffCeiling(n, 1_000, 60_000))).toEqual([
      1_000, 2_000, 4_000, 32_000, 60_000, 60_000, 60_000, 60_000,
    ]);
  });

  it("draws every delay from [0, min(cap, base·2^n)] (full jitter)", () => {
    const backoff = new Backoff();
    for (let n = 0; n < 200; n++) {
      const delay = backoff.next();
      expect(delay).toBeGreaterThanOrEqual(0);
      expect(delay).toBeLessThanOrEqual(Math.min(60_000, 1_000 * 2 ** n));
      expect(Number.isInteger(delay)).toBe(true);
    }
    expect(backoff.attempt).toBe(200);
  });

  it("reaches both ends of the window: jitter is full, not partial", () => {
    const low = new Backoff({ random: () => 0 });
    const high = new Backoff({ random: () => 0.999_999 });
    expect([low.next(), low.next(), low.next()]).toEqual([0, 0, 0]);
    expect(Array.from({ length: 8 }, () => high.next())).toEqual([999, 1_999, 3_999, 7_999, 15_999, 31_999, 59_999, 59_999]);
  });

  it("spreads delays over the window rather than bunching at the top", () => {
    const backoff = new Backoff({ baseMs: 100, capMs: 1_000 });
    for (let n = 0; n < 4; n++) backoff.next();
    const delays = Array.from({ length: 400 }, () => backoff.next());
    expect(Math.max(...delays)).toBeLessThanOrEqual(1_000);
    // With a uniform draw over [0, 1000), both halves get plenty.
    expect(delays.filter((d) => d < 500).length).toBeGreaterThan(100);
    expect(delays.filter((d) => d >= 500).length).toBeGreaterThan(100);
  });

  it("starts from the base again after a reset", () => {
    const backoff = new Backoff({ baseMs: 10, capMs: 1_000, random: () => 0.999_999 });
    expect([backoff.next(), backoff.next(), backoff.next()]).toEqual([9, 19, 39]);
    backoff.reset();
    expect(backoff.attempt).toBe(0);
    expect(backoff.next()).toBe(9);
  });
});
