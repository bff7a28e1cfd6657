import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { lookup } from "../../cli/src/commands/node.ts";
import type { CreatedEnrollmentToken } from "../../cli/src/client.ts";
import { formatAgo } from "../../cli/src/output.ts";
import type { EnrollmentTokenRecord, NodeDetail, NodeSummary } from "../../protocol/nodes.ts";
import { type FakeApi, startFakeApi } from "./helpers/fake-api.ts";
import { type CliResult, lines, runBinary, runInProcess, useTempDirs, expectOk, expectOneErrorLine } from "./helpers/run-cli.ts";

/**
 * `zectre node ...` against the fake API's fleet (see FLEET in the fake). The main
 * paths run the real binary; the larger matrices of refusals run `main` in-process,
 * which is the same code without ~0.3s of Node startup per case.
 */

const tempDir = useTempDirs();
let api: FakeApi;
let configDir: string;

beforeEach(async () => {
  api = await startFakeApi();
  configDir = tempDir();
});
afterEach(() => api.close());

const run = (token: string, args: string[]): Promise<CliResult> =>
  runBinary(["--url", api.url, "--token", token, ...args], { env: { ZECTRE_CONFIG_DIR: configDir } });
const zectre = (...args: string[]) => run(api.adminToken, args);
const quick = (...args: string[]): Promise<CliResult> =>
  runInProcess(["--url", api.url, "--token", api.adminToken, ...args], { env: { ZECTRE_CONFIG_DIR: configDir } });

const lastRequest = () => {
  const request = api.requests.at(-1);
  if (!request) throw new Error("no request reached the fake");
  return { method: request.method, path: request.path, query: Object.fromEntries(request.query), body: request.body };
};
const cells = (row: string | undefined) => (row ?? "").split(/\s{2,}/);

describe("relative times and dotted keys", () => {
  const now = Date.parse("2026-01-10T00:00:00.000Z");
  const ago = (seconds: number) => formatAgo(new Date(now - seconds * 1000).toISOString(), "-", now);

  it("renders the largest whole unit", () => {
    expect([ago(0), ago(12), ago(59), ago(60), ago(5 * 60 + 59), ago(3599)]).toEqual(["0s ago", "12s ago", "59s ago", "1m ago", "5m ago", "59m ago"]);
    expect([ago(3600), ago(3 * 3600 + 1), ago(86399), ago(86400), ago(2 * 86400 + 5), ago(400 * 86400)]).toEqual([
      "1h ago",
      "3h ago",
      "23h ago",
      "1d ago",
      "2d ago",
      "400d ago",
    ]);
    expect(formatAgo(null, "-", now)).toBe("-");
    // A clock slightly behind the server's must not print a negative age.
    expect(ago(-3)).toBe("0s ago");
  });

  it("follows dotted keys through objects, array indexes and keys that contain dots", () => {
    const facts = { os: "linux", disk: [{ mount: "/" }], custom: { "app.version": "1.2.3", app: { name: "shop" }, zero: 0 } };
    expect(lookup(facts, "os")).toBe("linux");
    expect(lookup(facts, "disk.0.mount")).toBe("/");
    expect(lookup(facts, "custom.app.version")).toBe("1.2.3");
    expect(lookup(facts, "custom.app.name")).toBe("shop");
    expect(lookup(facts, "custom.zero")).toBe(0);
    for (const missing of ["nope", "os.length", "disk.1", "disk.01", "disk.length", "custom.app.version.x", "toString"]) {
      expect(lookup(facts, missing), missing).toBeUndefined();
    }
  });
});

describe("zectre node token", () => {
  it("creates a token with every flag, prints it once with the agent command, lists and revokes it", async () => {
    const create = expectOk(await zectre("node", "token", "create", "--uses", "5", "--ttl", "2h", "--auto-approve", "--label", "env=prod", "--label", "role=web"));
    expect(lastRequest()).toEqual({
      method: "POST",
      path: "/api/v1/enrollment-tokens",
      query: {},
      body: { uses: 5, ttlSeconds: 7200, autoApprove: true, labels: { env: "prod", role: "web" } },
    });
    const [record] = api.enrollmentTokens.values();
    if (!record) throw new Error("the fake stored no enrollment token");
    const token = /^ {4}(zet_acme_[0-9a-f]{16}_[0-9a-f]{64})$/m.exec(create)?.[1];
    expect(token).toContain(record.id);
    expect(create).toContain(`Created enrollment token ${record.id} (5 uses, expires 2026-01-05 12:20Z, auto-approve, labels env=prod,role=web).`);
    expect(create).toContain("Store it now: it will not be shown again.");
    expect(create).toContain(`    zectre-agent enroll --url ${api.url} --token ${token}\n`);

    const list = lines(expectOk(await zectre("node", "token", "list")));
    expect(lastRequest()).toMatchObject({ method: "GET", path: "/api/v1/enrollment-tokens", query: {} });
    expect(list[0]).toMatch(/^ID\s+USES-LEFT\s+AUTO-APPROVE\s+LABELS\s+CREATED\s+EXPIRES$/);
    expect(list.slice(1).map(cells)).toEqual([[record.id, "5/5", "yes", "env=prod,role=web", "2026-01-05 10:20Z", "2026-01-05 12:20Z"]]);

    expect(expectOk(await zectre("node", "token", "revoke", record.id))).toBe(`Revoked enrollment token ${record.id}.\n`);
    expect(lastRequest()).toMatchObject({ method: "DELETE", path: `/api/v1/enrollment-tokens/${record.id}` });

    const all = await quick("node", "token", "list", "--all", "--format", "json");
    expect(lastRequest().query).toEqual({ all: "true" });
    const listed = JSON.parse(expectOk(all)) as { tokens: EnrollmentTokenRecord[] };
    expect(listed.tokens).toEqual([{ ...record, revokedAt: "2026-01-07T09:30:00.000Z" }]);
  });

  it("sends only the chosen fields, and keeps the once-only warning off stdout in json", async () => {
    const result = await quick("node", "token", "create", "--format", "json");
    expect(result.code).toBe(0);
    expect(lastRequest().body).toEqual({});
    const created = JSON.parse(result.stdout) as CreatedEnrollmentToken;
    expect(created.record).toMatchObject({ uses: 1, autoApprove: false, labels: {}, expiresAt: "2026-01-05T11:20:30.000Z" });
    expect(created.token).toMatch(/^zet_acme_[0-9a-f]{16}_[0-9a-f]{64}$/);
    expect(result.stderr).toBe("zectre: warning: the token above is shown only this once; store it now\n");
  });

  it("refuses bad flags before any request", async () => {
    const [badLabel, badKey, twice, ttl, uses] = await Promise.all([
      zectre("node", "token", "create", "--label", "k=v="),
      quick("node", "token", "create", "--label", "bad key=v"),
      quick("node", "token", "create", "--label", "a=1", "--label", "a=2"),
      quick("node", "token", "create", "--ttl", "30s"),
      quick("node", "token", "create", "--uses", "0"),
    ]);
    const help = "see 'zectre node token create --help'";
    expectOneErrorLine(badLabel, `zectre: error: invalid --label 'k=v=': write KEY=VALUE with a single '='; ${help}`);
    expectOneErrorLine(badKey, `zectre: error: invalid --label 'bad key=v': label keys use letters, digits and . _ / - (max 63); ${help}`);
    expectOneErrorLine(twice, `zectre: error: label 'a' is given twice; ${help}`);
    expectOneErrorLine(ttl, `zectre: error: invalid --ttl '30s': must be between 1m and 365d; ${help}`);
    expectOneErrorLine(uses, `zectre: error: invalid --uses '0': give a whole number from 1 to 100000; ${help}`);
    expect(api.requests).toEqual([]);
  });

  it("documents the repeatable --label in help", async () => {
    const help = expectOk(await quick("node", "token", "create", "--help"));
    expect(help).toContain("Usage: zectre node token create [--uses N] [--ttl DURATION] [--auto-approve] [--label KEY=VALUE]...");
    expect(help).toMatch(/^ {6}--label KEY=VALUE\s+A label every node enrolled with it starts with \(repeatable\)$/m);
    expect(help).toContain("Examples:\n  zectre node token create\n");
  });
});

describe("zectre node list, show and facts", () => {
  it("lists approved and active nodes with exactly the documented columns, relative times for offline ones and 'now' for online ones", async () => {
    const stdout = expectOk(await zectre("node", "list"));
    expect(lastRequest()).toEqual({ method: "GET", path: "/api/v1/nodes", query: {}, body: undefined });
    expect(lines(stdout)).toEqual([
      "NODE ID  OS      ARCH   ONLINE  LAST-SEEN",
      "web-1    linux   x64    yes     now",
      "web-2    linux   arm64  no      5m ago",
      "db-1     linux   x64    no      3h ago",
      "mac-1    darwin  arm64  yes     now",
    ]);
  });

  it("passes --state and --target through, shows '-' for never-seen nodes, and prints raw summaries as json", async () => {
    const pending = lines(expectOk(await quick("node", "list", "-s", "pending")));
    expect(lastRequest().query).toEqual({ state: "pending" });
    expect(pending.slice(1).map(cells)).toEqual([
      ["new-1", "-", "-", "no", "-"],
      ["new-2", "linux", "x64", "no", "-"],
    ]);

    const json = await quick("node", "list", "--state", "active,approved", "--target", "env=prod", "--format", "json");
    expect(lastRequest().query).toEqual({ state: "active,approved", target: "env=prod" });
    const { nodes } = JSON.parse(expectOk(json)) as { nodes: NodeSummary[] };
    expect(nodes.map((node) => node.id)).toEqual(["web-1", "web-2"]);
    expect(nodes[0]).toMatchObject({ id: "web-1", state: "active", online: true, os: "linux", labels: { env: "prod", role: "web" } });
    expect(Date.now() - Date.parse(nodes[0]?.lastSeen ?? "")).toBeGreaterThanOrEqual(12_000);
  });

  it("shows a node as pretty JSON in text mode and the raw API object in json", async () => {
    const [text, json] = await Promise.all([zectre("node", "show", "web-1"), quick("node", "show", "web-1", "--format", "json")]);
    const detail = JSON.parse(expectOk(text)) as NodeDetail;
    expect(text.stdout).toMatch(/^\{\n {2}"id": "web-1",\n/);
    expect(detail).toMatchObject({ id: "web-1", state: "active", connectedAt: expect.any(String), settings: {} });
    expect(detail.facts).toEqual(api.nodes.get("web-1")?.facts);
    expect((JSON.parse(expectOk(json)) as { node: NodeDetail }).node).toEqual({ ...detail, lastSeen: expect.any(String) });
    expect(api.requests.map((r) => `${r.method} ${r.path}`)).toEqual(["GET /api/v1/nodes/web-1", "GET /api/v1/nodes/web-1"]);
  });

  it("prints all facts, one fact plain, an object fact as JSON, and fails on a missing key", async () => {
    const [all, os, memory, disk, custom, yaml, missing, none, unknown] = await Promise.all([
      zectre("node", "facts", "web-1"),
      quick("node", "facts", "web-1", "os"),
      quick("node", "facts", "web-1", "memoryBytes"),
      quick("node", "facts", "web-1", "disk.0"),
      quick("node", "facts", "web-1", "custom.app.version"),
      quick("node", "facts", "web-1", "hostname", "--format", "yaml"),
      zectre("node", "facts", "web-1", "x.y"),
      quick("node", "facts", "new-1"),
      quick("node", "facts", "ghost"),
    ]);
    expect(JSON.parse(expectOk(all))).toEqual(api.nodes.get("web-1")?.facts);
    expect(expectOk(os)).toBe("linux\n");
    expect(expectOk(memory)).toBe("8589934592\n");
    expect(expectOk(disk)).toBe(`${JSON.stringify({ mount: "/", totalBytes: 100_000_000_000, freeBytes: 40_000_000_000 }, null, 2)}\n`);
    expect(expectOk(custom)).toBe("1.2.3\n");
    expect(expectOk(yaml)).toBe("web-1.example.com\n");
    expectOneErrorLine(missing, "zectre: error: fact 'x.y' not found on node 'web-1'");
    expectOneErrorLine(none, "zectre: error: node 'new-1' has not reported any facts yet");
    expectOneErrorLine(unknown, "zectre: error: node 'ghost' not found (not_found)");
  });
});

describe("zectre node label", () => {
  it("sets with k=v and removes with k- in one PATCH", async () => {
    const stdout = expectOk(await zectre("node", "label", "web-1", "tier=gold", "role-", "env=staging"));
    expect(lastRequest()).toEqual({ method: "PATCH", path: "/api/v1/nodes/web-1/labels", query: {}, body: { labels: { tier: "gold", role: null, env: "staging" } } });
    expect(stdout).toBe("Labels of node 'web-1': env=staging,tier=gold\n");
    expect(api.nodes.get("web-1")?.labels).toEqual({ env: "staging", tier: "gold" });
  });

  it("refuses malformed changes before any request", async () => {
    const results = await Promise.all([
      zectre("node", "label", "web-1", "k=v="),
      quick("node", "label", "web-1", "=x"),
      quick("node", "label", "web-1", "Bad Key=x"),
      quick("node", "label", "web-1", "plain"),
      quick("node", "label", "web-1", "a=1", "a-"),
      quick("node", "label", "web-1"),
      quick("node", "label", "web.1", "a=1"),
    ]);
    const help = "see 'zectre node label --help'";
    const expected = [
      `zectre: error: invalid label 'k=v=': write KEY=VALUE with a single '='; ${help}`,
      `zectre: error: invalid label '=x': label keys use letters, digits and . _ / - (max 63); ${help}`,
      `zectre: error: invalid label 'Bad Key=x': label keys use letters, digits and . _ / - (max 63); ${help}`,
      `zectre: error: invalid label 'plain': write KEY=VALUE to set a label or KEY- to remove it; ${help}`,
      `zectre: error: label 'a' is given twice; ${help}`,
      `zectre: error: give at least one label change: KEY=VALUE or KEY-; ${help}`,
      `zectre: error: invalid node id 'web.1': node ids start with a letter or digit and use only letters, digits, '_' and '-'; ${help}`,
    ];
    results.forEach((result, index) => expectOneErrorLine(result, expected[index] as string));
    expect(api.requests).toEqual([]);
  });
});

describe("zectre node enroll", () => {
  it("lists every state by default with the documented columns, or the states asked for", async () => {
    const all = lines(expectOk(await zectre("node", "enroll", "list")));
    expect(lastRequest().query).toEqual({ state: "all" });
    expect(all[0]).toMatch(/^NODE ID\s+STATE\s+ENROLLED\s+REASON$/);
    expect(all.slice(1).map(cells)).toContainEqual(["bad-1", "rejected", "2026-01-04 09:00Z", "unknown host"]);
    expect(all.slice(1).map(cells)).toContainEqual(["web-1", "active", "2026-01-05 11:00Z", "-"]);
    expect(all).toHaveLength(8);

    const pending = lines(expectOk(await quick("node", "enroll", "list", "-s", "pending")));
    expect(lastRequest().query).toEqual({ state: "pending" });
    expect(pending.slice(1).map((row) => cells(row).slice(0, 2))).toEqual([
      ["new-1", "pending"],
      ["new-2", "pending"],
    ]);
  });

  it("approves, rejects and revokes one node with the right requests", async () => {
    expect(expectOk(await quick("node", "enroll", "approve", "new-1"))).toBe("Approved node 'new-1' (now approved).\n");
    expect(lastRequest()).toEqual({ method: "POST", path: "/api/v1/nodes/new-1/approve", query: {}, body: {} });

    expect(expectOk(await zectre("node", "enroll", "reject", "new-2", "--reason", "unknown host"))).toBe("Rejected node 'new-2' (now rejected: unknown host).\n");
    expect(lastRequest()).toEqual({ method: "POST", path: "/api/v1/nodes/new-2/reject", query: {}, body: { reason: "unknown host" } });

    const revoke = await zectre("node", "enroll", "revoke", "web-1", "--format", "json");
    expect(lastRequest()).toEqual({ method: "POST", path: "/api/v1/nodes/web-1/revoke", query: {}, body: {} });
    expect((JSON.parse(expectOk(revoke)) as { node: NodeSummary }).node).toMatchObject({ id: "web-1", state: "revoked", online: false });

    // A transition the server refuses is its one error line.
    expect(api.nodes.get("web-1")?.state).toBe("revoked");
    expectOneErrorLine(await quick("node", "enroll", "approve", "web-1"), "zectre: error: node 'web-1' is revoked and cannot be approved (conflict)");
  });

  it("approves every pending node with --all-pending", async () => {
    expect(expectOk(await zectre("node", "enroll", "approve", "--all-pending"))).toBe("Approved 2 pending nodes: new-1, new-2.\n");
    expect(lastRequest()).toMatchObject({ method: "POST", path: "/api/v1/nodes/approve-pending" });
    expect([...api.nodes.values()].filter((node) => node.state === "pending")).toEqual([]);
    expect(expectOk(await quick("node", "enroll", "approve", "--all-pending"))).toBe("No nodes were pending.\n");
  });

  it("refuses approve without exactly one of ID and --all-pending, and a bare group", async () => {
    const [neither, both, state, group, forbidden] = await Promise.all([
      zectre("node", "enroll", "approve"),
      quick("node", "enroll", "approve", "new-1", "--all-pending"),
      quick("node", "enroll", "list", "-s", "pending,gone"),
      quick("node", "enroll"),
      runInProcess(["--url", api.url, "--token", api.readToken, "node", "enroll", "approve", "new-1"], { env: { ZECTRE_CONFIG_DIR: configDir } }),
    ]);
    const help = "see 'zectre node enroll approve --help'";
    expectOneErrorLine(neither, `zectre: error: give a node ID or --all-pending; ${help}`);
    expectOneErrorLine(both, `zectre: error: give either a node ID or --all-pending, not both; ${help}`);
    expectOneErrorLine(
      state,
      "zectre: error: invalid --state 'pending,gone': expected 'all' or a comma-separated list of pending, approved, active, rejected or revoked; see 'zectre node enroll list --help'",
    );
    expectOneErrorLine(group, "zectre: error: 'zectre node enroll' needs a command: list, approve, reject or revoke; see 'zectre node enroll --help'");
    expectOneErrorLine(forbidden, "zectre: error: this action needs the 'admin' scope; the token has 'read' (forbidden)");
    expect(api.requests.map((r) => `${r.method} ${r.path}`)).toEqual(["POST /api/v1/nodes/new-1/approve"]);
  });
});
