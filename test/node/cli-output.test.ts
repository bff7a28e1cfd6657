import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { ApiError, parseRetryAfter } from "../../cli/src/client.ts";
import { CliError, oneLine, UsageError } from "../../cli/src/errors.ts";
import type { Io } from "../../cli/src/io.ts";
import { describeError } from "../../cli/src/main.ts";
import { colorEnabled, fields, formatTime, makeColors, Output, serializeJson, table } from "../../cli/src/output.ts";

function memoryIo(tty = false, env: Io["env"] = {}) {
  const captured = { stdout: "", stderr: "" };
  const io: Io = {
    stdout: { write: (s: string) => (captured.stdout += s), isTTY: tty },
    stderr: { write: (s: string) => (captured.stderr += s), isTTY: tty },
    env,
    cwd: "/",
  };
  return { io, captured };
}

describe("output formats", () => {
  const data = { tokens: [{ id: "abc", name: "ci", expiresAt: null }] };

  it("prints the object itself as JSON or YAML, and calls the text renderer only for text", async () => {
    for (const format of ["json", "yaml"] as const) {
      const { io, captured } = memoryIo();
      (await Output.create(io, format, false)).result(data, () => {
        throw new Error("text renderer must not run");
      });
      const parsed: unknown = format === "json" ? JSON.parse(captured.stdout) : parseYaml(captured.stdout);
      expect(parsed).toEqual(data);
    }
    const { io, captured } = memoryIo();
    (await Output.create(io, "text", false)).result(data, () => ["line one", "line two"]);
    expect(captured.stdout).toBe("line one\nline two\n");
    expect(serializeJson(data)).toBe(`${JSON.stringify(data, null, 2)}\n`);
  });

  it("sends warnings to stderr so JSON on stdout stays parseable", async () => {
    const { io, captured } = memoryIo();
    const out = await Output.create(io, "json", false);
    out.result({ a: 1 }, () => "");
    out.warn("careful");
    expect(JSON.parse(captured.stdout)).toEqual({ a: 1 });
    expect(captured.stderr).toBe("zectre: warning: careful\n");
  });

  it("aligns table columns and does not pad the last one", () => {
    const rows = table(["ID", "NAME", "SCOPE"], [["1", "a long name", "admin"], ["22", "b", "read"]]);
    expect(rows).toEqual(["ID  NAME         SCOPE", "1   a long name  admin", "22  b            read"]);
    expect(fields([["Server", "http://x"], ["Org", "acme"]])).toEqual(["Server:  http://x", "Org:     acme"]);
  });

  it("formats timestamps to the minute in UTC", () => {
    expect(formatTime("2026-01-05T10:20:30.000Z", "never")).toBe("2026-01-05 10:20Z");
    expect(formatTime(null, "never")).toBe("never");
    expect(formatTime("garbage", "-")).toBe("garbage");
  });
});

describe("color", () => {
  it("is on only for a terminal without --no-color or NO_COLOR", () => {
    const tty = { write: () => true, isTTY: true };
    const pipe = { write: () => true, isTTY: false };
    expect(colorEnabled(tty, {}, false)).toBe(true);
    expect(colorEnabled(pipe, {}, false)).toBe(false);
    expect(colorEnabled(tty, {}, true)).toBe(false);
    expect(colorEnabled(tty, { NO_COLOR: "1" }, false)).toBe(false);
    expect(colorEnabled(tty, { NO_COLOR: "" }, false)).toBe(true);
  });

  it("wraps text in ANSI codes only when enabled", () => {
    expect(makeColors(true).bold("x")).toBe("\u001b[1mx\u001b[22m");
    expect(makeColors(false).bold("x")).toBe("x");
    expect(table(["A"], [["b"]], makeColors(true))[0]).toBe("\u001b[1mA\u001b[22m");
  });

  it("keeps server text on one line and free of terminal escapes", () => {
    expect(oneLine("bad\nthing\u001b[2J happened\r\n")).toBe("bad thing [2J happened");
    expect(table(["A"], [["x\ny"]])[1]).toBe("x y");
  });
});

describe("error lines", () => {
  const apiError = (status: number, code: string, message: string, retryAfterSeconds?: number) =>
    new ApiError({ status, code, message, details: undefined, retryAfterSeconds, requestId: "req-1" });

  it("quotes the server's message and code", () => {
    expect(describeError(apiError(403, "forbidden", "this action needs the 'admin' scope; the token has 'read'"))).toBe(
      "this action needs the 'admin' scope; the token has 'read' (forbidden)",
    );
    expect(describeError(apiError(429, "rate_limited", "too many requests", 12))).toBe("too many requests (rate_limited); retry after 12s");
    expect(describeError(apiError(500, "internal", "internal error"))).toBe("internal error (internal) [request id req-1]");
  });

  it("points usage errors at the right --help, and marks bugs as internal", () => {
    expect(describeError(new UsageError("unknown flag '--x'", ["token", "list"]))).toBe("unknown flag '--x'; see 'zectre token list --help'");
    expect(describeError(new CliError("plain\nproblem"))).toBe("plain problem");
    expect(describeError(new TypeError("oops"))).toBe("internal error: TypeError: oops (set ZECTRE_DEBUG=1 for a stack trace)");
  });

  it("reads Retry-After as seconds or as an HTTP date", () => {
    expect(parseRetryAfter("30")).toBe(30);
    expect(parseRetryAfter(null)).toBeUndefined();
    expect(parseRetryAfter("soon")).toBeUndefined();
    const now = Date.parse("2026-01-01T00:00:00Z");
    expect(parseRetryAfter("Thu, 01 Jan 2026 00:00:45 GMT", now)).toBe(45);
  });
});
