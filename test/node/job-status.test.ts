import { describe, expect, it } from "vitest";
import { exitCodeFor, finalStatus, type JobCounts } from "../../protocol/jobs.ts";

const counts = (targets: number, succeeded: number, failed: number, unreachable: number): JobCounts => ({
  targets,
  returned: succeeded + failed + unreachable,
  succeeded,
  failed,
  unreachable,
});

describe("final status (design, Jobs)", () => {
  const cases: Array<[string, Parameters<typeof finalStatus>[0], JobCounts, string]> = [
    ["all returned, all succeeded", "all_returned", counts(3, 3, 0, 0), "complete"],
    ["all returned, one failed", "all_returned", counts(3, 2, 1, 0), "failed"],
    ["all returned, one unreachable", "all_returned", counts(3, 2, 0, 1), "failed"],
    ["all returned, all unreachable", "all_returned", counts(2, 0, 0, 2), "failed"],
    ["deadline with some returns", "deadline", counts(3, 1, 0, 0), "partial"],
    ["deadline with a failed return only", "deadline", counts(3, 0, 1, 0), "partial"],
    ["deadline with none", "deadline", counts(3, 0, 0, 0), "timeout"],
    ["canceled before all returned", "canceled", counts(3, 1, 0, 0), "canceled"],
    ["canceled with nothing returned", "canceled", counts(3, 0, 0, 0), "canceled"],
  ];
  it.each(cases)("%s", (_name, reason, c, expected) => {
    expect(finalStatus(reason, c)).toBe(expected);
  });
});

describe("CLI exit codes (design, Jobs)", () => {
  const cases: Array<[string, JobCounts, number]> = [
    ["all succeeded", counts(3, 3, 0, 0), 0],
    ["some failed", counts(3, 2, 1, 0), 2],
    ["some unreachable", counts(3, 2, 0, 1), 3],
    ["some missing at the deadline", { targets: 3, returned: 2, succeeded: 2, failed: 0, unreachable: 0 }, 3],
    ["failed and unreachable", counts(3, 1, 1, 1), 4],
    ["failed and missing", { targets: 3, returned: 1, succeeded: 0, failed: 1, unreachable: 0 }, 4],
  ];
  it.each(cases)("%s", (_name, c, expected) => {
    expect(exitCodeFor(c)).toBe(expected);
  });
});
