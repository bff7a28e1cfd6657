import { beforeEach, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { ApiClient } from "../../cli/src/client.ts";
import { runWithFakeArtifacts, until } from "./helpers/deploy-cli.ts";
import { TOKENS, useFakeDeployApi } from "./helpers/fake-deploy-api.ts";
import { expectOk, expectOneErrorLine, lines, runInProcess, startBinary } from "./helpers/run-cli.ts";

/** `zectre logs APP`: stored lines, filters, NDJSON, and following with -f (through a dropped stream) until Ctrl-C. */

const { api, configDir, tempDir } = useFakeDeployApi();

const D1 = "dmwtta1wu3k9x";
const D2 = "dmwtta2abcdef";
const T1 = "tmwtta1wu3k9x";
const T2 = "tmwtta2abcdef";

beforeEach(async () => {
  await new ApiClient({ url: api.url, token: TOKENS.operate }).createApp("web");
  api.addLog("web", { nodeId: "web-1", taskId: T1, deploymentId: D1, stream: "stdout", ts: "2026-11-23T10:00:00.123Z", line: "listening on 41000" });
  api.addLog("web", { nodeId: "web-2", taskId: T2, deploymentId: D2, stream: "stderr", ts: "2026-11-23T10:00:01.000Z", line: "warning: \u001b[31mred\u001b[0m" });
});

const args = (...rest: string[]) => ["--url", api.url, "--token", TOKENS.read, ...rest];
const zectre = (...rest: string[]) => runInProcess(args(...rest), { env: { ZECTRE_CONFIG_DIR: configDir() } });
const logRequests = () => api.requests.filter((r) => r.path.endsWith("/logs")).map((r) => Object.fromEntries(r.query));

describe("zectre logs", () => {
  it("prints stored lines compactly, marks stderr and escapes control characters", async () => {
    expect(expectOk(await zectre("logs", "web"))).toBe(
      `2026-11-23T10:00:00Z web-1/${T1} | listening on 41000\n2026-11-23T10:00:01Z web-2/${T2} ! warning: \\x1b[31mred\\x1b[0m\n`,
    );
    expect(logRequests()).toEqual([{}]);
  });

  it("passes --deployment, --since and --limit on, and checks them first", async () => {
    expect(lines(expectOk(await zectre("logs", "web", "--deployment", D2, "--since", "2026-11-23T09:00:00Z", "-n", "5")))).toHaveLength(1);
    expect(logRequests()).toEqual([{ deployment: D2, since: "2026-11-23T09:00:00Z", limit: "5" }]);
    await zectre("logs", "web", "--since", "10m");
    expect(logRequests()[1]).toEqual({ since: "10m" });

    expectOneErrorLine(await zectre("logs", "web", "--since", "yesterday"), /invalid --since 'yesterday': give a duration such as 10m/);
    expectOneErrorLine(await zectre("logs", "web", "--limit", "0"), /invalid --limit '0': give a whole number from 1 to 10000/);
    expectOneErrorLine(await zectre("logs", "web", "--deployment", "web"), /invalid --deployment 'web': deployment ids look like/);
    expectOneErrorLine(await zectre("logs"), "zectre: error: missing argument APP; see 'zectre logs --help'");
    expect(logRequests()).toHaveLength(2);
  });

  it("says so on stderr when there are no lines, and reports an unknown app", async () => {
    const empty = await zectre("logs", "web", "--deployment", "dzzzzzzzzzzzz");
    expect(empty).toEqual({ code: 0, stdout: "", stderr: "No log lines found.\n" });
    expectOneErrorLine(await zectre("logs", "nope"), "zectre: error: app nope not found (not_found)");
  });

  it("--format json prints NDJSON and yaml one document per line", async () => {
    const ndjson = lines(expectOk(await zectre("logs", "web", "--format", "json")));
    expect(ndjson.map((line) => JSON.parse(line) as { seq: number; line: string })).toEqual([
      expect.objectContaining({ seq: 1, line: "listening on 41000", nodeId: "web-1" }),
      expect.objectContaining({ seq: 2, stream: "stderr" }),
    ]);
    const yaml = parseAllDocuments(expectOk(await zectre("logs", "web", "--format", "yaml")));
    expect(Array.isArray(yaml) ? yaml.map((doc) => (doc.toJS() as { seq: number }).seq) : []).toEqual([1, 2]);
  });

  it("-f prints the backlog, then new lines, picks up after a dropped stream without repeats, and Ctrl-C ends it with 0", async () => {
    let press: (() => void) | undefined;
    let seen = "";
    const running = runWithFakeArtifacts(args("logs", "web", "-f", "--format", "json"), {
      cwd: tempDir(),
      configDir: configDir(),
      onInterrupt: (handler) => (press = handler),
      onStdout: (chunk) => (seen += chunk),
    });
    const opened = () => api.requests.filter((r) => r.path.endsWith("/logs")).length;
    await until(() => opened() === 1 && (api.apps.get("web")?.logWatchers.size ?? 0) === 1, "the log stream to open");
    api.addLog("web", { nodeId: "web-1", taskId: T1, deploymentId: D1, stream: "stdout", ts: "2026-11-23T10:00:02.000Z", line: "live one" });
    await until(() => seen.includes("live one"), "the live line");
    api.dropLogStreams();
    await until(() => opened() === 2 && (api.apps.get("web")?.logWatchers.size ?? 0) === 1, "the log stream to reopen");
    api.addLog("web", { nodeId: "web-1", taskId: T1, deploymentId: D1, stream: "stdout", ts: "2026-11-23T10:00:03.000Z", line: "live two" });
    await until(() => seen.includes("live two"), "the second live line");
    press?.();
    const result = await running;
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(lines(result.stdout).map((line) => (JSON.parse(line) as { seq: number }).seq)).toEqual([1, 2, 3, 4]);
    const queries = logRequests();
    expect(queries[0]).toEqual({ follow: "1" });
    // Reopened from the time of the last line seen; the line already printed at that time is skipped by its seq.
    expect(queries[1]).toEqual({ since: "2026-11-23T10:00:02.000Z", follow: "1" });
  });

  it("-f in the shipped binary stops on SIGINT with exit 0", async () => {
    const { child, result } = startBinary(args("logs", "web", "-f"), { env: { ZECTRE_CONFIG_DIR: configDir() } });
    await until(() => (api.apps.get("web")?.logWatchers.size ?? 0) === 1, "the log stream to open", 10_000);
    let seen = "";
    child.stdout?.on("data", (chunk: Buffer | string) => (seen += String(chunk)));
    api.addLog("web", { nodeId: "web-1", taskId: T1, deploymentId: D1, stream: "stdout", ts: "2026-11-23T10:00:02.000Z", line: "live" });
    await until(() => seen.includes("| live"), "the live line", 10_000);
    child.kill("SIGINT");
    const done = await result;
    expect(done.code).toBe(0);
    expect(lines(done.stdout)).toEqual([
      `2026-11-23T10:00:00Z web-1/${T1} | listening on 41000`,
      `2026-11-23T10:00:01Z web-2/${T2} ! warning: \\x1b[31mred\\x1b[0m`,
      `2026-11-23T10:00:02Z web-1/${T1} | live`,
    ]);
  });
});
