import { statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalControlPlane, removeControlPlane, startLocalControlPlane } from "../helpers/local-control-plane.ts";
import { getViaLoopback } from "../helpers/loopback-http.ts";
import { runCli } from "../helpers/run-cli.ts";

/** The whole foundation through the real launcher, real workerd, and the real CLI. */
describe("local control plane end to end", () => {
  let plane: LocalControlPlane;
  let env: Record<string, string>;
  const cli = (...args: string[]) => runCli(args, { cwd: plane.root, env });
  const ciCli = (...args: string[]) =>
    runCli(args, { cwd: plane.root, env: { ZECTRE_CONFIG_DIR: join(plane.root, "config-ci") } });

  beforeAll(async () => {
    plane = await startLocalControlPlane();
    env = { ZECTRE_CONFIG_DIR: join(plane.root, "config") };
  });

  afterAll(async () => {
    await plane?.stop();
    if (plane) removeControlPlane(plane);
  });

  it("bootstraps org 'default' with an admin token file of mode 0600, printed once", async () => {
    const token = plane.adminToken();
    expect(token).toMatch(/^zt_default_/);
    expect(statSync(join(plane.root, ".zectre/admin-token")).mode & 0o777).toBe(0o600);
    expect(statSync(join(plane.root, ".zectre/operator-secret")).mode & 0o777).toBe(0o600);
    expect(plane.output.join("\n")).toContain(token);
  });

  it("serves the API and the proxy on their own ports", async () => {
    const api = await fetch(`${plane.apiUrl}/healthz`);
    expect(await api.json()).toMatchObject({ ok: true, component: "api" });
    const preview = await getViaLoopback(`http://app-x.localhost:${plane.proxyPort}/`);
    expect(preview.status).toBe(404);
    expect(JSON.parse(preview.body)).toMatchObject({ error: { code: "not_found", message: expect.stringContaining("app-x.localhost") } });
  });

  it("the CLI finds the local admin token with no profile", async () => {
    const status = await cli("status", "--format", "json");
    expect(status.stderr).toBe("");
    expect(status.code).toBe(0);
    expect(status.stdout).toContain('"default"');
  });

  it("creates, logs in with, and revokes tokens through the CLI", async () => {
    const created = await cli("token", "create", "--name", "ci", "--scope", "operate", "--format", "json");
    expect(created.code).toBe(0);
    const ciToken = (JSON.parse(created.stdout) as { token: string }).token;
    expect(ciToken).toMatch(/^zt_default_/);

    // Its own config dir: login makes the profile current, and the admin calls below rely on the dev token.
    const login = await ciCli("login", "--url", plane.apiUrl, "--token", ciToken, "--profile", "ci");
    expect(login.code).toBe(0);
    const status = await ciCli("status", "--format", "json");
    expect(status.code).toBe(0);
    expect(status.stdout).toContain('"operate"');

    // An operate token may not manage tokens: one clear line, exit 1.
    const denied = await ciCli("token", "list");
    expect(denied.code).toBe(1);
    expect(denied.stderr.trim().split("\n")).toHaveLength(1);
    expect(denied.stderr).toContain("admin");

    const temp = await cli("token", "create", "--name", "temp", "--scope", "read", "--format", "json");
    const tempId = (JSON.parse(temp.stdout) as { record: { id: string } }).record.id;
    const revoked = await cli("token", "revoke", tempId);
    expect(revoked.code).toBe(0);
  });

  it("keeps another org's data out of reach", async () => {
    const res = await fetch(`${plane.apiUrl}/api/v1/orgs`, {
      method: "POST",
      headers: { authorization: `Bearer ${plane.operatorSecret()}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "other" }),
    });
    expect(res.status).toBe(201);
    const otherToken = ((await res.json()) as { admin: { token: string } }).admin.token;
    const list = await cli("token", "list", "--all", "--format", "json", "--token", otherToken, "--url", plane.apiUrl);
    const names = (JSON.parse(list.stdout) as { tokens: { name: string }[] }).tokens.map((t) => t.name);
    expect(names).toEqual(["admin"]);
    const defaultTokens = await cli("token", "list", "--format", "json");
    const ciId = (JSON.parse(defaultTokens.stdout) as { tokens: { id: string; name: string }[] }).tokens.find(
      (t) => t.name === "ci",
    )?.id;
    const crossRevoke = await cli("token", "revoke", String(ciId), "--token", otherToken, "--url", plane.apiUrl);
    expect(crossRevoke.code).toBe(1);
    expect(crossRevoke.stderr).toContain("not found");
  });

  it("drives the scheduler's reconcile through the cron trigger", async () => {
    const res = await fetch(`${plane.apiUrl}/__scheduled?cron=${encodeURIComponent("* * * * *")}`);
    expect(res.status).toBe(200);
    await expect.poll(() => plane.output.some((l) => l.includes('"msg":"reconcile finished"')), { timeout: 5000 }).toBe(true);
  });

  it("keeps orgs, tokens and revocations across a restart", async () => {
    const before = await cli("token", "list", "--all", "--format", "json");
    await plane.restart();
    expect(plane.output.join("\n")).not.toContain("Created org 'default'");
    const after = await cli("token", "list", "--all", "--format", "json");
    expect(after.code).toBe(0);
    expect(JSON.parse(after.stdout)).toEqual(JSON.parse(before.stdout));
    const names = (JSON.parse(after.stdout) as { tokens: { name: string; revokedAt: string | null }[] }).tokens;
    expect(names.find((t) => t.name === "temp")?.revokedAt).not.toBeNull();
    const ciStatus = await ciCli("status", "--format", "json");
    expect(ciStatus.code).toBe(0);
  });
});
