import { chmodSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { commandOptions, runCommand } from "../../agent/src/jobs/functions/cmd.ts";
import { parseMode } from "../../agent/src/jobs/functions/file.ts";
import { builtinFunctions } from "../../agent/src/jobs/functions/index.ts";
import { FRAME_TRUNCATION_MARKER, fitToFrame, frameBytes, type ReturnEnvelope } from "../../agent/src/jobs/returns.ts";
import { FunctionOutcome, type JobFunction } from "../../agent/src/jobs/types.ts";
import { MAX_FRAME_BYTES } from "../../protocol/agent-wire.ts";
import { MAX_OUTPUT_BYTES, ReturnMessage, TRUNCATION_MARKER } from "../../protocol/jobs.ts";
import type { JsonObject } from "../../protocol/json.ts";
import { FIXED_FACTS, groupMembers, processAlive, testJid, useJobRunners } from "./helpers/agent-jobs.ts";
import { until } from "./helpers/agent-control-plane.ts";
import { useTempDirs } from "./helpers/run-cli.ts";

/** Each built-in function through the runner: results, errors, and the shape of its return. */

const tempDir = useTempDirs();
const makeRunner = useJobRunners(tempDir);

/** One function called directly, outside the runner (no frame fitting). */
async function callFunction(name: string, args: JsonObject): Promise<unknown> {
  const fn = builtinFunctions().find((f) => f.name === name);
  if (!fn) throw new Error(`no function ${name}`);
  return fn.run(args, {
    test: false,
    jid: testJid(),
    signal: new AbortController().signal,
    facts: () => FIXED_FACTS,
    settings: () => null,
    functions: () => [],
    killGraceMs: 2000,
  });
}

describe("test.*", () => {
  it("test.ping returns true with retcode 0, a measured duration and an ISO start", async () => {
    const h = makeRunner();
    const before = Date.now();
    const ret = await h.run("test.ping");
    expect(ret).toMatchObject({ success: true, retcode: 0, result: true, error: null });
    expect(ret.durationMs).toBeGreaterThanOrEqual(0);
    expect(ret.durationMs).toBeLessThan(1000);
    expect(Date.parse(ret.startedAt ?? "")).toBeGreaterThanOrEqual(before - 1);
    expect(ret.startedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it("test.echo returns text= or the first positional argument, and fails without one", async () => {
    const h = makeRunner();
    expect((await h.run("test.echo", { text: "hi there" })).result).toBe("hi there");
    expect((await h.run("test.echo", { _: ["hello", "ignored"] })).result).toBe("hello");
    expect((await h.run("test.echo", { _: [42] })).result).toBe("42");
    expect(await h.run("test.echo")).toMatchObject({ success: false, retcode: 1, result: null, error: "test.echo needs text (text= or positional argument 1)" });
    expect(await h.run("test.echo", { text: { nested: true } })).toMatchObject({ success: false, error: "text must be a string" });
  });

  it("test.sleep sleeps for seconds= or a positional number and checks its argument", async () => {
    const h = makeRunner();
    const slept = await h.run("test.sleep", { seconds: 0.15 });
    expect(slept).toMatchObject({ success: true, result: true });
    expect(slept.durationMs).toBeGreaterThanOrEqual(140);
    expect((await h.run("test.sleep", { _: ["0.05"] })).result).toBe(true);
    expect(await h.run("test.sleep", { _: ["soon"] })).toMatchObject({ success: false, error: "seconds must be a number" });
    expect(await h.run("test.sleep", { seconds: -1 })).toMatchObject({ success: false, error: "seconds must be between 0 and 86400" });
    expect(await h.run("test.sleep")).toMatchObject({ success: false, error: "test.sleep needs seconds (seconds= or positional argument 1)" });
  });
});

describe("cmd.run", () => {
  it("returns stdout, stderr and the exit code; success only for 0", async () => {
    const h = makeRunner();
    const ok = await h.run("cmd.run", { cmd: "echo out; echo err >&2" });
    expect(ok).toMatchObject({ success: true, retcode: 0, error: null, result: { stdout: "out\n", stderr: "err\n", retcode: 0 } });

    const failing = await h.run("cmd.run", { cmd: "echo partial; exit 3" });
    expect(failing).toMatchObject({ success: false, retcode: 3, error: "command exited with code 3", result: { stdout: "partial\n", stderr: "", retcode: 3 } });

    // Positional arguments are joined with spaces.
    expect((await h.run("cmd.run", { _: ["printf", "'%s-%s'", "a", "b"] })).result).toEqual({ stdout: "a-b", stderr: "", retcode: 0 });
  });

  it("runs in cwd=, with env= on top of the agent's environment, and with shell=", async () => {
    const h = makeRunner();
    const dir = tempDir();
    const inDir = await h.run("cmd.run", { cmd: "pwd", cwd: dir });
    expect(inDir.result).toMatchObject({ stdout: `${dir}\n` });

    process.env.ZECTRE_JOBS_TEST_INHERITED = "from-agent";
    try {
      const withEnv = await h.run("cmd.run", {
        cmd: 'echo "$GREETING $COUNT ${ZECTRE_JOBS_TEST_INHERITED:-unset} ${HOME:+home-set}"',
        env: { GREETING: "hello", COUNT: 3, HOME: null },
      });
      expect(withEnv.result).toMatchObject({ stdout: "hello 3 from-agent \n", retcode: 0 });
    } finally {
      delete process.env.ZECTRE_JOBS_TEST_INHERITED;
    }

    expect((await h.run("cmd.run", { cmd: "echo $0", shell: "/bin/bash" })).result).toMatchObject({ stdout: "/bin/bash\n" });
  });

  it("reports bad options and a missing shell as failed jobs, never as a crash", async () => {
    const h = makeRunner();
    expect(await h.run("cmd.run")).toMatchObject({ success: false, retcode: 1, error: "cmd.run needs a command (cmd= or positional arguments)" });
    expect(await h.run("cmd.run", { cmd: "pwd", cwd: join(tempDir(), "missing") })).toMatchObject({ success: false, error: expect.stringMatching(/^cwd '.*missing' is not a directory$/) });
    expect(await h.run("cmd.run", { cmd: "pwd", cwd: "relative" })).toMatchObject({ success: false, error: "cwd must be absolute, got 'relative'" });
    expect(await h.run("cmd.run", { cmd: "true", env: ["A=1"] })).toMatchObject({ success: false, error: "env must be an object of variable names to values" });
    expect(await h.run("cmd.run", { cmd: "true", timeout: 0 })).toMatchObject({ success: false, error: "timeout must be a positive number of seconds" });
    const noShell = await h.run("cmd.run", { cmd: "true", shell: "/nonexistent/sh" });
    expect(noShell).toMatchObject({ success: false, retcode: null, result: null });
    expect(noShell.error).toMatch(/^cannot start \/nonexistent\/sh: .*ENOENT/);
    // The runner still works afterwards.
    expect((await h.run("test.ping")).success).toBe(true);
  });

  it("reports a command killed by a signal from elsewhere with 128 + its number", async () => {
    const h = makeRunner();
    expect(await h.run("cmd.run", { cmd: "kill -KILL $$" })).toMatchObject({ success: false, retcode: 137, error: "command killed by SIGKILL" });
  });

  it("caps each stream at 1 MiB with the marker, and keeps the return within one frame", async () => {
    const options = commandOptions({ cmd: "head -c 1500000 /dev/zero | tr '\\0' a; head -c 1200000 /dev/zero | tr '\\0' b >&2" });
    const outcome = await runCommand(options, new AbortController().signal, 2000);
    const result = outcome.result as { stdout: string; stderr: string; retcode: number };
    expect(result.retcode).toBe(0);
    expect(result.stdout.length).toBe(MAX_OUTPUT_BYTES + TRUNCATION_MARKER.length);
    expect(result.stdout === `${"a".repeat(MAX_OUTPUT_BYTES)}${TRUNCATION_MARKER}`).toBe(true);
    expect(result.stderr === `${"b".repeat(MAX_OUTPUT_BYTES)}${TRUNCATION_MARKER}`).toBe(true);

    // Two full streams do not fit one frame: the runner cuts both, fairly, and says so.
    const h = makeRunner();
    const ret = await h.run("cmd.run", { cmd: "head -c 1500000 /dev/zero | tr '\\0' a; head -c 1200000 /dev/zero | tr '\\0' b >&2" });
    const message = h.returns.at(-1) as ReturnEnvelope;
    expect(frameBytes(message)).toBeLessThanOrEqual(MAX_FRAME_BYTES);
    expect(ReturnMessage.safeParse(message).success).toBe(true);
    const fitted = ret.result as { stdout: string; stderr: string };
    expect(ret.success).toBe(true);
    expect(fitted.stdout.endsWith(FRAME_TRUNCATION_MARKER)).toBe(true);
    expect(fitted.stderr.endsWith(FRAME_TRUNCATION_MARKER)).toBe(true);
    expect(fitted.stdout.length).toBe(fitted.stderr.length);
    expect(fitted.stdout.length).toBeGreaterThan(MAX_OUTPUT_BYTES / 2 - 8192);
  });

  it("kills the whole process group when its own timeout= passes", async () => {
    const h = makeRunner();
    const pidFile = join(tempDir(), "pgid");
    const started = Date.now();
    const ret = await h.run("cmd.run", { cmd: `echo $$ > ${pidFile}; echo before; sleep 30 & sleep 30`, timeout: 0.4 });
    expect(Date.now() - started).toBeLessThan(3000);
    expect(ret).toMatchObject({ success: false, retcode: null, error: "timed out after 0.4s", result: { stdout: "before\n", retcode: null } });
    const pgid = Number(readFileSync(pidFile, "utf8"));
    expect(groupMembers(pgid)).toEqual([]);
    expect(processAlive(pgid)).toBe(false);
  });

  it("escalates to SIGKILL after the grace period for a group that ignores SIGTERM", async () => {
    const h = makeRunner({ killGraceMs: 200 });
    const pidFile = join(tempDir(), "pgid");
    const started = Date.now();
    const ret = await h.run("cmd.run", { cmd: `trap '' TERM; echo $$ > ${pidFile}; sleep 30 & sleep 30`, timeout: 0.2 });
    const elapsed = Date.now() - started;
    expect(ret).toMatchObject({ success: false, error: "timed out after 0.2s" });
    // 200 ms of timeout plus 200 ms of grace: the SIGTERM alone did nothing.
    expect(elapsed).toBeGreaterThanOrEqual(390);
    expect(elapsed).toBeLessThan(3000);
    expect(groupMembers(Number(readFileSync(pidFile, "utf8")))).toEqual([]);
  });
});

describe("facts.* and settings.*", () => {
  it("facts.items, facts.get (dotted, custom by its own name) and facts.keys", async () => {
    const h = makeRunner();
    expect((await h.run("facts.items")).result).toEqual(FIXED_FACTS);
    expect((await h.run("facts.get", { key: "os" })).result).toBe(FIXED_FACTS.os);
    expect((await h.run("facts.get", { _: ["disk.0.mount"] })).result).toBe("/");
    expect((await h.run("facts.get", { _: ["custom.rack"] })).result).toBe("r1");
    expect((await h.run("facts.get", { _: ["role"] })).result).toBe("web");
    expect(await h.run("facts.get", { key: "os.nope" })).toMatchObject({ success: false, retcode: 1, error: "no fact 'os.nope'" });
    expect(await h.run("facts.get")).toMatchObject({ success: false, error: "facts.get needs key (key= or positional argument 1)" });
    const keys = (await h.run("facts.keys")).result as string[];
    expect(keys).toEqual([...keys].sort());
    expect(keys).toEqual(expect.arrayContaining(["os", "hostname", "disk", "custom.rack", "custom.role"]));
    expect(keys).not.toContain("custom");
  });

  it("settings.items and settings.get read the current snapshot", async () => {
    const h = makeRunner();
    expect((await h.run("settings.items")).result).toEqual({});
    expect(await h.run("settings.get", { _: ["log.level"] })).toMatchObject({ success: false, error: "no setting 'log.level'" });
    h.settings = { version: "v1", settings: { "log.level": "debug", limits: { cpu: 2 } }, receivedAt: new Date().toISOString() };
    expect((await h.run("settings.items")).result).toEqual({ "log.level": "debug", limits: { cpu: 2 } });
    expect((await h.run("settings.get", { _: ["log.level"] })).result).toBe("debug");
    expect((await h.run("settings.get", { key: "limits.cpu" })).result).toBe(2);
  });
});

describe("file.*", () => {
  it("file.read returns the text, cuts big files at 1 MiB with the marker, and names what went wrong", async () => {
    const h = makeRunner();
    const dir = tempDir();
    writeFileSync(join(dir, "small.txt"), "héllo\n");
    expect(await h.run("file.read", { _: [join(dir, "small.txt")] })).toMatchObject({ success: true, result: "héllo\n" });

    // A two-byte character straddles the limit: the cut does not leave half of it. (Called directly:
    // a whole 1 MiB result does not fit one return frame, which the runner then cuts further.)
    writeFileSync(join(dir, "big.txt"), `${"x".repeat(MAX_OUTPUT_BYTES - 1)}é and more`);
    const big = await callFunction("file.read", { path: join(dir, "big.txt") });
    expect(big === `${"x".repeat(MAX_OUTPUT_BYTES - 1)}${TRUNCATION_MARKER}`).toBe(true);
    writeFileSync(join(dir, "exact.txt"), "y".repeat(MAX_OUTPUT_BYTES));
    expect((await callFunction("file.read", { path: join(dir, "exact.txt") })) === "y".repeat(MAX_OUTPUT_BYTES)).toBe(true);
    const viaRunner = await h.run("file.read", { path: join(dir, "big.txt") });
    expect(viaRunner.success).toBe(true);
    expect(String(viaRunner.result).endsWith(FRAME_TRUNCATION_MARKER)).toBe(true);
    expect(frameBytes(h.returns.at(-1) as ReturnEnvelope)).toBeLessThanOrEqual(MAX_FRAME_BYTES);

    expect(await h.run("file.read", { path: join(dir, "nope") })).toMatchObject({ success: false, retcode: 1, error: `no such file: ${join(dir, "nope")}` });
    expect(await h.run("file.read", { path: dir })).toMatchObject({ success: false, error: `${dir} is a directory` });
    expect(await h.run("file.read", { path: "relative.txt" })).toMatchObject({ success: false, error: "path must be absolute, got 'relative.txt'" });
    if (process.getuid?.() !== 0) {
      writeFileSync(join(dir, "secret"), "x");
      chmodSync(join(dir, "secret"), 0o000);
      expect(await h.run("file.read", { path: join(dir, "secret") })).toMatchObject({ success: false, error: `permission denied: ${join(dir, "secret")}` });
    }
  });

  it("file.write writes contents with an octal mode, and refuses a missing parent directory", async () => {
    const h = makeRunner();
    const dir = tempDir();
    const path = join(dir, "out.conf");
    expect(await h.run("file.write", { path, contents: "a=1\n", mode: "0640" })).toMatchObject({
      success: true,
      retcode: 0,
      result: { path, bytes: 4, mode: "0640" },
    });
    expect(readFileSync(path, "utf8")).toBe("a=1\n");
    expect(statSync(path).mode & 0o7777).toBe(0o640);

    // Positional path and contents; a numeric mode is read as octal digits, as Salt and YAML write it.
    expect(await h.run("file.write", { _: [path, "b=2\n"], mode: 600 })).toMatchObject({ success: true, result: { bytes: 4, mode: "0600" } });
    expect(readFileSync(path, "utf8")).toBe("b=2\n");

    expect(await h.run("file.write", { path: join(dir, "no", "such", "f"), contents: "" })).toMatchObject({
      success: false,
      error: `parent directory ${join(dir, "no", "such")} does not exist`,
    });
    expect(await h.run("file.write", { path, contents: "x", mode: "rw-r--r--" })).toMatchObject({ success: false, error: `mode must be octal like '0644', got "rw-r--r--"` });
    expect(await h.run("file.write", { path })).toMatchObject({ success: false, error: "file.write needs contents (contents= or positional argument 2)" });
    expect(readFileSync(path, "utf8")).toBe("b=2\n");
    expect([parseMode("0o755"), parseMode("755"), parseMode(1777)]).toEqual([0o755, 0o755, 0o1777]);
    expect(() => parseMode(89)).toThrow("mode must be octal");
  });

  it("file.stat describes files, directories and symlinks, and missing paths", async () => {
    const h = makeRunner();
    const dir = tempDir();
    const file = join(dir, "f");
    writeFileSync(file, "12345");
    chmodSync(file, 0o604);
    mkdirSync(join(dir, "d"));
    symlinkSync(file, join(dir, "link"));
    const stat = (await h.run("file.stat", { path: file })).result as Record<string, unknown>;
    expect(stat).toEqual({ exists: true, type: "file", size: 5, mode: "0604", mtime: statSync(file).mtime.toISOString() });
    expect((await h.run("file.stat", { _: [join(dir, "d")] })).result).toMatchObject({ exists: true, type: "directory" });
    expect((await h.run("file.stat", { _: [join(dir, "link")] })).result).toMatchObject({ exists: true, type: "symlink" });
    expect((await h.run("file.stat", { _: [join(dir, "missing")] })).result).toEqual({ exists: false, type: null, size: null, mode: null, mtime: null });
    expect((await h.run("file.stat", { _: [join(file, "under-a-file")] })).result).toMatchObject({ exists: false });
  });
});

describe("the function table and failures", () => {
  it("sys.list_functions lists every function with a one-line doc and whether it mutates", async () => {
    const h = makeRunner();
    const list = (await h.run("sys.list_functions")).result as { name: string; doc: string; mutates: boolean }[];
    expect(list.map((f) => f.name)).toEqual([
      "cmd.run",
      "facts.get",
      "facts.items",
      "facts.keys",
      "file.read",
      "file.stat",
      "file.write",
      "settings.get",
      "settings.items",
      "sys.list_functions",
      "test.echo",
      "test.ping",
      "test.sleep",
    ]);
    expect(list.filter((f) => f.mutates).map((f) => f.name)).toEqual(["cmd.run", "file.write"]);
    for (const f of list) {
      expect(f.doc).toMatch(/^\S.*\.$/);
      expect(f.doc).not.toContain("\n");
    }
    expect(builtinFunctions().map((f) => f.name)).not.toContain("state.apply");
  });

  it("answers an unknown function with 'not available' and no retcode", async () => {
    const h = makeRunner();
    expect(await h.run("state.apply", { _: ["web"] })).toMatchObject({ success: false, retcode: null, result: null, error: "function 'state.apply' is not available" });
  });

  it("turns thrown errors into one-line failures and results into plain JSON", async () => {
    const odd: JobFunction[] = [
      { name: "x.multiline", doc: "Throws.", mutates: false, run: () => Promise.reject(new TypeError("first line\nsecond\tline")) },
      { name: "x.sync_throw", doc: "Throws.", mutates: false, run: () => { throw new Error("boom"); } },
      { name: "x.non_error", doc: "Throws.", mutates: false, run: () => { throw "just a string"; } },
      { name: "x.odd_json", doc: "Odd.", mutates: false, run: () => ({ big: 10n, nan: Number.NaN, gone: undefined, when: new Date(0), list: [undefined, 1] }) as unknown as object },
      { name: "x.undefined", doc: "Nothing.", mutates: false, run: () => undefined as unknown as null },
      {
        name: "x.cycle",
        doc: "Cycle.",
        mutates: false,
        run: () => {
          const a: Record<string, unknown> = {};
          a.self = a;
          return a as object;
        },
      },
      { name: "x.outcome", doc: "Explicit.", mutates: false, run: () => new FunctionOutcome({ success: false, retcode: 7, result: { partial: true }, error: "half\ndone" }) },
    ];
    const h = makeRunner({ functions: odd });
    expect(await h.run("x.multiline")).toMatchObject({ success: false, retcode: 1, error: "first line second line" });
    expect(await h.run("x.sync_throw")).toMatchObject({ success: false, error: "boom" });
    expect(await h.run("x.non_error")).toMatchObject({ success: false, error: "just a string" });
    expect((await h.run("x.odd_json")).result).toEqual({ big: "10", nan: null, when: "1970-01-01T00:00:00.000Z", list: [null, 1] });
    expect(await h.run("x.undefined")).toMatchObject({ success: true, result: null });
    expect(await h.run("x.cycle")).toMatchObject({ success: false, result: null, error: expect.stringMatching(/^the result is not JSON: /) });
    expect(await h.run("x.outcome")).toMatchObject({ success: false, retcode: 7, result: { partial: true }, error: "half done" });
    for (const message of h.returns) expect(ReturnMessage.safeParse(message).success).toBe(true);
  });

  it("fits a result that cannot fit a frame at all by dropping it for an error", () => {
    const message: ReturnEnvelope = {
      type: "return",
      v: 1,
      id: "return.x.1",
      jid: testJid(),
      epoch: 1,
      return: { success: true, retcode: 0, result: Array.from({ length: 300_000 }, (_, i) => i), error: null, durationMs: 1, startedAt: null },
    };
    const fitted = fitToFrame(message);
    expect(fitted.return).toMatchObject({ success: false, result: null, error: expect.stringMatching(/^the result is too large to return \(\d+ bytes\)$/) });
    // Small messages pass through untouched.
    const small = { ...message, return: { ...message.return, result: "ok" } };
    expect(fitToFrame(small)).toBe(small);
  });
});

describe("logging", () => {
  it("logs one line when a job starts and one when it finishes", async () => {
    const h = makeRunner();
    const jid = testJid();
    await h.run("test.echo", { text: "secret-ish" }, { jid });
    await until(() => h.logs.some((line) => line.msg === "job finished"), "the finish line");
    const lines = h.logs.filter((line) => line.jid === jid);
    expect(lines.map((line) => line.msg)).toEqual(["job started", "job finished"]);
    expect(lines[0]).toMatchObject({ level: "info", jid, epoch: 1, function: "test.echo", test: false });
    expect(lines[1]).toMatchObject({ level: "info", jid, function: "test.echo", success: true, retcode: 0, durationMs: expect.any(Number) });
    // Arguments can hold secrets: they are not logged.
    expect(JSON.stringify(h.logs)).not.toContain("secret-ish");
  });
});
