import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ApiClient } from "../../cli/src/client.ts";
import { type FakeApi, startFakeApi } from "./helpers/fake-api.ts";
import { lines, runInProcess, useTempDirs } from "./helpers/run-cli.ts";

/** `main` called in-process: the cases that need a fake terminal, odd server answers, or many runs. */

const tempDir = useTempDirs();
let api: FakeApi;
let configDir: string;

beforeEach(async () => {
  api = await startFakeApi();
  configDir = tempDir();
});
afterEach(() => api.close());

const run = (args: string[], env: Record<string, string> = {}, tty = false) =>
  runInProcess(args, { env: { ZECTRE_CONFIG_DIR: configDir, ...env }, tty });
const asAdminEnv = () => ({ ZECTRE_URL: api.url, ZECTRE_TOKEN: api.adminToken });

describe("main", () => {
  it("uses ZECTRE_URL and ZECTRE_TOKEN and says so in status", async () => {
    const result = await run(["status", "--format", "json"], asAdminEnv());
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as Record<string, unknown>;
    expect(report).toMatchObject({
      url: api.url,
      credentials: { source: "environment (ZECTRE_URL, ZECTRE_TOKEN)", profile: null },
      reachable: true,
      healthy: true,
      health: { ok: true, component: "api", version: api.version },
      identity: { org: "acme", tokenName: "admin", scope: "admin" },
      org: { name: "acme", rateLimitPerMinute: 600 },
      error: null,
    });
  });

  it("colors only a terminal, and honors --no-color and NO_COLOR", async () => {
    const bold = "\u001b[1m";
    expect((await run(["token", "list"], asAdminEnv(), true)).stdout.startsWith(`${bold}ID`)).toBe(true);
    expect((await run(["token", "list"], asAdminEnv(), false)).stdout.startsWith("ID")).toBe(true);
    expect((await run(["token", "list", "--no-color"], asAdminEnv(), true)).stdout).not.toContain("\u001b[");
    expect((await run(["token", "list"], { ...asAdminEnv(), NO_COLOR: "1" }, true)).stdout).not.toContain("\u001b[");
    const error = await run(["frobnicate"], {}, true);
    expect(error.stderr).toBe("\u001b[31mzectre: error:\u001b[39m unknown command 'frobnicate'; see 'zectre --help'\n");
  });

  it("adds the request id to server errors, and handles bodies that are not API errors", async () => {
    api.replyNext({ status: 500, body: { error: { code: "internal", message: "internal error; see the server log for this request id" } } });
    const internal = await run(["token", "list"], asAdminEnv());
    const sentId = api.requests.at(-1)?.headers["x-request-id"];
    expect(internal.code).toBe(1);
    expect(internal.stderr).toBe(`zectre: error: internal error; see the server log for this request id (internal) [request id ${String(sentId)}]\n`);

    api.replyNext({ status: 502, body: "<html>Bad Gateway</html>" });
    const gateway = await run(["token", "list"], asAdminEnv());
    expect(lines(gateway.stderr)).toEqual([
      expect.stringMatching(/^zectre: error: GET \/api\/v1\/tokens answered HTTP 502 Bad Gateway without an API error body \(http_502\) \[request id /),
    ]);

    api.replyNext({ status: 200, body: "hello" });
    const notApi = await run(["token", "list"], asAdminEnv());
    expect(notApi.stderr).toBe(`zectre: error: GET ${api.url}/api/v1/tokens answered HTTP 200 with a body that is not JSON; is ${api.url} a Zectre API?\n`);
  });

  it("validates token create locally before sending anything", async () => {
    const cases: [string[], string][] = [
      [["--ttl", "3x"], "invalid --ttl '3x': use a number with s, m, h, d or w, e.g. 30d"],
      [["--ttl", "30s"], "invalid --ttl: must be between 1m and 1825d"],
      [["--ttl", "9999d"], "invalid --ttl: must be between 1m and 1825d"],
    ];
    for (const [extra, message] of cases) {
      const result = await run(["token", "create", "--name", "x", "--scope", "read", ...extra], asAdminEnv());
      expect(result.stderr).toBe(`zectre: error: ${message}; see 'zectre token create --help'\n`);
      expect(result.code).toBe(1);
    }
    const badName = await run(["token", "create", "--name", "!nope", "--scope", "read"], asAdminEnv());
    expect(badName.stderr).toMatch(/^zectre: error: invalid --name: token names use letters/);
    expect(api.requests).toEqual([]);
    const ok = await run(["token", "create", "--name", "x", "--scope", "read", "--ttl", "2h"], asAdminEnv());
    expect(ok.code).toBe(0);
    expect(api.requests.at(-1)?.body).toEqual({ name: "x", scope: "read", ttlSeconds: 7200 });
  });

  it("logs in from the environment into ZECTRE_PROFILE, keeping other profiles", async () => {
    expect((await run(["login"], { ...asAdminEnv(), ZECTRE_PROFILE: "staging" })).code).toBe(0);
    expect((await run(["login", "--profile", "prod", "--url", api.url, "--token", api.readToken])).code).toBe(0);
    const saved = JSON.parse(readFileSync(join(configDir, "config.json"), "utf8")) as unknown;
    expect(saved).toEqual({
      current: "prod",
      profiles: { staging: { url: api.url, token: api.adminToken }, prod: { url: api.url, token: api.readToken } },
    });
    const status = await run(["status", "--profile", "staging"]);
    expect(status.stdout).toContain("Credentials:  profile 'staging' (--profile)");
    const logout = await run(["logout", "--profile", "staging", "--format", "json"]);
    expect(JSON.parse(logout.stdout)).toEqual({ profile: "staging", url: api.url, removed: true });
    expect((await run(["logout", "--profile", "staging"])).stderr).toMatch(/^zectre: error: no profile named 'staging' in /);
    expect((await run(["login", "--profile", "bad/name"], asAdminEnv())).stderr).toMatch(/^zectre: error: invalid profile name 'bad\/name'/);
  });

  it("says so when logging out with no current profile", async () => {
    const result = await run(["logout"]);
    expect(result).toEqual({ code: 1, stdout: "", stderr: "zectre: error: not logged in: there is no current profile\n" });
  });

  it("prints what status learned when the token is rejected, then fails", async () => {
    const revoked = [...api.records.values()].find((r) => r.name === "dashboard");
    if (!revoked) throw new Error("fake has no read token");
    revoked.revokedAt = "2026-01-07T00:00:00.000Z";
    const result = await run(["status", "--url", api.url, "--token", api.readToken]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain(`Reachable:    yes, healthy (server version ${api.version})`);
    expect(result.stdout).toContain("Token:        rejected: invalid or revoked API token (unauthorized)");
    expect(lines(result.stderr)).toEqual(["zectre: error: invalid or revoked API token (unauthorized)"]);
  });

  it("gives up on a server that never answers", async () => {
    const silent = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    try {
      await expect(new ApiClient({ url, timeoutMs: 200 }).health()).rejects.toThrow(`could not reach ${url}: no answer within 200ms`);
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });
});
