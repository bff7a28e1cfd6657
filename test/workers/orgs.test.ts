import { describe, expect, it } from "vitest";
import { call, createOrg, OPERATOR } from "./helpers.ts";

describe("POST /api/v1/orgs (operator)", () => {
  it("creates an org with an admin token shown once", async () => {
    const res = await call<{ org: { name: string }; admin: { token: string; record: { scope: string } } }>(
      "POST",
      "/api/v1/orgs",
      { token: OPERATOR, body: { name: "acme-create" } },
    );
    expect(res.status).toBe(201);
    expect(res.body.org.name).toBe("acme-create");
    expect(res.body.admin.record.scope).toBe("admin");
    expect(res.body.admin.token).toMatch(/^zt_acme-create_[0-9a-f]{16}_[0-9a-f]{64}$/);
    const who = await call<{ identity: { org: string } }>("GET", "/api/v1/whoami", { token: res.body.admin.token });
    expect(who.body.identity.org).toBe("acme-create");
  });

  it("refuses a second org of the same name with 409", async () => {
    const { name } = await createOrg("dup");
    const res = await call("POST", "/api/v1/orgs", { token: OPERATOR, body: { name } });
    expect(res.status).toBe(409);
    expect(res.body).toMatchObject({ error: { code: "conflict" } });
  });

  it("needs the operator secret", async () => {
    const { adminToken } = await createOrg("notop");
    const withAdmin = await call("POST", "/api/v1/orgs", { token: adminToken, body: { name: "sneaky" } });
    expect(withAdmin.status).toBe(401);
    const without = await call("POST", "/api/v1/orgs", { body: { name: "sneaky" } });
    expect(without.status).toBe(401);
    // Nothing was created: the operator can still create it.
    const real = await call("POST", "/api/v1/orgs", { token: OPERATOR, body: { name: "sneaky" } });
    expect(real.status).toBe(201);
  });

  it("rejects bad org names with the zod issue path", async () => {
    const res = await call<{ error: { code: string; message: string; details: { path: string }[] } }>(
      "POST",
      "/api/v1/orgs",
      { token: OPERATOR, body: { name: "Bad_Name" } },
    );
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("invalid_body");
    expect(res.body.error.message).toMatch(/^invalid request body: name: /);
    expect(res.body.error.details[0]?.path).toBe("name");
  });
});

describe("GET/PATCH /api/v1/org", () => {
  it("shows the caller's org and hides every other org as 404", async () => {
    const a = await createOrg("tenant-a");
    const b = await createOrg("tenant-b");
    const own = await call<{ org: { name: string } }>("GET", `/api/v1/orgs/${a.name}`, { token: a.adminToken });
    expect(own.status).toBe(200);
    expect(own.body.org.name).toBe(a.name);
    const foreign = await call("GET", `/api/v1/orgs/${b.name}`, { token: a.adminToken });
    const missing = await call("GET", "/api/v1/orgs/no-such-org", { token: a.adminToken });
    expect(foreign.status).toBe(404);
    expect(foreign.body).toEqual(missing.body);
  });

  it("lets admins set the rate limit, and enforces it with 429 and Retry-After", async () => {
    const { adminToken } = await createOrg("limited");
    const patched = await call<{ org: { rateLimitPerMinute: number } }>("PATCH", "/api/v1/org", {
      token: adminToken,
      body: { rateLimitPerMinute: 3 },
    });
    expect(patched.status).toBe(200);
    expect(patched.body.org.rateLimitPerMinute).toBe(3);
    const statuses: number[] = [];
    let retryAfter: string | null = null;
    for (let i = 0; i < 5; i++) {
      const res = await call("GET", "/api/v1/org", { token: adminToken });
      statuses.push(res.status);
      if (res.status === 429) retryAfter = res.headers.get("retry-after");
    }
    // A new limit applies from the next request: the bucket is clamped to its size.
    expect(statuses.slice(0, 3)).toEqual([200, 200, 200]);
    expect(statuses.slice(3)).toEqual([429, 429]);
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
  });
});
