import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import type { JobRecord, JobSummary } from "../../protocol/jobs.ts";
import { buildJobArgs, formatDuration, formatReturnLines, summaryLine } from "../../cli/src/jobs.ts";
import { readSse, type SseMessage } from "../../cli/src/sse.ts";
import type { FakeJob } from "./helpers/fake-api.ts";
import { type CliResult, expectOneErrorLine, lines, runInProcess, startBinary } from "./helpers/run-cli.ts";
import { useFakeApiCli } from "./helpers/fake-api-cli.ts";

/**
 * `zectre run`, its `zectre TARGET FUNCTION` shorthand, and `zectre job ...`, against
 * the fake API's jobs: targets resolve over its FLEET with the real target grammar;
 * offline nodes (web-2, db-1) come back unreachable, online ones (web-1, mac-1)
 * answer after FAKE_DELAYS_MS, so `*` arrives as web-2, mac-1, db-1, web-1.
 */

const { api, flags, env, zectre, quick } = useFakeApiCli();

const SUMMARY = /^(\d+) targets?: (\d+) succeeded, (\d+) failed, (\d+) unreachable, (\d+) missing \(jid (\d{23})\) in \d+\.\ds(; job \w+)?$/;

function summaryOf(result: CliResult): { text: string; jid: string } {
  const all = lines(result.stderr);
  expect(all).toHaveLength(1);
  const text = all[0] as string;
  const match = SUMMARY.exec(text);
  if (!match) throw new Error(`not a summary line: ${text}`);
  return { text: text.replace(/ in \d+\.\ds/, " in Ts"), jid: match[6] as string };
}

/** The bodies of every POST /api/v1/jobs so far. */
const jobBodies = () => api.requests.filter((r) => r.method === "POST" && r.path === "/api/v1/jobs").map((r) => r.body);
const eventRequests = () => api.requests.filter((r) => r.path.endsWith("/events")).map((r) => Object.fromEntries(r.query));
const onlyJob = (): FakeJob => {
  const all = [...api.jobs.values()];
  expect(all).toHaveLength(1);
  return all[0] as FakeJob;
};
const cells = (row: string | undefined) => (row ?? "").split(/\s{2,}/);

async function until(condition: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const PING_ALL = "web-2: UNREACHABLE\nmac-1:\n    true\ndb-1: UNREACHABLE\nweb-1:\n    true\n";

describe("the event-stream reader", () => {
  async function collect(chunks: readonly string[]): Promise<SseMessage[]> {
    const bytes = chunks.map((chunk) => new TextEncoder().encode(chunk));
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const chunk of bytes) controller.enqueue(chunk);
        controller.close();
      },
    });
    const messages: SseMessage[] = [];
    for await (const message of readSse(body)) messages.push(message);
    return messages;
  }

  it("joins lines split anywhere across chunks, skips comments, and joins multi-line data", async () => {
    const text = ': hello\n\ndata: {"seq":1}\n\nevent: note\ndata: a\ndata:b\nid: 7\n\n:keepalive\n\ndata: {"seq":2,"text":"é"}\n\n';
    const whole = await collect([text]);
    expect(whole).toEqual([
      { event: "message", data: '{"seq":1}', id: "" },
      { event: "note", data: "a\nb", id: "7" },
      { event: "message", data: '{"seq":2,"text":"é"}', id: "7" },
    ]);
    // Every split point, including inside a multi-byte character (split by bytes here).
    const bytes = new TextEncoder().encode(text);
    for (let cut = 1; cut < bytes.length; cut++) {
      const decoder = new TextDecoder();
      const parts = [decoder.decode(bytes.slice(0, cut), { stream: true }), decoder.decode(bytes.slice(cut))];
      expect(await collect(parts), `cut at ${cut}`).toEqual(whole);
    }
    // One byte per chunk.
    expect(await collect([...text])).toEqual(whole);
  });

  it("accepts CRLF and CR line endings, even a CRLF split between chunks, and drops an unfinished message", async () => {
    expect(await collect(["data: one\r", "\n\r", "\ndata: two\r\rdata: three\n"])).toEqual([
      { event: "message", data: "one", id: "" },
      { event: "message", data: "two", id: "" },
    ]);
    expect(await collect(["\uFEFFdata: x\n\n", "data: cut off"])).toEqual([{ event: "message", data: "x", id: "" }]);
    expect(await collect([])).toEqual([]);
  });
});

describe("job arguments and return printing", () => {
  it("reads key=value as JSON-or-text keyword args, other words as positional, and joins cmd.run's command", () => {
    const path = ["run"];
    expect(buildJobArgs("test.echo", ["hello", "count=3", "flag=true", "name=web", "list=[1,2]", 'quoted="7"', "empty=", "x=1e999"], path)).toEqual({
      _: ["hello"],
      count: 3,
      flag: true,
      name: "web",
      list: [1, 2],
      quoted: "7",
      empty: "",
      x: "1e999",
    });
    expect(buildJobArgs("cmd.run", ["ls", "-la", "/tmp", "cwd=/srv"], path)).toEqual({ cmd: "ls -la /tmp", cwd: "/srv" });
    // A quoted command with '=' in it stays the command; upper-case assignments are never keyword args.
    expect(buildJobArgs("cmd.run", ["A=1 make"], path)).toEqual({ cmd: "A=1 make" });
    expect(buildJobArgs("cmd.run", ["FOO=bar", "env"], path)).toEqual({ cmd: "FOO=bar env" });
    expect(buildJobArgs("test.ping", [], path)).toEqual({});
    const proto = buildJobArgs("test.echo", ["__proto__=1"], path);
    expect(Object.keys(proto)).toEqual(["__proto__"]);
    expect(() => buildJobArgs("test.echo", ["a=1", "a=2"], path)).toThrow("keyword argument 'a' is given twice");
    expect(() => buildJobArgs("test.echo", ["_=x"], path)).toThrow(/'_' holds the positional arguments/);
    expect(() => buildJobArgs("cmd.run", ["ls", "cmd=pwd"], path)).toThrow(/either as words or as cmd=/);
  });

  it("prints strings raw, cmd.run's streams and retcode, JSON indented, and errors", () => {
    const ret = { retcode: 0, durationMs: 5, startedAt: null, synthetic: false };
    expect(formatReturnLines("test.echo", { ...ret, success: true, result: "a\nb\n", error: null })).toEqual(["a", "b"]);
    expect(formatReturnLines("cmd.run", { ...ret, success: false, retcode: 2, result: { stdout: "out\n", stderr: "err\n" }, error: null })).toEqual([
      "out",
      "err",
      "retcode: 2",
    ]);
    expect(formatReturnLines("cmd.run", { ...ret, success: false, retcode: 3, result: { stdout: "", stderr: "x" }, error: "command exited with code 3" })).toEqual([
      "x",
      "retcode: 3",
    ]);
    expect(formatReturnLines("cmd.run", { ...ret, success: false, retcode: null, result: { stdout: "half\n", stderr: "" }, error: "execution canceled" })).toEqual([
      "half",
      "error: execution canceled",
    ]);
    expect(formatReturnLines("cmd.run", { ...ret, success: true, result: { stdout: "", stderr: "" }, error: null })).toEqual([]);
    expect(formatReturnLines("grains.items", { ...ret, success: true, result: { os: "linux", cpus: [1] }, error: null })).toEqual([
      "{",
      '  "os": "linux",',
      '  "cpus": [',
      "    1",
      "  ]",
      "}",
    ]);
    expect(formatReturnLines("pkg.install", { ...ret, success: false, retcode: null, result: null, error: "not available\nat all" })).toEqual([
      "error: not available",
      "at all",
    ]);
    expect([formatDuration(120), formatDuration(1500), formatDuration(999.6), formatDuration(null)]).toEqual(["120ms", "1.5s", "1000ms", "-"]);
    const counts = { targets: 3, returned: 2, succeeded: 1, failed: 1, unreachable: 0 };
    expect(summaryLine(counts, "1".repeat(23), 1234, "partial")).toBe(
      `3 targets: 1 succeeded, 1 failed, 0 unreachable, 1 missing (jid ${"1".repeat(23)}) in 1.2s; job partial`,
    );
  });
});

describe("zectre run", () => {
  it("streams each return as it arrives, then the summary on stderr", async () => {
    const result = await zectre("run", "*", "test.ping");
    expect(result.stdout).toBe(PING_ALL);
    const { text, jid } = summaryOf(result);
    expect(text).toBe(`4 targets: 2 succeeded, 0 failed, 2 unreachable, 0 missing (jid ${jid}) in Ts`);
    expect(result.code).toBe(3);
    expect(onlyJob().record.jid).toBe(jid);
    expect(jobBodies()).toEqual([{ target: "*", function: "test.ping", args: {} }]);
    expect(eventRequests()).toEqual([{}]);
  });

  it("exits 0, 2, 3 or 4 as all succeed, some fail, some are unreachable or missing, or both", async () => {
    const [ok, failed, missing, both] = await Promise.all([
      zectre("-L", "web-1,mac-1", "test.ping"),
      zectre("web-1 or mac-1", "cmd.run", "make", "fail"),
      zectre("-L", "web-1", "test.sleep", "length=5", "--timeout", "1"),
      zectre("*", "pkg.install", "name=nginx"),
    ]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toBe("mac-1:\n    true\nweb-1:\n    true\n");
    expect(summaryOf(ok).text).toMatch(/^2 targets: 2 succeeded, 0 failed, 0 unreachable, 0 missing/);

    expect(failed.code).toBe(2);
    const failedOutput = "    partial output of make fail\n    it failed\n    badly\n    retcode: 2\n";
    expect(failed.stdout).toBe(`mac-1:\n${failedOutput}web-1:\n${failedOutput}`);
    expect(summaryOf(failed).text).toMatch(/^2 targets: 0 succeeded, 2 failed, 0 unreachable, 0 missing/);

    expect(missing.code).toBe(3);
    expect(missing.stdout).toBe("web-1: MISSING\n");
    expect(summaryOf(missing).text).toMatch(/^1 target: 0 succeeded, 0 failed, 0 unreachable, 1 missing \(jid \d{23}\) in Ts; job timeout$/);

    expect(both.code).toBe(4);
    expect(both.stdout).toBe(
      "web-2: UNREACHABLE\nmac-1:\n    error: 'pkg.install' is not available on mac-1\ndb-1: UNREACHABLE\nweb-1:\n    error: 'pkg.install' is not available on web-1\n",
    );
    expect(summaryOf(both).text).toMatch(/^4 targets: 0 succeeded, 2 failed, 2 unreachable, 0 missing/);

    expect(jobBodies()).toEqual(
      expect.arrayContaining([
        { targets: ["web-1", "mac-1"], function: "test.ping", args: {} },
        { target: "web-1 or mac-1", function: "cmd.run", args: { cmd: "make fail" } },
        { targets: ["web-1"], function: "test.sleep", args: { length: 5 }, timeout: 1 },
        { target: "*", function: "pkg.install", args: { name: "nginx" } },
      ]),
    );
  });

  it("prints only the jid with --async, and the create answer with --format json", async () => {
    const result = await zectre("run", "web*", "test.ping", "--async");
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    const job = onlyJob();
    expect(result.stdout).toBe(`${job.record.jid}\n`);
    expect(eventRequests()).toEqual([]);

    const json = await quick("web-1", "test.ping", "--async", "--format", "json");
    expect(json.code).toBe(0);
    const created = JSON.parse(json.stdout) as { jid: string; targets: string[]; status: string };
    expect(created).toEqual({ jid: expect.stringMatching(/^\d{23}$/), targets: ["web-1"], status: "running" });
    expect(api.jobs.has(created.jid)).toBe(true);
  });

  it("takes 'zectre TARGET FUNCTION ARGS' as the shorthand of run, with the same body", async () => {
    const [short, long] = await Promise.all([
      zectre("web*", "cmd.run", "ls -la /tmp", "--test", "--timeout", "30"),
      quick("run", "web*", "cmd.run", "ls -la /tmp", "--test", "--timeout", "30"),
    ]);
    const expected = "web-2: UNREACHABLE\nweb-1:\n    ran: ls -la /tmp\n";
    expect(short.stdout).toBe(expected);
    expect(long.stdout).toBe(expected);
    expect([short.code, long.code]).toEqual([3, 3]);
    const body = { target: "web*", function: "cmd.run", args: { cmd: "ls -la /tmp" }, timeout: 30, test: true };
    expect(jobBodies()).toEqual([body, body]);
    for (const job of api.jobs.values()) expect(job.record).toMatchObject({ timeout: 30, test: true });
  });

  it("sends keyword args, positional words, cmd.run's joined command and the flags in the body", async () => {
    const cases: [string[], unknown][] = [
      [["*", "test.echo", "hello", "world", "count=3", "opts={\"a\":[1]}", "name=web"], { target: "*", function: "test.echo", args: { _: ["hello", "world"], count: 3, opts: { a: [1] }, name: "web" } }],
      [["--format", "json", "mac-1", "cmd.run", "--", "ls", "-la", "/tmp"], { target: "mac-1", function: "cmd.run", args: { cmd: "ls -la /tmp" } }],
      [["mac-1", "cmd.run", "echo a=b", "cwd=/srv"], { target: "mac-1", function: "cmd.run", args: { cmd: "echo a=b", cwd: "/srv" } }],
      [["run", "-L", "mac-1,web-1,mac-1", "test.ping", "--timeout", "5m", "--test"], { targets: ["mac-1", "web-1"], function: "test.ping", args: {}, timeout: 300, test: true }],
    ];
    for (const [args, body] of cases) {
      const result = await quick("--async", ...args);
      expect(result.code, args.join(" ")).toBe(0);
      expect(jobBodies().at(-1), args.join(" ")).toEqual(body);
    }
  });

  it("refuses bad lines before any request, and relays the server's refusals as one line", async () => {
    expectOneErrorLine(await quick("run", "*", "ping"), "zectre: error: invalid function 'ping': functions look like module.function, e.g. test.ping; see 'zectre run --help'");
    expectOneErrorLine(await quick("*", "test.ping", "--timeout", "0"), /^zectre: error: invalid --timeout '0': give seconds/);
    expectOneErrorLine(await quick("-L", "web-1,bad id", "test.ping"), /^zectre: error: invalid node id 'bad id' in the list/);
    expectOneErrorLine(await quick("run", "*"), "zectre: error: missing argument FUNCTION; see 'zectre run --help'");
    // Without a module.function second word the first stays an unknown command.
    expectOneErrorLine(await quick("web-1", "ping"), "zectre: error: unknown command 'web-1'; see 'zectre --help'");
    expect(api.requests).toEqual([]);

    expectOneErrorLine(await zectre("nothing*", "test.ping"), "zectre: error: no nodes matched target (bad_request)");
    expectOneErrorLine(await quick("web-1 and (", "test.ping"), "zectre: error: bad target expression: expected a target after '(' (at position 11) (bad_request)");
    const reader = await runInProcess(["--url", api.url, "--token", api.readToken, "*", "test.ping"]);
    expectOneErrorLine(reader, "zectre: error: this action needs the 'operate' scope; the token has 'read' (forbidden)");
    expect(api.jobs.size).toBe(0);
  });

  it("reopens a dropped stream with since= the last seq, printing every return once", async () => {
    // Cut the first stream after job.created and four target.dispatched events, then the next one after one more.
    api.dropNextStream(5, "destroy");
    api.dropNextStream(1, "end");
    const result = await zectre("*", "test.ping");
    expect(result.stdout).toBe(PING_ALL);
    expect(result.code).toBe(3);
    expect(summaryOf(result).text).toMatch(/^4 targets: 2 succeeded, 0 failed, 2 unreachable, 0 missing/);
    expect(eventRequests()).toEqual([{}, { since: "5" }, { since: "6" }]);
  });

  it("prints the final record with --format json or yaml, the summary still on stderr", async () => {
    const result = await zectre("-L", "web-1,db-1", "test.echo", "hi", "--format", "yaml");
    expect(result.code).toBe(3);
    const { job } = parseYaml(result.stdout) as { job: JobRecord };
    expect(job).toMatchObject({ function: "test.echo", status: "failed", counts: { targets: 2, returned: 2, succeeded: 1, unreachable: 1 } });
    expect(job.targets.map((t) => [t.nodeId, t.return?.result, t.return?.synthetic])).toEqual([
      ["web-1", "hi", false],
      ["db-1", null, true],
    ]);
    expect(summaryOf(result).jid).toBe(job.jid);
  });

  it("stops following on Ctrl-C, says how to watch or kill the job, and leaves it running", async () => {
    const { child, result } = startBinary([...flags(), "-L", "web-1", "test.sleep", "length=30"], { env: env() });
    await until(() => [...api.jobs.values()].some((job) => job.watchers.size > 0), "the CLI to open the event stream");
    child.kill("SIGINT");
    const interrupted = await result;
    const job = onlyJob();
    expect(interrupted.code).toBe(1);
    expect(interrupted.stdout).toBe("");
    expect(interrupted.stderr).toBe(
      `\nzectre: stopped following job ${job.record.jid}; it keeps running.\n` +
        `  watch it:  zectre job watch ${job.record.jid}\n` +
        `  stop it:   zectre job kill ${job.record.jid}\n`,
    );
    expect(job.record.status).toBe("running");
    expect(api.requests.some((r) => r.path.endsWith("/cancel"))).toBe(false);
  });
});

describe("zectre job", () => {
  it("lists jobs newest first and the active ones, or says there are none", async () => {
    const [noJobs, noActive] = await Promise.all([zectre("job", "list"), zectre("job", "active")]);
    expect(noJobs).toEqual({ code: 0, stdout: "No jobs found.\n", stderr: "" });
    expect(noActive).toEqual({ code: 0, stdout: "No active jobs.\n", stderr: "" });

    expect((await quick("-L", "web-1,mac-1", "test.ping")).code).toBe(0);
    expect((await quick("run", "*", "test.sleep", "length=30", "--async")).code).toBe(0);
    const [done, running] = [...api.jobs.values()].map((job) => job.record) as [JobRecord, JobRecord];
    const user = done.user;
    expect(user).toMatch(/^token:[0-9a-f]{16}\(admin\)$/);

    const [list, active, limited] = await Promise.all([zectre("job", "list"), quick("job", "active"), quick("job", "list", "--limit", "1", "--format", "json")]);
    const listed = lines(list.stdout);
    expect(listed[0]).toMatch(/^JID +FUNCTION +TARGET +STATE +USER$/);
    expect(listed.slice(1).map(cells)).toEqual([
      [running.jid, "test.sleep", "*", "running", user],
      [done.jid, "test.ping", "L@web-1,mac-1", "complete", user],
    ]);
    const activeRows = lines(active.stdout);
    expect(activeRows[0]).toMatch(/^JID +FUNCTION +TARGETS +STATUS$/);
    expect(activeRows.slice(1).map(cells)).toEqual([[running.jid, "test.sleep", "4", "running"]]);
    expect(api.requests.find((r) => r.path === "/api/v1/jobs" && r.query.get("limit") === "1")).toBeDefined();
    expect((JSON.parse(limited.stdout) as { jobs: JobSummary[] }).jobs.map((j) => j.jid)).toEqual([running.jid]);

    expectOneErrorLine(await quick("job", "list", "--limit", "many"), /^zectre: error: invalid --limit 'many'/);
  });

  it("shows a job's fields as JSON and a row per target", async () => {
    const run = await quick("*", "cmd.run", "make fail", "--timeout", "10");
    expect(run.code).toBe(4);
    const { record } = onlyJob();
    const result = await zectre("job", "show", record.jid);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    const [json, table] = result.stdout.split("\n\nReturns:\n") as [string, string];
    const { targets, ...fields } = structuredClone(record);
    expect(JSON.parse(json)).toEqual(fields);
    expect(lines(table)).toEqual([
      "NODE   STATUS       SUCCESS  DURATION",
      "web-1  returned     no       180ms",
      "web-2  unreachable  -        -",
      "db-1   unreachable  -        -",
      "mac-1  returned     no       80ms",
    ]);
    expect(targets).toHaveLength(4);

    const json2 = await quick("job", "show", record.jid, "--format", "json");
    expect((JSON.parse(json2.stdout) as { job: JobRecord }).job).toEqual(structuredClone(record));
    expectOneErrorLine(await quick("job", "show", "12345"), /^zectre: error: invalid job id '12345': a jid is 23 digits/);
    expectOneErrorLine(await quick("job", "show", "2".repeat(23)), `zectre: error: job '${"2".repeat(23)}' not found (not_found)`);
  });

  it("kills a running job, then refuses to kill it again", async () => {
    expect((await quick("-L", "web-1", "test.sleep", "length=30", "--async")).code).toBe(0);
    const { record } = onlyJob();
    const killed = await zectre("job", "kill", record.jid);
    expect(killed).toEqual({ code: 0, stdout: `Cancel signal sent for job ${record.jid}\n`, stderr: "" });
    expect(api.requests.at(-1)).toMatchObject({ method: "POST", path: `/api/v1/jobs/${record.jid}/cancel`, body: {} });
    expect(record.status).toBe("canceled");
    expect((await quick("job", "active")).stdout).toBe("No active jobs.\n");
    expectOneErrorLine(await quick("job", "kill", record.jid), `zectre: error: job ${record.jid} already finished (canceled) (conflict)`);
  });

  it("watches a job from the start, live or replayed, with run's output and exit code", async () => {
    expect((await quick("*", "test.sleep", "length=30", "--async")).code).toBe(0);
    const { record } = onlyJob();
    const watching = startBinary([...flags(), "job", "watch", record.jid], { env: env() });
    await until(() => (api.jobs.get(record.jid)?.watchers.size ?? 0) > 0, "the watcher to connect");
    // The watcher is connected to a running job: the rest of its output arrives live.
    expect(record.status).toBe("running");
    expect((await quick("job", "kill", record.jid)).code).toBe(0);
    const live = await watching.result;
    expect(live.stdout).toBe("web-2: UNREACHABLE\ndb-1: UNREACHABLE\nweb-1: MISSING\nmac-1: MISSING\n");
    expect(live.code).toBe(3);
    expect(summaryOf(live).text).toBe(`4 targets: 0 succeeded, 0 failed, 2 unreachable, 2 missing (jid ${record.jid}) in Ts; job canceled`);

    const replay = await zectre("job", "watch", record.jid);
    expect(replay).toEqual({ ...live, stderr: replay.stderr });
    expect(summaryOf(replay).text).toBe(summaryOf(live).text);
    expect(eventRequests()).toEqual([{}, {}]);

    const json = await quick("job", "watch", record.jid, "--format", "json");
    expect(json.code).toBe(3);
    expect((JSON.parse(json.stdout) as { job: JobRecord }).job).toMatchObject({ jid: record.jid, status: "canceled" });
    expectOneErrorLine(await quick("job", "watch", "3".repeat(23)), `zectre: error: job '${"3".repeat(23)}' not found (not_found)`);
  });

  it("documents every command with examples", async () => {
    for (const words of [["run"], ["job", "list"], ["job", "active"], ["job", "show"], ["job", "kill"], ["job", "watch"]]) {
      const help = await quick(...words, "--help");
      expect(help.code).toBe(0);
      expect(help.stdout, words.join(" ")).toMatch(/\nExamples:\n {2}zectre /);
    }
    expect((await quick("--help")).stdout).toMatch(/\n {2}run +Run a function[^\n]*\n {2}job \.\.\. +List, inspect, watch and kill jobs\n/);
  });
});
