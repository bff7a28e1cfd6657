import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { AuditEntry } from "../../protocol/events.ts";
import { parseToken } from "../../protocol/tokens.ts";
import { onlineAgent } from "./agent-helpers.ts";
import { call, createOrg, createToken } from "./helpers.ts";

const orgObject = (org: string) => env.ORG.get(env.ORG.idFromName(org));

async function audit(token: string, query = ""): Promise<AuditEntry[]> {
  const res = await call<{ entries: AuditEntry[] }>("GET", `/api/v1/audit${query}`, { token });
  expect(res.status).toBe(200);
  return res.body.entries;
}

describe("audit log", () => {
  it("records mutating requests once each, newest first, with actor, token, route pattern, target, ip and request id", async () => {
    const { name, adminToken } = await createOrg("au");
    const adminId = parseToken(adminToken)?.id as string;
    await onlineAgent(adminToken, name, "au-1");
    const job = await call<{ jid: string }>("POST", "/api/v1/jobs", {
      token: adminToken,
      body: { target: "au-*", function: "test.ping" },
      headers: { "cf-connecting-ip": "203.0.113.9", "x-request-id": "req-job-1" },
    });
    expect(job.status).toBe(202);
    const labels = await call("PATCH", "/api/v1/nodes/au-1/labels", {
      token: adminToken,
      body: { labels: { role: "web" } },
      headers: { "x-forwarded-for": "198.51.100.7, 10.0.0.1" },
    });
    expect(labels.status).toBe(200);
    await call("GET", "/api/v1/jobs", { token: adminToken });

    const entries = await audit(adminToken);
    const [patch, ping, activated, enrolled, enrollToken, created] = entries;
    expect(patch).toMatchObject({
      actor: `token:${adminId}(admin)`, tokenId: adminId, tokenName: "admin",
      action: "PATCH /nodes/:id/labels", target: "au-1", ip: "198.51.100.7", status: 200, details: {},
    });
    expect(ping).toMatchObject({ action: "POST /jobs", target: job.body.jid, ip: "203.0.113.9", requestId: "req-job-1", status: 202, tokenName: "admin" });
    // Enrolling and connecting are the agent's own changes (no API token): the org records them itself, once.
    expect(activated).toMatchObject({ actor: "node:au-1", action: "node.activate", target: "au-1", status: null });
    expect(enrolled).toMatchObject({ actor: expect.stringMatching(/^enrollment:/), action: "node.enroll", target: "au-1", tokenId: null, status: null });
    expect(enrollToken).toMatchObject({ action: "POST /enrollment-tokens", status: 201 });
    expect(created).toMatchObject({ actor: "operator", action: "POST /orgs", target: name, status: 201, tokenId: null });
    expect(entries.map((e) => e.action).filter((a) => a.startsWith("GET"))).toEqual([]);
    expect(entries.map((e) => e.id)).toEqual([...entries.map((e) => e.id)].sort((a, b) => b - a));
    expect(Date.parse(patch?.at ?? "")).not.toBeNaN();
  });

  it("records refused changes with their status and error code, and not requests that failed authentication", async () => {
    const { name, adminToken } = await createOrg("au");
    const reader = await createToken(adminToken, "reader", "read");
    expect((await call("POST", "/api/v1/apps", { token: reader, body: { name: "web" } })).status).toBe(403);
    expect((await call("POST", "/api/v1/tokens", { token: adminToken, body: { name: "reader", scope: "read" } })).status).toBe(409);
    expect((await call("POST", "/api/v1/apps", { token: `zt_${name}_0123456789abcdef_${"0".repeat(64)}`, body: { name: "x" } })).status).toBe(401);
    const [conflict, forbidden] = await audit(reader);
    expect(conflict).toMatchObject({ action: "POST /tokens", status: 409, details: { error: "conflict" }, tokenName: "admin" });
    expect(forbidden).toMatchObject({ action: "POST /apps", status: 403, details: { error: "forbidden" }, tokenName: "reader" });
    expect((await audit(reader)).filter((e) => e.status === 401)).toEqual([]);
  });

  it("never stores secret values: not a new token, not an app secret", async () => {
    const { name, adminToken } = await createOrg("au");
    const minted = await createToken(adminToken, "ci", "operate");
    expect((await call("POST", "/api/v1/apps", { token: adminToken, body: { name: "web" } })).status).toBe(201);
    const secret = await call("PUT", "/api/v1/apps/web/env/API_KEY", { token: adminToken, body: { value: "hunter2-sekrit", secret: true } });
    expect(secret.status).toBe(200);
    const rows = await runInDurableObject(orgObject(name), (_i, state) => JSON.stringify(state.storage.sql.exec("SELECT * FROM audit_log").toArray()));
    expect(rows).toContain("PUT /apps/:app/env/:name");
    expect(rows).toContain("web/API_KEY");
    expect(rows).not.toContain("hunter2-sekrit");
    expect(rows).not.toContain(parseToken(minted)?.secret as string);
    expect(rows).not.toContain(parseToken(adminToken)?.secret as string);
  });

  it("filters by since (a duration or an ISO time) and limit, and refuses bad values", async () => {
    const { adminToken } = await createOrg("au");
    for (const n of ["a1", "a2", "a3"]) await createToken(adminToken, n, "read");
    expect((await audit(adminToken, "?limit=2")).length).toBe(2);
    expect((await audit(adminToken, "?since=10m")).length).toBe(4);
    expect(await audit(adminToken, `?since=${new Date(Date.now() + 60_000).toISOString()}`)).toEqual([]);
    expect((await audit(adminToken, `?since=${new Date(Date.now() - 60_000).toISOString()}`)).length).toBe(4);
    expect((await call("GET", "/api/v1/audit?since=yesterday", { token: adminToken })).status).toBe(400);
    expect((await call("GET", "/api/v1/audit?limit=0", { token: adminToken })).status).toBe(400);
    expect((await call("GET", "/api/v1/audit")).status).toBe(401);
  });

  it("shows each org only its own entries", async () => {
    const a = await createOrg("au");
    const b = await createOrg("au");
    await createToken(a.adminToken, "only-a", "read");
    const seen = await audit(b.adminToken);
    expect(seen.map((e) => e.action)).toEqual(["POST /orgs"]);
  });
});
