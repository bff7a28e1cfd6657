import { describe, expect, it } from "vitest";
import { call } from "./helpers.ts";

describe("GET /healthz", () => {
  it("answers without auth and mints a request id", async () => {
    const res = await call("GET", "/healthz");
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ ok: true, component: "api" });
    expect(res.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("echoes a well-formed X-Request-ID and replaces a malformed one", async () => {
    const echoed = await call("GET", "/healthz", { headers: { "x-request-id": "req-abc.123" } });
    expect(echoed.headers.get("x-request-id")).toBe("req-abc.123");
    const replaced = await call("GET", "/healthz", { headers: { "x-request-id": "bad id with spaces" } });
    expect(replaced.headers.get("x-request-id")).not.toBe("bad id with spaces");
    expect(replaced.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("answers unknown routes with a JSON 404", async () => {
    const res = await call("GET", "/api/v1/nope");
    expect(res.status).toBe(404);
    expect(res.body).toEqual({ error: { code: "not_found", message: "no route for GET /api/v1/nope" } });
  });
});
