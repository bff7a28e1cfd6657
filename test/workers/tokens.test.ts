import { describe, expect, it } from "vitest";
import { call, createOrg, createToken } from "./helpers.ts";

interface TokenList {
  tokens: { id: string; name: string; scope: string; revokedAt: string | null }[];
}

describe("API tokens", () => {
  it("creates, lists and revokes tokens; the plaintext is never listed", async () => {
    const { adminToken } = await createOrg("tok");
    const created = await call<{ token: string; record: { id: string; expiresAt: string | null } }>(
      "POST",
      "/api/v1/tokens",
      { token: adminToken, body: { name: "ci", scope: "operate", ttlSeconds: 3600 } },
    );
    expect(created.status).toBe(201);
    expect(created.body.record.expiresAt).not.toBeNull();
    const listed = await call<TokenList>("GET", "/api/v1/tokens", { token: adminToken });
    expect(listed.body.tokens.map((t) => t.name).sort()).toEqual(["admin", "ci"]);
    expect(JSON.stringify(listed.body)).not.toContain(created.body.token.split("_")[3]);

    const revoked = await call<{ token: { revokedAt: string | null } }>(
      "DELETE",
      `/api/v1/tokens/${created.body.record.id}`,
      { token: adminToken },
    );
    expect(revoked.status).toBe(200);
    expect(revoked.body.token.revokedAt).not.toBeNull();
    const afterRevoke = await call("GET", "/api/v1/whoami", { token: created.body.token });
    expect(afterRevoke.status).toBe(401);
    const again = await call("DELETE", `/api/v1/tokens/${created.body.record.id}`, { token: adminToken });
    expect(again.status).toBe(409);
    const active = await call<TokenList>("GET", "/api/v1/tokens", { token: adminToken });
    expect(active.body.tokens.map((t) => t.name)).toEqual(["admin"]);
    const all = await call<TokenList>("GET", "/api/v1/tokens?all=true", { token: adminToken });
    expect(all.body.tokens).toHaveLength(2);
  });

  it("refuses a second active token with the same name", async () => {
    const { adminToken } = await createOrg("tokdup");
    await createToken(adminToken, "deploy-bot", "operate");
    const res = await call("POST", "/api/v1/tokens", { token: adminToken, body: { name: "deploy-bot", scope: "read" } });
    expect(res.status).toBe(409);
  });

  it("enforces scopes: read and operate tokens cannot manage tokens", async () => {
    const { adminToken } = await createOrg("scopes");
    const read = await createToken(adminToken, "reader", "read");
    const operate = await createToken(adminToken, "operator", "operate");
    for (const token of [read, operate]) {
      const list = await call<{ error: { code: string; message: string } }>("GET", "/api/v1/tokens", { token });
      expect(list.status).toBe(403);
      expect(list.body.error.code).toBe("forbidden");
      expect(list.body.error.message).toContain("'admin' scope");
      const create = await call("POST", "/api/v1/tokens", { token, body: { name: "x", scope: "admin" } });
      expect(create.status).toBe(403);
    }
    const patch = await call("PATCH", "/api/v1/org", { token: operate, body: { rateLimitPerMinute: 5 } });
    expect(patch.status).toBe(403);
    const who = await call<{ identity: { scope: string } }>("GET", "/api/v1/whoami", { token: read });
    expect(who.status).toBe(200);
    expect(who.body.identity.scope).toBe("read");
  });

  it("answers 401 for missing, malformed, unknown and tampered tokens", async () => {
    const { name, adminToken } = await createOrg("auth");
    const other = await createOrg("auth-other");
    const [, , id, secret] = adminToken.split("_");
    const cases = [
      undefined,
      "not-a-token",
      `zt_${name}_${"0".repeat(16)}_${"0".repeat(64)}`,
      `zt_${name}_${id}_${"f".repeat(64)}`,
      // A valid id and secret presented under another org's name must not authenticate there.
      `zt_${other.name}_${id}_${secret}`,
    ];
    for (const token of cases) {
      const res = await call<{ error: { code: string } }>("GET", "/api/v1/whoami", token ? { token } : {});
      expect(res.status, String(token)).toBe(401);
      expect(res.body.error.code).toBe("unauthorized");
    }
  });
});

describe("tenant isolation", () => {
  it("gives 404, never data, for another org's token ids", async () => {
    const a = await createOrg("iso-a");
    const b = await createOrg("iso-b");
    const bToken = await call<{ record: { id: string } }>("POST", "/api/v1/tokens", {
      token: b.adminToken,
      body: { name: "b-ci", scope: "read" },
    });
    const res = await call("DELETE", `/api/v1/tokens/${bToken.body.record.id}`, { token: a.adminToken });
    expect(res.status).toBe(404);
    const bList = await call<TokenList>("GET", "/api/v1/tokens", { token: b.adminToken });
    expect(bList.body.tokens.find((t) => t.name === "b-ci")?.revokedAt).toBeNull();
    const aList = await call<TokenList>("GET", "/api/v1/tokens", { token: a.adminToken });
    expect(aList.body.tokens.map((t) => t.name)).toEqual(["admin"]);
  });
});

describe("bad input changes nothing", () => {
  it("rejects malformed JSON, unknown fields, bad scopes and wrong media type", async () => {
    const { adminToken } = await createOrg("badin");
    const malformed = await call<{ error: { code: string } }>("POST", "/api/v1/tokens", {
      token: adminToken,
      rawBody: '{"name": "x",',
    });
    expect(malformed.status).toBe(400);
    expect(malformed.body.error.code).toBe("invalid_json");

    const unknown = await call<{ error: { code: string; details: { path: string; message: string }[] } }>(
      "POST",
      "/api/v1/tokens",
      { token: adminToken, body: { name: "x", scope: "read", color: "blue" } },
    );
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.code).toBe("invalid_body");
    expect(unknown.body.error.details[0]?.message).toContain("color");

    const badScope = await call<{ error: { details: { path: string }[] } }>("POST", "/api/v1/tokens", {
      token: adminToken,
      body: { name: "x", scope: "root" },
    });
    expect(badScope.status).toBe(400);
    expect(badScope.body.error.details[0]?.path).toBe("scope");

    const badTtl = await call("POST", "/api/v1/tokens", { token: adminToken, body: { name: "x", scope: "read", ttlSeconds: 1 } });
    expect(badTtl.status).toBe(400);

    const text = await call("POST", "/api/v1/tokens", {
      token: adminToken,
      rawBody: "name=x",
      headers: { "content-type": "text/plain" },
    });
    expect(text.status).toBe(415);

    const list = await call<TokenList>("GET", "/api/v1/tokens?all=true", { token: adminToken });
    expect(list.body.tokens.map((t) => t.name)).toEqual(["admin"]);
  });

  it("rejects an oversize body with 413 before reading it", async () => {
    const { adminToken } = await createOrg("big");
    const res = await call<{ error: { code: string } }>("POST", "/api/v1/tokens", {
      token: adminToken,
      rawBody: JSON.stringify({ name: "x", scope: "read", pad: "a".repeat(8000) }),
    });
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe("payload_too_large");
    const list = await call<TokenList>("GET", "/api/v1/tokens", { token: adminToken });
    expect(list.body.tokens).toHaveLength(1);
  });
});
