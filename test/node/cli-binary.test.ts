import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import type { CreatedToken, TokenRecord } from "../../protocol/api.ts";
import { type FakeApi, startFakeApi, unusedUrl } from "./helpers/fake-api.ts";
import { type CliResult, lines, runBinary, useTempDirs, expectOneErrorLine } from "./helpers/run-cli.ts";

/** The real `cli/bin/zectre.ts` in a child Node, against an in-test fake of the API. */

const tempDir = useTempDirs();
let api: FakeApi;
let configDir: string;

beforeEach(async () => {
  api = await startFakeApi();
  configDir = tempDir();
});
afterEach(() => api.close());

const zectre = (args: string[], env: Record<string, string> = {}, cwd?: string): Promise<CliResult> =>
  runBinary(args, { env: { ZECTRE_CONFIG_DIR: configDir, ...env }, ...(cwd ? { cwd } : {}) });
const asAdmin = (args: string[]) => zectre(["--url", api.url, "--token", api.adminToken, ...args]);

describe("zectre binary", () => {
  it("logs in, saves a 0600 profile, and status reports it", async () => {
    const login = await zectre(["login", "--url", `${api.url}/`, "--token", api.adminToken]);
    expect(login.stderr).toBe("");
    expect(login.code).toBe(0);
    expect(login.stdout).toContain(`Logged in to ${api.url} as token 'admin' (org acme, scope admin).`);
    expect(api.requests.map((r) => `${r.method} ${r.path}`)).toEqual(["GET /api/v1/whoami"]);
    expect(api.requests[0]?.headers.authorization).toBe(`Bearer ${api.adminToken}`);

    const file = join(configDir, "config.json");
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(file, "utf8"))).toEqual({ current: "default", profiles: { default: { url: api.url, token: api.adminToken } } });

    const status = await zectre(["status"]);
    expect(status.code).toBe(0);
    expect(status.stderr).toBe("");
    expect(lines(status.stdout)).toEqual([
      `Server:       ${api.url}`,
      `Reachable:    yes, healthy (server version ${api.version})`,
      "Org:          acme (rate limit 600/min per token)",
      `Token:        admin (id ${api.records.values().next().value?.id}, scope admin)`,
      "Credentials:  profile 'default' (current)",
    ]);
    expect(api.requests.slice(1).map((r) => r.path)).toEqual(["/healthz", "/api/v1/whoami", "/api/v1/org"]);
    // The health check is anonymous; the rest authenticate.
    expect(api.requests[1]?.headers.authorization).toBeUndefined();
  });

  it("does not save a profile the server rejects", async () => {
    const result = await zectre(["login", "--url", api.url, "--token", "zt_acme_0000000000000000_" + "0".repeat(64)]);
    expectOneErrorLine(result, "zectre: error: invalid or revoked API token (unauthorized)");
    expect(() => statSync(join(configDir, "config.json"))).toThrow();
  });

  it("logs out of a named profile and then has no credentials", async () => {
    expect((await zectre(["login", "--profile", "ci", "--url", api.url, "--token", api.adminToken])).code).toBe(0);
    const logout = await zectre(["logout"]);
    expect(logout.code).toBe(0);
    expect(logout.stdout).toContain("Removed profile 'ci'");
    expect(JSON.parse(readFileSync(join(configDir, "config.json"), "utf8"))).toEqual({ profiles: {} });
    expectOneErrorLine(
      await zectre(["status"]),
      "zectre: error: no credentials: run 'zectre login --url URL --token TOKEN' or start a local server with 'npm run dev'",
    );
  });

  it("creates, lists and revokes tokens with the right requests", async () => {
    const create = await asAdmin(["token", "create", "--name", "ci deploy", "--scope", "operate", "--ttl", "30d"]);
    expect(create.stderr).toBe("");
    expect(create.code).toBe(0);
    const post = api.requests.at(-1);
    expect(post).toMatchObject({ method: "POST", path: "/api/v1/tokens", body: { name: "ci deploy", scope: "operate", ttlSeconds: 30 * 86400 } });
    expect(post?.headers["content-type"]).toBe("application/json");
    const record = [...api.records.values()].find((r) => r.name === "ci deploy");
    if (!record) throw new Error("the fake did not store the token");
    expect(create.stdout).toContain(`Created token 'ci deploy' (id ${record.id}, scope operate, expires 2026-02-04 10:20Z).`);
    expect(create.stdout).toMatch(new RegExp(`^    zt_acme_${record.id}_[0-9a-f]{64}$`, "m"));
    expect(create.stdout).toContain("Store it now: it will not be shown again.");

    const list = await asAdmin(["token", "list"]);
    expect(list.code).toBe(0);
    expect(api.requests.at(-1)).toMatchObject({ method: "GET", path: "/api/v1/tokens" });
    const table = lines(list.stdout);
    expect(table[0]).toMatch(/^ID\s+NAME\s+SCOPE\s+CREATED\s+EXPIRES\s+LAST-USED$/);
    expect(table.slice(1).map((row) => row.split(/\s{2,}/))).toContainEqual([record.id, "ci deploy", "operate", "2026-01-05 10:20Z", "2026-02-04 10:20Z", "never"]);
    expect(table).toHaveLength(4);

    const revoke = await asAdmin(["token", "revoke", record.id]);
    expect(revoke.code).toBe(0);
    expect(api.requests.at(-1)).toMatchObject({ method: "DELETE", path: `/api/v1/tokens/${record.id}` });
    expect(revoke.stdout).toBe(`Revoked token 'ci deploy' (id ${record.id}).\n`);

    const all = await asAdmin(["token", "list", "--all"]);
    expect(api.requests.at(-1)?.query.get("all")).toBe("true");
    const rows = lines(all.stdout);
    expect(rows[0]).toMatch(/LAST-USED\s+REVOKED$/);
    expect(rows.find((row) => row.startsWith(record.id))).toMatch(/2026-01-07 09:30Z$/);
  });

  it("sends a fresh X-Request-ID with every request", async () => {
    await asAdmin(["status"]);
    const ids = api.requests.map((r) => r.headers["x-request-id"]);
    expect(ids).toHaveLength(3);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(new Set(ids).size).toBe(3);
  });

  it("turns a 403 into one stderr line with the server's message and code", async () => {
    const result = await zectre(["token", "list", "--url", api.url, "--token", api.readToken]);
    expectOneErrorLine(result, "zectre: error: this action needs the 'admin' scope; the token has 'read' (forbidden)");
  });

  it("turns a 404 into one stderr line", async () => {
    expectOneErrorLine(await asAdmin(["token", "revoke", "ffffffffffffffff"]), "zectre: error: token not found (not_found)");
  });

  it("includes Retry-After in a 429 error", async () => {
    api.replyNext({ status: 429, body: { error: { code: "rate_limited", message: "rate limit of 600 requests per minute exceeded" } }, headers: { "Retry-After": "17" } });
    expectOneErrorLine(await asAdmin(["token", "list"]), "zectre: error: rate limit of 600 requests per minute exceeded (rate_limited); retry after 17s");
  });

  it("says which URL could not be reached", async () => {
    const url = await unusedUrl();
    expectOneErrorLine(
      await zectre(["token", "list", "--url", url, "--token", api.adminToken]),
      `zectre: error: could not reach ${url}: connection refused (ECONNREFUSED)`,
    );
    // status still shows what it knows on stdout, with the same single error line.
    const status = await zectre(["status", "--url", url, "--token", api.adminToken]);
    expect(status.code).toBe(1);
    expect(status.stdout).toContain(`Reachable:    no: could not reach ${url}`);
    expect(lines(status.stderr)).toEqual([`zectre: error: could not reach ${url}: connection refused (ECONNREFUSED)`]);
  });

  it("rejects unknown commands and flags as usage errors pointing at --help", async () => {
    expectOneErrorLine(await zectre(["frobnicate"]), "zectre: error: unknown command 'frobnicate'; see 'zectre --help'");
    expectOneErrorLine(await zectre(["token", "list", "--color"]), "zectre: error: unknown flag '--color'; see 'zectre token list --help'");
    expectOneErrorLine(await zectre(["status", "--format", "xml"]), /^zectre: error: invalid --format 'xml'.*; see 'zectre status --help'\n$/);
    expectOneErrorLine(await zectre(["token"]), "zectre: error: 'zectre token' needs a command: create, list or revoke; see 'zectre token --help'");
    expect(api.requests).toEqual([]);
  });

  it("prints raw API objects with --format json and yaml", async () => {
    const json = await asAdmin(["--format", "json", "token", "list"]);
    expect(json.code).toBe(0);
    const listed = JSON.parse(json.stdout) as { tokens: TokenRecord[] };
    expect(listed.tokens.map((t) => t.name)).toEqual(["admin", "dashboard"]);
    expect(listed.tokens[0]).toEqual(api.records.values().next().value);

    const yaml = await asAdmin(["token", "create", "--name", "bot", "--scope", "read", "--format=yaml"]);
    expect(yaml.code).toBe(0);
    const created = parseYaml(yaml.stdout) as CreatedToken;
    expect(created.record).toMatchObject({ name: "bot", scope: "read", expiresAt: null });
    expect(created.token).toMatch(/^zt_acme_[0-9a-f]{16}_[0-9a-f]{64}$/);
    // The once-only warning must not pollute the machine-readable stream.
    expect(yaml.stderr).toBe("zectre: warning: the token above is shown only this once; store it now\n");
  });

  it("shows help for groups and commands", async () => {
    const group = await zectre(["token", "--help"]);
    expect(group.code).toBe(0);
    expect(group.stdout).toMatch(/^Usage: zectre token <command> \[flags\]/);
    expect(group.stdout).toMatch(/^ {2}create\s+Create an API token/m);
    expect(group.stdout).toMatch(/^ {2}list\s+List the org's tokens/m);
    expect(group.stdout).toMatch(/^ {2}revoke\s+Revoke a token/m);
    const command = await zectre(["help", "token", "create"]);
    expect(command.stdout).toContain("Usage: zectre token create --name NAME --scope read|operate|admin [--ttl DURATION]");
    const version = await zectre(["--version"]);
    expect(version.stdout).toBe(`zectre ${(JSON.parse(readFileSync("package.json", "utf8")) as { version: string }).version}\n`);
  });

  it("falls back to the local dev server's token and URL", async () => {
    const checkout = tempDir();
    mkdirSync(join(checkout, ".zectre"));
    mkdirSync(join(checkout, "workers", "api"), { recursive: true });
    writeFileSync(join(checkout, ".zectre", "admin-token"), `${api.adminToken}\n`);
    writeFileSync(join(checkout, ".zectre", "dev.json"), JSON.stringify({ apiUrl: api.url }));
    const status = await zectre(["status", "--format", "json"], {}, join(checkout, "workers", "api"));
    expect(status.code).toBe(0);
    const report = JSON.parse(status.stdout) as { url: string; credentials: { source: string }; identity: { scope: string } };
    expect(report.url).toBe(api.url);
    expect(report.credentials.source).toBe(`local dev server (${join(checkout, ".zectre")})`);
    expect(report.identity.scope).toBe("admin");
  });
});
