import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { parseToken } from "../../protocol/tokens.ts";

function stub(name: string) {
  return env.ORG.get(env.ORG.idFromName(name));
}

describe("OrgObject", () => {
  it("stores only a hash of each token secret", async () => {
    const org = stub("hash-check");
    const created = await org.createOrg("hash-check", "admin");
    if (!created.ok) throw new Error(created.message);
    const secret = parseToken(created.admin.token)?.secret;
    expect(secret).toMatch(/^[0-9a-f]{64}$/);
    const dump = await runInDurableObject(org, (_instance, state) =>
      JSON.stringify(state.storage.sql.exec("SELECT * FROM api_tokens").toArray()),
    );
    expect(dump).not.toContain(secret);
    expect(dump).toContain(created.admin.record.id);
  });

  it("keeps tokens, org settings and audit entries across eviction", async () => {
    const org = stub("durable-org");
    const created = await org.createOrg("durable-org", "admin");
    if (!created.ok) throw new Error(created.message);
    const token = await org.createToken({ name: "ci", scope: "read" }, "test");
    if (!token.ok) throw new Error(token.message);
    await org.updateOrg({ rateLimitPerMinute: 77 }, "test");
    // API changes are audited by the API's middleware, one entry per request.
    await org.recordAudit({ actor: "test", tokenId: null, tokenName: null, action: "PATCH /org", target: "", details: {}, ip: null, requestId: "r1", status: 200 });
    await evictDurableObject(org);
    const parts = parseToken(token.created.token);
    if (!parts) throw new Error("unparseable token");
    const auth = await org.authenticate(parts.id, parts.secret);
    expect(auth.ok && auth.identity).toEqual({ org: "durable-org", tokenId: parts.id, tokenName: "ci", scope: "read" });
    expect((await org.getOrg())?.rateLimitPerMinute).toBe(77);
    const actions = await runInDurableObject(org, (_instance, state) =>
      state.storage.sql.exec<{ action: string }>("SELECT action FROM audit_log ORDER BY seq").toArray().map((r) => r.action),
    );
    expect(actions).toEqual(["PATCH /org"]);
  });

  it("refuses expired tokens", async () => {
    const org = stub("expiry");
    const created = await org.createOrg("expiry", "admin");
    if (!created.ok) throw new Error(created.message);
    const token = await org.createToken({ name: "short", scope: "read", ttlSeconds: 60 }, "test");
    if (!token.ok) throw new Error(token.message);
    await runInDurableObject(org, (_instance, state) => {
      state.storage.sql.exec("UPDATE api_tokens SET expires_at = ? WHERE name = 'short'", Date.now() - 1);
    });
    const parts = parseToken(token.created.token);
    if (!parts) throw new Error("unparseable token");
    const auth = await org.authenticate(parts.id, parts.secret);
    expect(auth).toMatchObject({ ok: false, code: "unauthorized" });
  });

  it("an object for an org that was never created authenticates nothing", async () => {
    const auth = await stub("ghost").authenticate("0".repeat(16), "0".repeat(64));
    expect(auth).toMatchObject({ ok: false, code: "unauthorized" });
    expect(await stub("ghost").getOrg()).toBeNull();
  });
});
