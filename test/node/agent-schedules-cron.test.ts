import { describe, expect, it } from "vitest";
import { CronError, nextRun, parseCron } from "../../agent/src/schedules/cron.ts";
import { intervalSeconds } from "../../agent/src/schedules/scheduler.ts";

/** The schedules' cron dialect: five UTC fields, Vixie's day-of-month / day-of-week OR rule. */

// 2026-01-01 is a Thursday.
const AFTER = new Date("2026-01-01T00:00:30Z");

describe("nextRun", () => {
  const table: [expr: string, after: Date, expected: string][] = [
    ["* * * * *", AFTER, "2026-01-01T00:01:00Z"],
    ["*/15 * * * *", AFTER, "2026-01-01T00:15:00Z"],
    ["5 * * * *", AFTER, "2026-01-01T00:05:00Z"],
    ["0 */6 * * *", AFTER, "2026-01-01T06:00:00Z"],
    ["10-20/5 3 * * *", AFTER, "2026-01-01T03:10:00Z"],
    ["10-20/5 3 * * *", new Date("2026-01-01T03:10:00Z"), "2026-01-01T03:15:00Z"],
    ["0,30 9-10 * * *", new Date("2026-01-01T09:00:00Z"), "2026-01-01T09:30:00Z"],
    ["0,30 9-10 * * *", new Date("2026-01-01T10:30:00Z"), "2026-01-02T09:00:00Z"],
    ["30 2 */10 * *", new Date("2026-01-01T03:00:00Z"), "2026-01-11T02:30:00Z"],
    ["0 0 5/10 * *", AFTER, "2026-01-05T00:00:00Z"],
    // Sunday, as 0 and as 7.
    ["0 0 * * 0", AFTER, "2026-01-04T00:00:00Z"],
    ["0 0 * * 7", AFTER, "2026-01-04T00:00:00Z"],
    ["0 0 * * 6,7", AFTER, "2026-01-03T00:00:00Z"],
    ["0 12 * * 1-5", AFTER, "2026-01-01T12:00:00Z"],
    ["0 12 * * 1-5", new Date("2026-01-02T12:00:00Z"), "2026-01-05T12:00:00Z"],
    // Both restricted: the 2nd (a Friday) or any Monday, whichever comes first.
    ["0 0 2 * 1", AFTER, "2026-01-02T00:00:00Z"],
    ["0 0 15 * 1", AFTER, "2026-01-05T00:00:00Z"],
    ["0 0 15 * 1", new Date("2026-01-13T00:00:00Z"), "2026-01-15T00:00:00Z"],
    // `*/2` counts as unrestricted (starts with *): odd days that are also Mondays.
    ["0 0 */2 * 1", new Date("2026-01-06T00:00:00Z"), "2026-01-19T00:00:00Z"],
    ["0 0 1 1 *", AFTER, "2027-01-01T00:00:00Z"],
    ["0 0 29 2 *", AFTER, "2028-02-29T00:00:00Z"],
    ["15 14 1 * *", new Date("2026-01-31T23:59:59Z"), "2026-02-01T14:15:00Z"],
    // Strictly after: a time that matches exactly moves on to the next one.
    ["0 * * * *", new Date("2026-01-01T01:00:00Z"), "2026-01-01T02:00:00Z"],
  ];
  it.each(table)("%s after %s is %s", (expr, after, expected) => {
    expect(nextRun(expr, after).toISOString()).toBe(new Date(expected).toISOString());
  });

  it("accepts a parsed spec as well as the text", () => {
    const spec = parseCron("*/20 * * * *");
    expect(nextRun(spec, AFTER).toISOString()).toBe("2026-01-01T00:20:00.000Z");
    expect([...spec.minutes]).toEqual([0, 20, 40]);
    expect(spec.domRestricted).toBe(false);
  });

  it("throws for an expression no date matches", () => {
    expect(() => nextRun("0 0 30 2 *", AFTER)).toThrow(new CronError("cron '0 0 30 2 *' never matches a date"));
  });
});

describe("parseCron errors", () => {
  const table: [expr: string, message: string][] = [
    ["* * * *", "cron '* * * *' needs 5 fields (minute hour day-of-month month day-of-week), got 4"],
    ["* * * * * *", "got 6"],
    ["60 * * * *", "minute field '60' has 60, outside 0-59"],
    ["* 24 * * *", "hour field '24' has 24, outside 0-23"],
    ["* * 0 * *", "day-of-month field '0' has 0, outside 1-31"],
    ["* * * 13 *", "month field '13' has 13, outside 1-12"],
    ["* * * * 8", "day-of-week field '8' has 8, outside 0-7"],
    ["*/0 * * * *", "minute field '*/0' has step '0'; a step is a whole number of at least 1"],
    ["5-1 * * * *", "minute field '5-1' has range 5-1, which runs backwards"],
    ["a * * * *", "minute field 'a' has 'a', which is not a number"],
    ["1,,2 * * * *", "minute field '1,,2' has an empty list item"],
    ["1-2-3 * * * *", "has a malformed range '1-2-3'"],
    ["*/2/3 * * * *", "has more than one '/'"],
  ];
  it.each(table)("%s", (expr, message) => {
    expect(() => parseCron(expr)).toThrow(CronError);
    expect(() => parseCron(expr)).toThrow(message);
  });
});

describe("intervalSeconds", () => {
  it("reads numbers and durations", () => {
    expect([90, "90", "90s", "15m", "1h", "1d"].map(intervalSeconds)).toEqual([90, 90, 90, 900, 3600, 86_400]);
    expect(() => intervalSeconds("0m")).toThrow("must be at least one second");
    expect(() => intervalSeconds("5x")).toThrow("not a number of seconds");
  });
});
