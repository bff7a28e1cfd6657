import { describe, expect, it } from "vitest";
import type { Facts } from "../../protocol/nodes.ts";
import {
  buildGrains,
  describeTarget,
  MAX_TARGET_DEPTH,
  MAX_TARGET_LENGTH,
  matchTarget,
  parseTarget,
  resolveTarget,
  type TargetCandidate,
  type TargetExpr,
  TargetParseError,
  targetCandidateIds,
  targetUsesGrains,
} from "../../protocol/target.ts";

function parseError(text: string): TargetParseError {
  try {
    parseTarget(text);
  } catch (error) {
    if (error instanceof TargetParseError) return error;
    throw error;
  }
  throw new Error(`expected a parse error for: ${text}`);
}

/** Which of `ids` (nodes without grains) the expression matches. */
function matchIds(text: string, ids: readonly string[]): string[] {
  const expr = parseTarget(text);
  return ids.filter((id) => matchTarget(expr, { id, grains: {} }));
}

const g = (pattern: string): TargetExpr => ({ kind: "glob", pattern });

function facts(overrides: Partial<Facts> = {}): Facts {
  return {
    os: "Linux",
    osRelease: "debian 12",
    arch: "x86_64",
    kernel: "6.1.0-18-amd64",
    hostname: "web-1.example.com",
    cpuCount: 4,
    cpuModel: "Intel(R) Xeon(R) CPU",
    memoryBytes: 8_000_000_000,
    disk: [
      { mount: "/", totalBytes: 100, freeBytes: 50 },
      { mount: "/data", totalBytes: 1000, freeBytes: 900 },
    ],
    ipAddresses: ["10.0.0.1", "fe80::1"],
    agentVersion: "0.1.0",
    nodeVersion: "22.18.0",
    custom: {
      role: "web",
      os: "custom-os",
      release: "9",
      tags: ["blue", "green"],
      scores: [1, 10],
      enabled: true,
      disabled: false,
      gone: null,
      empty: "",
      nested: { zone: { name: "eu-1" } },
    },
    ...overrides,
  };
}

const WEB_1: TargetCandidate = {
  id: "web-1",
  grains: buildGrains(facts(), { env: "prod", "app.kubernetes.io/name": "api" }),
};

describe("globs over the node id", () => {
  const ids = ["web", "web-", "web-1", "web-2", "web-3", "web-10", "api-web-1", "db-1", "WEB-1", "-", "a", "]", "x"];
  it.each<[string, string[]]>([
    ["web-1", ["web-1"]],
    ["web-*", ["web-", "web-1", "web-2", "web-3", "web-10"]],
    ["web-?", ["web-1", "web-2", "web-3"]],
    ["*web*", ["web", "web-", "web-1", "web-2", "web-3", "web-10", "api-web-1"]],
    ["*-1", ["web-1", "api-web-1", "db-1", "WEB-1"]],
    ["w*-*0", ["web-10"]],
    ["web", ["web"]],
    ["web-[12]", ["web-1", "web-2"]],
    ["web-[1-3]", ["web-1", "web-2", "web-3"]],
    ["web-[!1-2]", ["web-3"]],
    ["web-[^1-2]", ["web-3"]],
    ["[]x]", ["]", "x"]],
    ["[a-]", ["-", "a"]],
    ["[-a]", ["-", "a"]],
    ["WEB-*", ["WEB-1"]],
    ["*", ids],
    ["**", ids],
    ["?", ["-", "a", "]", "x"]],
  ])("%s", (pattern, expected) => {
    expect(matchIds(pattern, ids)).toEqual(expected);
  });

  it("backtracks over several stars correctly", () => {
    const expr = parseTarget("*a*b");
    expect(matchTarget(expr, { id: "aXbYb", grains: {} })).toBe(true);
    expect(matchTarget(expr, { id: "aXbYc", grains: {} })).toBe(false);
  });

  it("does not blow up on many stars", () => {
    const expr = parseTarget(`${"*a".repeat(20)}*b`);
    const started = Date.now();
    expect(matchTarget(expr, { id: "a".repeat(128), grains: {} })).toBe(false);
    expect(Date.now() - started).toBeLessThan(500);
  });
});

describe("E@ regular expressions over the node id", () => {
  const ids = ["web-1", "my-web-1", "web-22", "db-1", "WEB-3"];
  it.each<[string, string[]]>([
    ["E@web", ["web-1", "my-web-1", "web-22"]],
    ["E@^web", ["web-1", "web-22"]],
    ["E@-\\d$", ["web-1", "my-web-1", "db-1", "WEB-3"]],
    ["E@^web-[0-9]+$", ["web-1", "web-22"]],
    ["E@^(web|db)-1$", ["web-1", "db-1"]],
    ["E@(?:web|db)-\\d{2}", ["web-22"]],
    ["E@WEB", ["WEB-3"]],
    ["E@^(ab)+$", []],
  ])("%s", (expression, expected) => {
    expect(matchIds(expression, ids)).toEqual(expected);
  });

  it.each<[string, number]>([
    ["E@(a+)+", 6],
    ["E@(a|aa)*", 8],
    ["E@^(x\\d*){2,}$", 9],
    ["E@((a|b))+", 9],
    ["E@(a*)*?", 6],
  ])("refuses the catastrophic-backtracking shape %s", (expression, position) => {
    const error = parseError(expression);
    expect(error.reason).toMatch(/catastrophic backtracking/);
    expect(error.position).toBe(position);
  });

  it.each(["E@(a+)?", "E@(a+){1}", "E@(?<name>a+)b", "E@[(+]+", "E@\\(a+\\)+", "E@(?<=a+)b", "E@(ab)+c*"])(
    "accepts the safe shape %s",
    (expression) => {
      expect(parseTarget(expression).kind).toBe("regex");
    },
  );

  it("keeps parentheses that belong to the regex and splits off the ones that close a group", () => {
    expect(parseTarget("(E@(web|db)-1)")).toEqual({ kind: "regex", source: "(web|db)-1" });
    expect(parseTarget("(E@[)]x or a)")).toEqual({ kind: "or", operands: [{ kind: "regex", source: "[)]x" }, g("a")] });
    expect(parseTarget("E@a\\) and b")).toEqual({ kind: "and", operands: [{ kind: "regex", source: "a\\)" }, g("b")] });
  });
});

describe("L@ lists", () => {
  it("matches exact ids only", () => {
    expect(parseTarget("L@web-1,db-1,gone")).toEqual({ kind: "list", ids: ["web-1", "db-1", "gone"] });
    expect(matchIds("L@web-1,db-1,gone", ["web-1", "web-10", "db-1", "web-*"])).toEqual(["web-1", "db-1"]);
    expect(matchIds("L@web-*", ["web-1", "web-*"])).toEqual(["web-*"]);
  });

  it("targets a node whose id is a keyword", () => {
    expect(matchIds("L@and or L@not", ["and", "not", "or"])).toEqual(["and", "not"]);
  });
});

describe("G@ grains", () => {
  it.each<[string, boolean]>([
    // equality: case-insensitive, globs, numbers
    ["G@os:linux", true],
    ["G@os:LINUX", true],
    ["G@os:lin*", true],
    ["G@os:l?nux", true],
    ["G@os:L*X", true],
    ["G@os:win*", false],
    ["G@os:linu", false],
    ["G@osRelease:debian*", true],
    ["G@osRelease:DEBIAN?12", true],
    ["G@osRelease:ubuntu*", false],
    ["G@cpuModel:intel(r)*", true],
    ["G@cpuCount:4", true],
    ["G@cpuCount:4.0", true],
    ["G@cpuCount:04", true],
    ["G@cpuCount:4e0", true],
    ["G@cpuCount:5", false],
    ["G@cpuCount:4*", true],
    // comparisons
    ["G@cpuCount>=4", true],
    ["G@cpuCount>4", false],
    ["G@cpuCount<8", true],
    ["G@cpuCount<=3", false],
    ["G@cpuCount<4", false],
    ["G@cpuCount<=4", true],
    ["G@cpuCount>3", true],
    ["G@cpuCount>=5", false],
    ["G@cpuCount!=4", false],
    ["G@cpuCount!=5", true],
    ["G@memoryBytes<1e9", false],
    ["G@memoryBytes>1e9", true],
    ["G@memoryBytes>=8000000000", true],
    ["G@memoryBytes>-1.5", true],
    // numeric strings compare as numbers: "9" < 10 although "9" > "10" as text
    ["G@release>=10", false],
    ["G@release<10", true],
    ["G@release:9.0", true],
    // strings compare case-insensitively in code-unit order
    ["G@agentVersion<0.2.0", true],
    ["G@agentVersion>0.1.0", false],
    ["G@kernel>=6.1", true],
    ["G@os>=LINUX", true],
    ["G@os>linux", false],
    ["G@os<m", true],
    ["G@os!=windows", true],
    ["G@os!=LINUX", false],
    ["G@os!=lin*", false],
    // booleans compare as "true"/"false"
    ["G@enabled:true", true],
    ["G@enabled:TRUE", true],
    ["G@enabled:false", false],
    ["G@disabled:false", true],
    ["G@enabled!=false", true],
    // arrays: any element
    ["G@ipAddresses:10.0.0.1", true],
    ["G@ipAddresses:10.0.0.*", true],
    ["G@ipAddresses:fe80::1", true],
    ["G@ipAddresses:10.9.9.9", false],
    ["G@tags:GREEN", true],
    ["G@scores>5", true],
    ["G@scores<0", false],
    ["G@scores:10", true],
    // '!=' on an array: no element equals
    ["G@tags!=blue", false],
    ["G@tags!=red", true],
    // dotted keys, custom facts, labels
    ["G@custom.role:web", true],
    ["G@role:web", true],
    ["G@role:db", false],
    ["G@os:custom-os", false],
    ["G@custom.os:custom-os", true],
    ["G@nested.zone.name:eu-1", true],
    ["G@custom.nested.zone.name:eu-*", true],
    ["G@labels.env:prod", true],
    ["G@labels.env:PROD", true],
    ["G@labels.env!=prod", false],
    ["G@labels.app.kubernetes.io/name:api", true],
    ["G@disk.mount:/data", true],
    ["G@disk.0.mount:/", true],
    ["G@disk.1.mount:/", false],
    ["G@disk.freeBytes>800", true],
    // an empty value matches an empty string
    ["G@empty:", true],
    ["G@os:", false],
    ["G@empty!=", false],
    // missing keys and nulls match nothing, not even '!='
    ["G@nope:x", false],
    ["G@nope!=x", false],
    ["G@nope>1", false],
    ["G@nope:*", false],
    ["G@custom.nope:x", false],
    ["G@os.sub:x", false],
    ["G@gone:*", false],
    ["G@gone!=x", false],
    ["G@labels.tier!=x", false],
    ["G@constructor:*", false],
    ["G@toString!=x", false],
    // objects never equal a value
    ["G@nested:*", false],
    ["G@nested!=x", true],
  ])("%s → %s", (expression, expected) => {
    expect(matchTarget(parseTarget(expression), WEB_1)).toBe(expected);
  });

  it.each<[string, TargetExpr]>([
    ["G@os:linux", { kind: "grain", key: "os", op: ":", value: "linux" }],
    ["G@labels.env!=prod", { kind: "grain", key: "labels.env", op: "!=", value: "prod" }],
    ["G@cpuCount>=4", { kind: "grain", key: "cpuCount", op: ">=", value: "4" }],
    ["G@cpuCount<=4", { kind: "grain", key: "cpuCount", op: "<=", value: "4" }],
    ["G@cpuCount>4", { kind: "grain", key: "cpuCount", op: ">", value: "4" }],
    ["G@cpuCount<4", { kind: "grain", key: "cpuCount", op: "<", value: "4" }],
    ["G@a:b:c", { kind: "grain", key: "a", op: ":", value: "b:c" }],
    ["G@ip:fe80::1", { kind: "grain", key: "ip", op: ":", value: "fe80::1" }],
    ["G@t>=12:00", { kind: "grain", key: "t", op: ">=", value: "12:00" }],
    ["G@x:", { kind: "grain", key: "x", op: ":", value: "" }],
    ["(G@cpuModel:Intel(R)*)", { kind: "grain", key: "cpuModel", op: ":", value: "Intel(R)*" }],
  ])("parses %s", (expression, expected) => {
    expect(parseTarget(expression)).toEqual(expected);
  });

  it("matches only labels on a node without facts", () => {
    const bare: TargetCandidate = { id: "new-1", grains: buildGrains(null, { env: "prod" }) };
    expect(matchTarget(parseTarget("G@labels.env:prod"), bare)).toBe(true);
    expect(matchTarget(parseTarget("G@os:*"), bare)).toBe(false);
    expect(matchTarget(parseTarget("G@os!=linux"), bare)).toBe(false);
    expect(matchTarget(parseTarget("not G@os:linux"), bare)).toBe(true);
  });
});

describe("compounds", () => {
  it.each<[string, TargetExpr]>([
    ["a or b and c", { kind: "or", operands: [g("a"), { kind: "and", operands: [g("b"), g("c")] }] }],
    ["a and b or c", { kind: "or", operands: [{ kind: "and", operands: [g("a"), g("b")] }, g("c")] }],
    ["not a and b", { kind: "and", operands: [{ kind: "not", operand: g("a") }, g("b")] }],
    ["not (a or b)", { kind: "not", operand: { kind: "or", operands: [g("a"), g("b")] } }],
    ["a and not b", { kind: "and", operands: [g("a"), { kind: "not", operand: g("b") }] }],
    ["not not a", { kind: "not", operand: { kind: "not", operand: g("a") } }],
    ["(a or b) and c", { kind: "and", operands: [{ kind: "or", operands: [g("a"), g("b")] }, g("c")] }],
    [
      "a and b or c and d",
      { kind: "or", operands: [{ kind: "and", operands: [g("a"), g("b")] }, { kind: "and", operands: [g("c"), g("d")] }] },
    ],
    ["a or b or c", { kind: "or", operands: [g("a"), g("b"), g("c")] }],
    ["(a or b) or (c or d)", { kind: "or", operands: [g("a"), g("b"), g("c"), g("d")] }],
    ["a and (b and c)", { kind: "and", operands: [g("a"), g("b"), g("c")] }],
    ["((a))", g("a")],
    ["a AND b", { kind: "and", operands: [g("a"), g("b")] }],
    ["Not a", { kind: "not", operand: g("a") }],
    ["a Or b", { kind: "or", operands: [g("a"), g("b")] }],
    ["NOT(a)AND(b)", { kind: "and", operands: [{ kind: "not", operand: g("a") }, g("b")] }],
    ["(a or b)and c", { kind: "and", operands: [{ kind: "or", operands: [g("a"), g("b")] }, g("c")] }],
    ["  a\tand\n b  ", { kind: "and", operands: [g("a"), g("b")] }],
    ["android", g("android")],
    ["web* and L@x,y", { kind: "and", operands: [g("web*"), { kind: "list", ids: ["x", "y"] }] }],
  ])("parses %j", (expression, expected) => {
    expect(parseTarget(expression)).toEqual(expected);
  });

  it.each<[string, string[]]>([
    ["a or b and c", ["a", "ac", "bc"]],
    ["(a or b) and c", ["ac", "bc"]],
    ["not a and b", ["b", "bc"]],
    ["not (a or b)", ["c"]],
    ["not a or b", ["b", "c", "bc"]],
  ])("evaluates %s with the right precedence", (expression, expected) => {
    // Ids are made of the letters whose glob `*x*` they match; globs use `*a*` etc.
    const text = expression.replace(/\b([abc])\b/g, "*$1*");
    expect(matchIds(text, ["a", "b", "c", "ac", "bc"])).toEqual(expected);
  });

  it("mixes every term type", () => {
    const expr = parseTarget("web-* and G@os:linux and not L@web-2 or E@^db- and G@labels.env:prod");
    const node = (id: string, os: string, env: string): TargetCandidate => ({
      id,
      grains: buildGrains(facts({ os }), { env }),
    });
    expect(matchTarget(expr, node("web-1", "Linux", "dev"))).toBe(true);
    expect(matchTarget(expr, node("web-2", "Linux", "prod"))).toBe(false);
    expect(matchTarget(expr, node("web-3", "Windows", "prod"))).toBe(false);
    expect(matchTarget(expr, node("db-1", "Windows", "prod"))).toBe(true);
    expect(matchTarget(expr, node("db-1", "Linux", "dev"))).toBe(false);
  });
});

describe("parse errors", () => {
  it.each<[string, number, RegExp]>([
    ["", 0, /empty target expression/],
    ["   ", 0, /empty target expression/],
    ["web* and", 8, /expected a target after 'and'/],
    ["web* or", 7, /expected a target after 'or'/],
    ["not", 3, /expected a target after 'not'/],
    ["(", 1, /expected a target after '\('/],
    ["(web*", 0, /missing '\)' for the '\(' at position 0/],
    ["a and (b or c", 6, /missing '\)'/],
    ["()", 0, /empty parentheses/],
    ["a and ()", 6, /empty parentheses/],
    ["and web", 0, /'and' needs a target before it/],
    ["OR web", 0, /'OR' needs a target before it/],
    ["(and a)", 1, /'and' needs a target before it/],
    ["a or or b", 5, /expected a target after 'or', found 'or'/],
    ["a and )", 6, /expected a target after 'and', found '\)'/],
    ["a and (b or )", 12, /expected a target after 'or', found '\)'/],
    [")", 0, /unmatched '\)'/],
    ["web)", 3, /unmatched '\)'/],
    ["(a) b)", 4, /expected 'and' or 'or' before 'b'/],
    ["(a))", 3, /unmatched '\)'/],
    ["web1 web2", 5, /expected 'and' or 'or' before 'web2'/],
    ["(a b)", 3, /expected 'and' or 'or' before 'b'/],
    ["a (b)", 2, /expected 'and' or 'or' before '\('/],
    ["a not b", 2, /expected 'and' or 'or' before 'not'/],
    ["L@", 0, /empty node list after 'L@'/],
    ["L@a,,b", 4, /empty node id/],
    ["L@a,", 4, /empty node id/],
    ["a or L@", 5, /empty node list/],
    ["G@nocolon", 0, /'G@' needs an operator and a value/],
    ["G@os=linux", 0, /uses ':' for equality/],
    ["G@:x", 2, /missing grain key before ':'/],
    ["G@>=4", 2, /missing grain key before '>='/],
    ["G@a..b:x", 4, /empty segment in grain key/],
    ["G@.a:x", 2, /empty segment in grain key/],
    ["G@cpuCount>=", 12, /missing value after '>='/],
    ["G@cpuCount<", 11, /missing value after '<'/],
    ["G@a!b", 3, /'!' in 'G@' must be followed by '='/],
    ["E@[bad", 2, /invalid regular expression/],
    ["a or E@(x", 7, /invalid regular expression/],
    ["E@", 0, /empty regular expression/],
    ["E@*", 2, /invalid regular expression/],
    ["X@foo", 0, /unknown target type 'X@' \(supported: E@regex, G@key:value, L@id,id\)/],
    ["a and I@foo", 6, /unknown target type 'I@'/],
    ["e@foo", 0, /unknown target type 'e@' \(did you mean 'E@'\?\)/],
    ["web-[1-", 4, /unclosed '\[' in glob/],
    ["web-[!]", 4, /unclosed '\[' in glob/],
    ["web-[3-1]", 5, /invalid range '3-1' in glob/],
    ["web-[a3-1]", 6, /invalid range '3-1' in glob/],
  ])("%j fails at %i", (expression, position, reason) => {
    const error = parseError(expression);
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe("TargetParseError");
    expect(error.reason).toMatch(reason);
    expect(error.position).toBe(position);
    expect(error.message).toBe(`${error.reason} (at position ${position})`);
  });

  it("caps the expression length", () => {
    expect(parseTarget("a".repeat(MAX_TARGET_LENGTH))).toEqual(g("a".repeat(MAX_TARGET_LENGTH)));
    const error = parseError("a".repeat(MAX_TARGET_LENGTH + 1));
    expect(error.reason).toMatch(/longer than 4096 characters/);
    expect(error.position).toBe(MAX_TARGET_LENGTH);
  });

  it("caps the regex length", () => {
    expect(parseTarget(`E@${"a".repeat(256)}`).kind).toBe("regex");
    const error = parseError(`web or E@${"a".repeat(257)}`);
    expect(error.reason).toMatch(/regular expression is longer than 256 characters/);
    expect(error.position).toBe(9);
  });

  it("caps the nesting depth", () => {
    const nested = (depth: number) => `${"(".repeat(depth)}a${")".repeat(depth)}`;
    expect(parseTarget(nested(MAX_TARGET_DEPTH))).toEqual(g("a"));
    const error = parseError(nested(MAX_TARGET_DEPTH + 1));
    expect(error.reason).toMatch(/nests deeper than 64 levels/);
    expect(error.position).toBe(MAX_TARGET_DEPTH);
    expect(parseError(`${"not ".repeat(MAX_TARGET_DEPTH + 1)}a`).position).toBe(MAX_TARGET_DEPTH * 4);
  });
});

describe("describeTarget", () => {
  it.each<[string, string]>([
    ["web-*", "web-*"],
    ["web-* AND NOT G@os:windows", "web-* and not G@os:windows"],
    ["(a or b) and c", "(a or b) and c"],
    ["a or (b and c)", "a or b and c"],
    ["not (a and b)", "not (a and b)"],
    ["NOT  ( a OR b )", "not (a or b)"],
    ["not not a", "not not a"],
    ["((a))", "a"],
    ["a or (b or c)", "a or b or c"],
    ["L@a,b", "L@a,b"],
    ["E@^web-(1|2)$", "E@^web-(1|2)$"],
    ["G@cpuCount>=4", "G@cpuCount>=4"],
    ["(G@cpuModel:Intel(R)* or E@(a|b)) and not L@x", "(G@cpuModel:Intel(R)* or E@(a|b)) and not L@x"],
  ])("%j → %j", (expression, canonical) => {
    expect(describeTarget(parseTarget(expression))).toBe(canonical);
  });

  it.each([
    "a or b and c",
    "not a and b",
    "not (a or b) and (c or not d)",
    "(E@(web|db)-1 or G@labels.env!=prod) and not (L@a,b or web-[!0-9]*)",
    "((a and b) or (c and (d or e))) and not not f",
    "(G@cpuModel:Intel(R)* and G@x:) or G@y!=",
  ])("round-trips %j", (expression) => {
    const parsed = parseTarget(expression);
    expect(parseTarget(describeTarget(parsed))).toEqual(parsed);
  });
});

describe("resolveTarget", () => {
  const fleet: TargetCandidate[] = [
    { id: "web-2", grains: buildGrains(facts({ cpuCount: 8 }), { env: "prod" }) },
    { id: "web-1", grains: buildGrains(facts({ cpuCount: 2 }), { env: "staging" }) },
    { id: "db-1", grains: buildGrains(facts({ os: "FreeBSD", memoryBytes: 64_000_000_000 }), { env: "prod" }) },
    { id: "win-1", grains: buildGrains(facts({ os: "Windows", custom: { role: "ad" } }), {}) },
    { id: "new-1", grains: buildGrains(null, {}) },
  ];

  it.each<[string, string[]]>([
    ["*", ["web-2", "web-1", "db-1", "win-1", "new-1"]],
    ["web-*", ["web-2", "web-1"]],
    ["L@db-1,web-2,missing", ["web-2", "db-1"]],
    ["web-1", ["web-1"]],
    ["E@-1$", ["web-1", "db-1", "win-1", "new-1"]],
    ["G@os:linux", ["web-2", "web-1"]],
    ["G@os!=linux", ["db-1", "win-1"]],
    ["not G@os:linux", ["db-1", "win-1", "new-1"]],
    ["G@cpuCount>=4", ["web-2", "db-1", "win-1"]],
    ["G@memoryBytes>1e10", ["db-1"]],
    ["G@role:web", ["web-2", "web-1", "db-1"]],
    ["G@labels.env:prod", ["web-2", "db-1"]],
    ["G@labels.env:prod and G@cpuCount>4 or L@new-1", ["web-2", "new-1"]],
    ["L@web-1,web-2,db-1 and G@labels.env:prod", ["web-2", "db-1"]],
    ["L@web-1,db-1 and L@db-1,win-1", ["db-1"]],
    ["nothing-*", []],
  ])("%s → %j", (expression, expected) => {
    expect(resolveTarget(expression, fleet)).toEqual(expected);
  });

  it("throws a TargetParseError for a bad expression", () => {
    expect(() => resolveTarget("web* and", fleet)).toThrow(TargetParseError);
  });
});

describe("fast paths", () => {
  it.each<[string, string[] | null]>([
    ["web-1", ["web-1"]],
    ["L@a,b,a", ["a", "b"]],
    ["a or L@b,c", ["a", "b", "c"]],
    ["web-*", null],
    ["web-[12]", null],
    ["web-?", null],
    ["a or web-*", null],
    ["L@a,b and web*", ["a", "b"]],
    ["L@a,b and L@b,c", ["b"]],
    ["web-* and G@os:linux", null],
    ["not a", null],
    ["E@a", null],
    ["G@os:linux", null],
  ])("candidate ids of %s", (expression, expected) => {
    expect(targetCandidateIds(parseTarget(expression))).toEqual(expected);
  });

  it.each<[string, boolean]>([
    ["web-*", false],
    ["L@a,b or E@x", false],
    ["G@os:linux", true],
    ["web-* and not (a or G@os:linux)", true],
  ])("%s uses grains: %s", (expression, expected) => {
    expect(targetUsesGrains(parseTarget(expression))).toBe(expected);
  });
});

describe("buildGrains", () => {
  it("puts facts at top level, custom facts at top level unless built in, and labels under labels", () => {
    const input = facts();
    const grains = buildGrains(input, { env: "prod" });
    expect(grains["os"]).toBe("Linux");
    expect(grains["cpuCount"]).toBe(4);
    expect(grains["role"]).toBe("web");
    expect(grains["custom"]).toEqual(input.custom);
    expect(grains["labels"]).toEqual({ env: "prod" });
    expect(input.custom).not.toHaveProperty("labels");
    expect(input).not.toHaveProperty("role");
  });

  it("does not let a custom fact take the labels key", () => {
    const grains = buildGrains(facts({ custom: { labels: "x" } }), { env: "prod" });
    expect(grains["labels"]).toEqual({ env: "prod" });
    expect(grains["custom"]).toEqual({ labels: "x" });
  });

  it("gives a node without facts only its labels", () => {
    expect(buildGrains(null, { env: "dev" })).toEqual({ labels: { env: "dev" } });
    expect(buildGrains(null, {})).toEqual({ labels: {} });
  });

  it("keeps hostile keys as plain data", () => {
    const custom = JSON.parse('{"__proto__": {"polluted": true}, "constructor": "x"}') as Facts["custom"];
    const grains = buildGrains(facts({ custom }), JSON.parse('{"__proto__": "y"}') as Record<string, string>);
    expect(Object.getPrototypeOf(grains)).toBe(Object.prototype);
    expect(Object.hasOwn(grains, "__proto__")).toBe(true);
    expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined();
    const node: TargetCandidate = { id: "n", grains };
    expect(matchTarget(parseTarget("G@__proto__.polluted:true"), node)).toBe(true);
    expect(matchTarget(parseTarget("G@constructor:x"), node)).toBe(true);
    expect(matchTarget(parseTarget("G@labels.__proto__:y"), node)).toBe(true);
  });
});

describe("hand-built expressions", () => {
  it("are compiled on first use", () => {
    const expr: TargetExpr = {
      kind: "and",
      operands: [g("web-*"), { kind: "grain", key: "labels.env", op: ":", value: "p*" }, { kind: "regex", source: "1$" }],
    };
    expect(matchTarget(expr, WEB_1)).toBe(true);
    expect(matchTarget(expr, { ...WEB_1, id: "web-2" })).toBe(false);
  });

  it("throw a TargetParseError when invalid", () => {
    expect(() => matchTarget({ kind: "regex", source: "[bad" }, WEB_1)).toThrow(TargetParseError);
    expect(() => matchTarget(g("web-[1"), WEB_1)).toThrow(TargetParseError);
  });
});
