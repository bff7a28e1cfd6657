import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { ObjectsEnv } from "../../durable-objects/env.ts";
import { publishEvent } from "../../durable-objects/webhook/publish.ts";
import { MAX_WEBHOOKS_PER_ORG } from "../../durable-objects/WebhookObject.ts";
import {
  type CreatedWebhook,
  eventMatches,
  eventPatternProblem,
  isInternalHost,
  KEPT_DELIVERIES,
  retryDelayMs,
  type WebhookDeliveryRecord,
  type WebhookPayload,
  type WebhookRecord,
  webhookUrlProblem,
} from "../../protocol/webhooks.ts";
import { buildApiApp } from "../../workers/api/app.ts";
import { onlineAgent } from "./agent-helpers.ts";
import { call, createOrg, createToken } from "./helpers.ts";

/** A POST the control plane made, as the receiver saw it. */
interface Received {
  url: string;
  headers: Headers;
  body: string;
}

const RECEIVER = "http://receiver.test/hooks/zectre";

/**
 * Outbound fetch from the object runs in this isolate, so a spy on the global stands in
 * for the receiver: `answers` are used in order (a number is a status, an Error is thrown),
 * then every POST gets 200.
 */
let received: Received[] = [];
let answers: (number | Error)[] = [];

beforeEach(() => {
  received = [];
  answers = [];
  vi.spyOn(globalThis, "fetch").mockImplementation(async (input, init) => {
    const request = new Request(input, init);
    received.push({ url: request.url, headers: request.headers, body: await request.text() });
    const answer = answers.shift() ?? 200;
    if (answer instanceof Error) throw answer;
    return new Response("thanks", { status: answer });
  });
});
afterEach(() => {
  vi.restoreAllMocks();
});

const webhookObject = (org: string) => env.WEBHOOKS.get(env.WEBHOOKS.idFromName(org));

async function addWebhook(token: string, events: string[], url = RECEIVER): Promise<CreatedWebhook> {
  const res = await call<CreatedWebhook>("POST", "/api/v1/webhooks", { token, body: { url, events } });
  if (res.status !== 201) throw new Error(`adding a webhook failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

async function listWebhooks(token: string): Promise<WebhookRecord[]> {
  return (await call<{ webhooks: WebhookRecord[] }>("GET", "/api/v1/webhooks", { token })).body.webhooks;
}

async function deliveries(token: string, webhookId?: string): Promise<WebhookDeliveryRecord[]> {
  const path = webhookId === undefined ? "/api/v1/webhook-deliveries?limit=1000" : `/api/v1/webhooks/${webhookId}/deliveries`;
  const res = await call<{ deliveries: WebhookDeliveryRecord[] }>("GET", path, { token });
  expect(res.status).toBe(200);
  return res.body.deliveries;
}

/**
 * Runs the org's alarm until `done` holds. The runtime may also fire the alarm by itself,
 * so the test waits for the outcome rather than counting its own runs.
 */
async function settle<T>(org: string, read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  for (let i = 0; i < 200; i++) {
    await runDurableObjectAlarm(webhookObject(org));
    const value = await read();
    if (done(value)) return value;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`the webhook alarm did not settle: ${JSON.stringify(await read())}`);
}

/** Makes the org's pending deliveries due now, instead of sleeping through the backoff. */
async function makeDue(org: string): Promise<void> {
  await runInDurableObject(webhookObject(org), (_instance, state) => {
    state.storage.sql.exec("UPDATE deliveries SET next_attempt_at = ? WHERE status = 'pending'", Date.now() - 1);
  });
}

async function hmacHex(secret: string, message: string): Promise<string> {
  const encoder = new TextEncoder();
  const key = await crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, encoder.encode(message)));
  return Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join("");
}

describe("webhook subscriptions", () => {
  it("adds, lists, shows and removes; the secret is shown once and stored sealed", async () => {
    const { name, adminToken } = await createOrg("wh-crud");
    const created = await addWebhook(adminToken, ["deploy.*", "job.finished"]);
    expect(created.secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    expect(created.webhook).toMatchObject({ url: RECEIVER, events: ["deploy.*", "job.finished"], enabled: true, createdBy: expect.stringMatching(/^token:.+\(admin\)$/) });
    expect(created.webhook.id).toMatch(/^wh_[a-z0-9]{12}$/);

    const listed = await listWebhooks(adminToken);
    expect(listed).toEqual([created.webhook]);
    const shown = await call<{ webhook: WebhookRecord }>("GET", `/api/v1/webhooks/${created.webhook.id}`, { token: adminToken });
    expect(shown.body.webhook).toEqual(created.webhook);
    expect(JSON.stringify(listed) + JSON.stringify(shown.body)).not.toContain(created.secret.slice(6));

    const stored = await runInDurableObject(webhookObject(name), (_i, state) =>
      state.storage.sql.exec<{ secret_sealed: string }>("SELECT secret_sealed FROM hooks").one().secret_sealed,
    );
    expect(stored).toMatch(/^v1\./);
    expect(stored).not.toContain(created.secret.slice(6));

    const removed = await call<{ webhook: WebhookRecord }>("DELETE", `/api/v1/webhooks/${created.webhook.id}`, { token: adminToken });
    expect(removed.status).toBe(200);
    expect(removed.body.webhook.id).toBe(created.webhook.id);
    expect(await listWebhooks(adminToken)).toEqual([]);
    expect((await call("DELETE", `/api/v1/webhooks/${created.webhook.id}`, { token: adminToken })).status).toBe(404);
    expect((await call("GET", "/api/v1/webhooks/not-an-id", { token: adminToken })).status).toBe(404);
  });

  it("needs admin to add, remove or test, and read to list; orgs do not see each other's webhooks", async () => {
    const a = await createOrg("wh-scope-a");
    const b = await createOrg("wh-scope-b");
    const reader = await createToken(a.adminToken, "reader", "read");
    const denied = await call<{ error: { code: string } }>("POST", "/api/v1/webhooks", { token: reader, body: { url: RECEIVER, events: ["*"] } });
    expect(denied.status).toBe(403);
    expect(await listWebhooks(reader)).toEqual([]);
    const created = await addWebhook(a.adminToken, ["*"]);
    expect((await listWebhooks(reader)).map((w) => w.id)).toEqual([created.webhook.id]);
    expect((await call("DELETE", `/api/v1/webhooks/${created.webhook.id}`, { token: reader })).status).toBe(403);
    expect((await call("POST", `/api/v1/webhooks/${created.webhook.id}/test`, { token: reader })).status).toBe(403);
    expect((await call("GET", "/api/v1/webhooks", {})).status).toBe(401);

    expect(await listWebhooks(b.adminToken)).toEqual([]);
    expect((await call("DELETE", `/api/v1/webhooks/${created.webhook.id}`, { token: b.adminToken })).status).toBe(404);
    expect((await call("POST", `/api/v1/webhooks/${created.webhook.id}/test`, { token: b.adminToken })).status).toBe(404);
    expect(await listWebhooks(a.adminToken)).toHaveLength(1);
  });

  it("refuses bad URLs and bad event patterns with 400 and stores nothing", async () => {
    const { adminToken } = await createOrg("wh-bad");
    const cases: [unknown, RegExp][] = [
      [{ url: "ftp://example.com/x", events: ["*"] }, /url: webhook URLs are http or https, not ftp/],
      [{ url: "not a url", events: ["*"] }, /url: 'not a url' is not a URL/],
      [{ url: "https://user:pw@example.com/", events: ["*"] }, /url: webhook URLs may not carry credentials/],
      [{ url: `https://example.com/${"x".repeat(2100)}`, events: ["*"] }, /url/],
      [{ url: RECEIVER, events: [] }, /events: give at least one event pattern/],
      [{ url: RECEIVER, events: ["jobs.*"] }, /events\.0: event pattern 'jobs\.\*' matches no event/],
      [{ url: RECEIVER, events: ["job.*", "job.**"] }, /events\.1: event pattern 'job\.\*\*' is not valid/],
      [{ url: RECEIVER, events: ["Job.finished"] }, /is not valid/],
      [{ url: RECEIVER, events: ["job.*,deploy.*"] }, /is not valid/],
      [{ url: RECEIVER, events: Array.from({ length: 21 }, () => "*") }, /events/],
      [{ url: RECEIVER, events: ["*"], secret: "mine" }, /invalid request body/],
      [{ url: RECEIVER }, /events/],
    ];
    for (const [body, message] of cases) {
      const res = await call<{ error: { code: string; message: string } }>("POST", "/api/v1/webhooks", { token: adminToken, body });
      expect(res.status, JSON.stringify(body).slice(0, 80)).toBe(400);
      expect(res.body.error.code).toBe("invalid_body");
      expect(res.body.error.message).toMatch(message);
    }
    expect((await call("POST", "/api/v1/webhooks", { token: adminToken, rawBody: "{", headers: { "content-type": "application/json" } })).status).toBe(400);
    expect(await listWebhooks(adminToken)).toEqual([]);
  });

  it(`allows at most ${MAX_WEBHOOKS_PER_ORG} webhooks per org`, async () => {
    const { adminToken } = await createOrg("wh-max");
    for (let i = 0; i < MAX_WEBHOOKS_PER_ORG; i++) await addWebhook(adminToken, ["*"], `${RECEIVER}/${i}`);
    const refused = await call<{ error: { code: string; message: string } }>("POST", "/api/v1/webhooks", { token: adminToken, body: { url: RECEIVER, events: ["*"] } });
    expect(refused.status).toBe(409);
    expect(refused.body.error.message).toMatch(/at most 25 webhooks/);
    expect(await listWebhooks(adminToken)).toHaveLength(MAX_WEBHOOKS_PER_ORG);
  });

  it("refuses loopback and private hosts unless WEBHOOK_ALLOW_PRIVATE=1", async () => {
    const { adminToken } = await createOrg("wh-ssrf");
    const app = buildApiApp();
    const production = { ...env, WEBHOOK_ALLOW_PRIVATE: undefined };
    const post = (url: string) =>
      app.fetch(
        new Request("http://api.test/api/v1/webhooks", {
          method: "POST",
          headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
          body: JSON.stringify({ url, events: ["*"] }),
        }),
        production,
      );
    for (const url of ["http://127.0.0.1:8080/x", "http://localhost/x", "http://[::1]/", "http://169.254.169.254/latest/meta-data", "http://10.1.2.3/", "http://0x7f000001/"]) {
      const res = await post(url);
      expect(res.status, url).toBe(400);
      expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/loopback, private or link-local address/);
    }
    expect(await listWebhooks(adminToken)).toEqual([]);
    expect((await post("https://hooks.example.com/zectre")).status).toBe(201);
    // The test environment allows private hosts, as local development does.
    expect((await call("POST", "/api/v1/webhooks", { token: adminToken, body: { url: "http://127.0.0.1:9/x", events: ["*"] } })).status).toBe(201);
    expect(await listWebhooks(adminToken)).toHaveLength(2);
  });
});

describe("event patterns and URL checks", () => {
  it("matches dotted event types by glob", () => {
    const table: [string, string, boolean][] = [
      ["*", "job.finished", true],
      ["*", "deploy.rolled_back", true],
      ["job.*", "job.finished", true],
      ["job.*", "deploy.finished", false],
      ["job.*", "job", false],
      ["deploy.*", "deploy.promoted", true],
      ["deploy.promoted", "deploy.promoted", true],
      ["deploy.promoted", "deploy.promoted.extra", false],
      ["deploy.promoted", "deploy.created", false],
      ["*.failed", "deploy.failed", true],
      ["*.failed", "job.finished", false],
      ["*.failed", "a.b.failed", false],
      ["deploy.*", "deploy.a.b", true],
      ["webhook.test", "webhook.test", true],
    ];
    for (const [pattern, type, expected] of table) expect(eventMatches(pattern, type), `${pattern} ~ ${type}`).toBe(expected);
  });

  it("validates patterns: syntax, and that they match some event", () => {
    for (const good of ["*", "job.*", "deploy.*", "deploy.rolled_back", "*.failed", "webhook.test"]) expect(eventPatternProblem(good), good).toBeNull();
    for (const bad of ["", "job.", ".job", "job..finished", "job.*x", "JOB.*", "job finished", "jobs.*", "deploy.nope", "*.*.*"]) {
      expect(eventPatternProblem(bad), bad).not.toBeNull();
    }
  });

  it("knows internal hosts, as the URL parser normalizes them", () => {
    const host = (url: string) => new URL(url).hostname;
    const internal = ["http://localhost", "http://app.localhost", "http://127.1", "http://2130706433", "http://0.0.0.0", "http://10.0.0.1", "http://172.16.5.4", "http://172.31.255.255",
      "http://192.168.1.1", "http://169.254.169.254", "http://100.64.0.1", "http://[::1]", "http://[::ffff:127.0.0.1]", "http://[fd00::1]", "http://[fe80::1]", "http://printer.local", "http://intranet", "http://224.0.0.1"];
    const external = ["https://example.com", "http://172.32.0.1", "http://8.8.8.8", "http://[2001:db8::1]", "https://hooks.slack.com", "http://100.128.0.1", "http://[::ffff:8.8.8.8]"];
    for (const url of internal) expect(isInternalHost(host(url)), url).toBe(true);
    for (const url of external) expect(isInternalHost(host(url)), url).toBe(false);
    expect(webhookUrlProblem("http://10.0.0.1/x", true)).toBeNull();
    expect(webhookUrlProblem("https://example.com/x#frag", false)).toMatch(/fragment/);
  });

  it("backs off ×4 from the base, with jitter within ±20%", () => {
    expect(retryDelayMs(1, 10, 0)).toBe(8_000);
    expect(retryDelayMs(1, 10, 0.5)).toBe(10_000);
    expect(retryDelayMs(2, 10, 0.5)).toBe(40_000);
    expect(retryDelayMs(5, 10, 0.5)).toBe(2_560_000);
    expect(retryDelayMs(3, 1, 0.999)).toBeLessThan(19_200);
    expect(retryDelayMs(3, 1, 0)).toBe(12_800);
  });
});

describe("deliveries", () => {
  it("POSTs the event, signed with HMAC-SHA256 over '<timestamp>.<body>'", async () => {
    const { name, adminToken } = await createOrg("wh-sign");
    const created = await addWebhook(adminToken, ["webhook.*"]);
    const queued = await call<{ delivery: WebhookDeliveryRecord }>("POST", `/api/v1/webhooks/${created.webhook.id}/test`, { token: adminToken });
    expect(queued.status).toBe(202);
    expect(queued.body.delivery).toMatchObject({ webhookId: created.webhook.id, event: "webhook.test", status: "pending", attempts: [] });

    const [delivery] = await settle(name, () => deliveries(adminToken), (d) => d[0]?.status === "delivered");
    expect(received).toHaveLength(1);
    const post = received[0] as Received;
    expect(post.url).toBe(RECEIVER);
    expect(post.headers.get("content-type")).toBe("application/json");
    expect(post.headers.get("zectre-webhook-id")).toBe(created.webhook.id);
    expect(post.headers.get("zectre-event")).toBe("webhook.test");
    expect(post.headers.get("zectre-delivery")).toBe(queued.body.delivery.id);
    const timestamp = post.headers.get("zectre-timestamp") as string;
    expect(Math.abs(Number(timestamp) - Date.now() / 1000)).toBeLessThan(60);
    expect(post.headers.get("zectre-signature")).toBe(`v1=${await hmacHex(created.secret, `${timestamp}.${post.body}`)}`);
    // A different secret or a changed body would not verify.
    expect(post.headers.get("zectre-signature")).not.toBe(`v1=${await hmacHex(created.secret, `${timestamp}.${post.body} `)}`);

    const payload = JSON.parse(post.body) as WebhookPayload;
    expect(payload).toEqual({ id: delivery?.eventId, type: "webhook.test", org: name, createdAt: expect.any(String), data: { webhookId: created.webhook.id, message: expect.any(String) } });
    expect(delivery?.attempts).toEqual([{ n: 1, at: expect.any(String), durationMs: expect.any(Number), statusCode: 200, error: null }]);
    expect(delivery?.nextAttemptAt).toBeNull();
  });

  it("sends one event to every matching webhook, and to no other", async () => {
    const { name, adminToken } = await createOrg("wh-fanout");
    const jobs = await addWebhook(adminToken, ["job.*"], `${RECEIVER}/jobs`);
    const all = await addWebhook(adminToken, ["*"], `${RECEIVER}/all`);
    const deploys = await addWebhook(adminToken, ["deploy.*"], `${RECEIVER}/deploys`);
    await publishEvent(env, name, "job.finished", { jid: "1", status: "complete" });
    await publishEvent(env, name, "deploy.promoted", { app: "web" });
    const done = await settle(name, () => deliveries(adminToken), (d) => d.length === 4 && d.every((x) => x.status === "delivered"));
    const byHook = (id: string) => done.filter((d) => d.webhookId === id).map((d) => d.event).sort();
    expect(byHook(jobs.webhook.id)).toEqual(["job.finished"]);
    expect(byHook(all.webhook.id)).toEqual(["deploy.promoted", "job.finished"]);
    expect(byHook(deploys.webhook.id)).toEqual(["deploy.promoted"]);
    expect(received.map((r) => r.url).sort()).toEqual([`${RECEIVER}/all`, `${RECEIVER}/all`, `${RECEIVER}/deploys`, `${RECEIVER}/jobs`]);
    // One event, two deliveries, one event id.
    const jobEvents = done.filter((d) => d.event === "job.finished");
    expect(new Set(jobEvents.map((d) => d.eventId)).size).toBe(1);
    expect(new Set(jobEvents.map((d) => d.id)).size).toBe(2);
    expect(await deliveries(adminToken, jobs.webhook.id)).toHaveLength(1);
  });

  it("a job that finishes publishes job.finished", async () => {
    const { name, adminToken } = await createOrg("wh-job");
    await onlineAgent(adminToken, name, "wh-node-1");
    await addWebhook(adminToken, ["job.*"]);
    const job = await call<{ jid: string }>("POST", "/api/v1/jobs", { token: adminToken, body: { target: "wh-node-1", function: "test.ping" } });
    expect(job.status).toBe(202);
    expect((await call("POST", `/api/v1/jobs/${job.body.jid}/cancel`, { token: adminToken })).status).toBe(202);
    await settle(name, () => deliveries(adminToken), (d) => d[0]?.status === "delivered");
    expect(received).toHaveLength(1);
    const payload = JSON.parse((received[0] as Received).body) as WebhookPayload;
    expect(payload).toMatchObject({ type: "job.finished", org: name, data: { jid: job.body.jid, function: "test.ping", target: "wh-node-1", status: "canceled" } });
  });

  it("retries with backoff on errors and gives up after 6 attempts", async () => {
    const { name, adminToken } = await createOrg("wh-retry");
    await addWebhook(adminToken, ["job.*"]);
    answers = [500, new TypeError("connection refused"), 503, 404, 302, 500];
    await publishEvent(env, name, "job.finished", { jid: "x" });
    const base = 10_000;
    for (let n = 1; n <= 6; n++) {
      if (n > 1) await makeDue(name);
      const before = Date.now();
      const [d] = await settle(name, () => deliveries(adminToken), (list) => list[0]?.attempts.length === n);
      expect(received).toHaveLength(n);
      if (n < 6) {
        expect(d?.status).toBe("pending");
        const wait = Date.parse(d?.nextAttemptAt as string) - before;
        const expected = base * 4 ** (n - 1);
        expect(wait).toBeGreaterThanOrEqual(expected * 0.8 - 1000);
        expect(wait).toBeLessThanOrEqual(expected * 1.2 + 1000);
        // Not due yet: running the alarm again sends nothing.
        await runDurableObjectAlarm(webhookObject(name));
        expect(received).toHaveLength(n);
      }
    }
    const [final] = await deliveries(adminToken);
    expect(final?.status).toBe("failed");
    expect(final?.nextAttemptAt).toBeNull();
    expect(final?.attempts.map((a) => [a.n, a.statusCode])).toEqual([[1, 500], [2, null], [3, 503], [4, 404], [5, 302], [6, 500]]);
    expect(final?.attempts[1]?.error).toBe("connection refused");
    expect(final?.attempts.filter((a) => a.error !== null)).toHaveLength(1);
    // Every attempt sends the same body and delivery id; only the timestamp and signature move.
    expect(new Set(received.map((r) => r.body)).size).toBe(1);
    expect(new Set(received.map((r) => r.headers.get("zectre-delivery"))).size).toBe(1);
    await makeDue(name);
    await runDurableObjectAlarm(webhookObject(name));
    expect(received).toHaveLength(6);
  });

  it("500 twice then 200: delivered on the third attempt", async () => {
    const { name, adminToken } = await createOrg("wh-recover");
    await addWebhook(adminToken, ["*"]);
    answers = [500, 500];
    await publishEvent(env, name, "deploy.healthy", { app: "web" });
    await settle(name, () => deliveries(adminToken), (d) => d[0]?.attempts.length === 1);
    await makeDue(name);
    await settle(name, () => deliveries(adminToken), (d) => d[0]?.attempts.length === 2);
    await makeDue(name);
    const [d] = await settle(name, () => deliveries(adminToken), (list) => list[0]?.status === "delivered");
    expect(d?.attempts.map((a) => a.statusCode)).toEqual([500, 500, 200]);
    expect(received).toHaveLength(3);
  });

  it("two alarm runs at once send a due delivery once", async () => {
    const { name, adminToken } = await createOrg("wh-twice");
    const created = await addWebhook(adminToken, ["*"]);
    await runInDurableObject(webhookObject(name), async (instance) => {
      await instance.enqueueTest(name, created.webhook.id);
      await Promise.all([instance.alarm(), instance.alarm(), instance.alarm()]);
    });
    const [d] = await settle(name, () => deliveries(adminToken), (list) => list[0]?.status === "delivered");
    expect(d?.attempts).toHaveLength(1);
    expect(received).toHaveLength(1);
  });

  it("removing a webhook cancels its pending deliveries and keeps their records", async () => {
    const { name, adminToken } = await createOrg("wh-cancel");
    const created = await addWebhook(adminToken, ["*"]);
    answers = [500];
    await publishEvent(env, name, "job.finished", { jid: "y" });
    await settle(name, () => deliveries(adminToken), (d) => d[0]?.attempts.length === 1);
    expect((await call("DELETE", `/api/v1/webhooks/${created.webhook.id}`, { token: adminToken })).status).toBe(200);
    await makeDue(name);
    await runDurableObjectAlarm(webhookObject(name));
    const kept = await deliveries(adminToken, created.webhook.id);
    expect(kept.map((d) => [d.status, d.attempts.length, d.nextAttemptAt])).toEqual([["canceled", 1, null]]);
    expect(received).toHaveLength(1);
    await publishEvent(env, name, "job.finished", { jid: "z" });
    expect(await deliveries(adminToken)).toHaveLength(1);
  });

  it(`keeps the newest ${KEPT_DELIVERIES} deliveries, with their attempts`, async () => {
    const { name, adminToken } = await createOrg("wh-cap");
    const created = await addWebhook(adminToken, ["job.*"]);
    const stub = webhookObject(name);
    await runInDurableObject(stub, async (instance) => {
      for (let i = 0; i < 5; i++) await instance.publish(name, "job.finished", { i });
    });
    await settle(name, () => deliveries(adminToken), (d) => d.length === 5 && d.every((x) => x.status === "delivered"));
    await runInDurableObject(stub, async (instance) => {
      for (let i = 5; i < KEPT_DELIVERIES + 5; i++) await instance.publish(name, "job.finished", { i });
    });
    const counts = await runInDurableObject(stub, (_i, state) => ({
      deliveries: state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM deliveries").one().n,
      orphanAttempts: state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM attempts WHERE delivery_id NOT IN (SELECT id FROM deliveries)").one().n,
      oldest: state.storage.sql.exec<{ body: string }>("SELECT body FROM deliveries ORDER BY seq LIMIT 1").one().body,
    }));
    expect(counts.deliveries).toBe(KEPT_DELIVERIES);
    expect(counts.orphanAttempts).toBe(0);
    expect((JSON.parse(counts.oldest) as WebhookPayload).data).toEqual({ i: 5 });
    const listed = await call<{ deliveries: WebhookDeliveryRecord[] }>("GET", "/api/v1/webhook-deliveries?limit=5000", { token: adminToken });
    expect(listed.body.deliveries).toHaveLength(KEPT_DELIVERIES);
    expect((await call("GET", "/api/v1/webhook-deliveries?limit=2", { token: adminToken })).body.deliveries).toHaveLength(2);
    expect((await call("GET", "/api/v1/webhook-deliveries?limit=0", { token: adminToken })).status).toBe(400);
    expect((await call("GET", "/api/v1/webhooks/wh_000000000000/deliveries", { token: adminToken })).status).toBe(404);
    // Nothing left to send once the spy is gone.
    await call("DELETE", `/api/v1/webhooks/${created.webhook.id}`, { token: adminToken });
  });

  it("publishEvent never throws into its caller", async () => {
    const broken = { ...env, WEBHOOKS: { idFromName: () => { throw new Error("no webhooks here"); } } } as unknown as ObjectsEnv;
    await expect(publishEvent(broken, "any-org", "job.finished", {})).resolves.toBeUndefined();
    // No subscriptions: nothing stored, nothing sent.
    const { name, adminToken } = await createOrg("wh-none");
    await publishEvent(env, name, "job.finished", {});
    expect(await deliveries(adminToken)).toEqual([]);
    expect(received).toEqual([]);
  });
});
