import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { lastAttempt, parseEventPatterns } from "../../cli/src/commands/webhook.ts";
import type { CreatedWebhook, WebhookDeliveryRecord, WebhookRecord } from "../../protocol/webhooks.ts";
import { expectOk, expectOneErrorLine, lines } from "./helpers/run-cli.ts";
import { useFakeApiCli } from "./helpers/fake-api-cli.ts";

/**
 * `zectre webhook ...`: what each command sends and how it prints the API's answers.
 * The fake API has no webhook routes, so each test gives the answer the real API
 * would (workerd tests cover the API itself) and checks the request the CLI made.
 */

const { api, zectre, quick } = useFakeApiCli();
const webhookRequests = () => api.requests.filter((r) => r.path.startsWith("/api/v1/webhook"));

const HOOK: WebhookRecord = {
  id: "wh_3k9x0a1b2c3d",
  url: "https://hooks.example.com/zectre",
  events: ["deploy.*", "job.*"],
  createdAt: "2026-01-05T10:20:30.000Z",
  createdBy: "token:abc(admin)",
  enabled: true,
};
const SECRET = "whsec_Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXg";

function delivery(overrides: Partial<WebhookDeliveryRecord>): WebhookDeliveryRecord {
  return {
    id: "whd_aaaaaaaaaaaaaaaa",
    webhookId: HOOK.id,
    eventId: "evt_bbbbbbbbbbbbbbbb",
    event: "job.finished",
    url: HOOK.url,
    status: "delivered",
    createdAt: "2026-01-05T10:21:00.000Z",
    nextAttemptAt: null,
    attempts: [],
    ...overrides,
  };
}

describe("zectre webhook add", () => {
  it("sends the URL and the split patterns, and prints the id and the secret once", async () => {
    api.replyNext({ status: 201, body: { webhook: HOOK, secret: SECRET } satisfies CreatedWebhook });
    const out = expectOk(await zectre("webhook", "add", HOOK.url, "--events", "deploy.*, job.*"));
    expect(webhookRequests()).toMatchObject([{ method: "POST", path: "/api/v1/webhooks", body: { url: HOOK.url, events: ["deploy.*", "job.*"] } }]);
    expect(lines(out)).toEqual([
      `Added webhook ${HOOK.id} for deploy.*, job.* → ${HOOK.url}`,
      `Signing secret:  ${SECRET}`,
      "Keep it now: it will not be shown again. Receivers use it to check the zectre-signature header.",
    ]);
  });

  it("accepts repeated --events, and prints the API's answer as JSON with a warning on stderr", async () => {
    api.replyNext({ status: 201, body: { webhook: HOOK, secret: SECRET } });
    const result = await quick("webhook", "add", HOOK.url, "--events", "deploy.promoted", "--events", "deploy.failed,deploy.promoted", "--format", "json");
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ webhook: HOOK, secret: SECRET });
    expect(lines(result.stderr)).toEqual(["zectre: warning: the signing secret above is shown only this once; keep it now"]);
    expect(webhookRequests()[0]?.body).toEqual({ url: HOOK.url, events: ["deploy.promoted", "deploy.failed"] });
  });

  it("refuses bad patterns, a bad URL or no --events in one line, before sending anything", async () => {
    expectOneErrorLine(await zectre("webhook", "add", HOOK.url, "--events", "jobs.*"), /^zectre: error: event pattern 'jobs\.\*' matches no event; events are job\.finished, .*\n$/);
    expectOneErrorLine(await quick("webhook", "add", HOOK.url, "--events", "job.**"), /event pattern 'job\.\*\*' is not valid/);
    expectOneErrorLine(await quick("webhook", "add", "ftp://example.com/x", "--events", "*"), /invalid URL: webhook URLs are http or https, not ftp/);
    expectOneErrorLine(await quick("webhook", "add", "example.com/hook", "--events", "*"), /invalid URL: 'example\.com\/hook' is not a URL/);
    expectOneErrorLine(await quick("webhook", "add", HOOK.url), /give at least one event pattern with --events/);
    expectOneErrorLine(await quick("webhook", "add", "--events", "*"), /URL/);
    expect(webhookRequests()).toEqual([]);
  });

  it("shows the server's refusal in one line", async () => {
    api.replyNext({ status: 400, body: { error: { code: "invalid_body", message: "invalid request body: url: 127.0.0.1 is a loopback, private or link-local address; webhooks go to public hosts only" } } });
    expectOneErrorLine(await zectre("webhook", "add", "http://127.0.0.1:9000/x", "--events", "*"), /^zectre: error: invalid request body: url: 127\.0\.0\.1 is a loopback.* \(invalid_body\)\n$/);
    api.replyNext({ status: 403, body: { error: { code: "forbidden", message: "this action needs the 'admin' scope; the token has 'read'" } } });
    expectOneErrorLine(await quick("webhook", "add", HOOK.url, "--events", "*"), /needs the 'admin' scope.*\(forbidden\)/);
  });
});

describe("zectre webhook list, remove, test", () => {
  it("lists ID URL EVENTS CREATED, or says there are none", async () => {
    api.replyNext({ status: 200, body: { webhooks: [HOOK, { ...HOOK, id: "wh_000000000001", url: "https://ci.example.com/h", events: ["*"] }] } });
    const out = expectOk(await zectre("webhook", "list"));
    expect(lines(out)).toEqual([
      "ID               URL                               EVENTS          CREATED",
      "wh_3k9x0a1b2c3d  https://hooks.example.com/zectre  deploy.*,job.*  2026-01-05 10:20Z",
      "wh_000000000001  https://ci.example.com/h          *               2026-01-05 10:20Z",
    ]);
    expect(webhookRequests()).toMatchObject([{ method: "GET", path: "/api/v1/webhooks" }]);

    api.replyNext({ status: 200, body: { webhooks: [] } });
    expect(expectOk(await quick("webhook", "list"))).toBe("No webhooks. Add one with 'zectre webhook add URL --events PATTERNS'.\n");
    api.replyNext({ status: 200, body: { webhooks: [HOOK] } });
    expect(parseYaml(expectOk(await quick("webhook", "list", "--format", "yaml")))).toEqual({ webhooks: [HOOK] });
  });

  it("removes by id; an unknown one is one error line", async () => {
    api.replyNext({ status: 200, body: { webhook: HOOK } });
    expect(expectOk(await zectre("webhook", "remove", HOOK.id))).toBe(`Removed webhook ${HOOK.id} (${HOOK.url}).\n`);
    expect(webhookRequests()).toMatchObject([{ method: "DELETE", path: `/api/v1/webhooks/${HOOK.id}` }]);
    api.replyNext({ status: 404, body: { error: { code: "not_found", message: `webhook ${HOOK.id} not found` } } });
    expectOneErrorLine(await quick("webhook", "remove", HOOK.id), `zectre: error: webhook ${HOOK.id} not found (not_found)`);
    expectOneErrorLine(await quick("webhook", "remove", "nope"), /invalid webhook id 'nope'/);
    expect(webhookRequests()).toHaveLength(2);
  });

  it("test queues a webhook.test delivery and says where to look", async () => {
    api.replyNext({ status: 202, body: { delivery: delivery({ event: "webhook.test", status: "pending" }) } });
    const out = expectOk(await quick("webhook", "test", HOOK.id));
    expect(lines(out)).toEqual([`Queued test delivery whd_aaaaaaaaaaaaaaaa to ${HOOK.url}.`, `See how it went: zectre webhook deliveries ${HOOK.id}`]);
    expect(webhookRequests()).toMatchObject([{ method: "POST", path: `/api/v1/webhooks/${HOOK.id}/test` }]);
  });
});

describe("zectre webhook deliveries", () => {
  const now = Date.now();
  const ago = (seconds: number) => new Date(now - seconds * 1000).toISOString();
  const attempt = (n: number, statusCode: number | null, error: string | null, secondsAgo: number) => ({ n, at: ago(secondsAgo), durationMs: 12, statusCode, error });

  it("lists DELIVERY EVENT WEBHOOK STATUS ATTEMPTS LAST for all webhooks, or one", async () => {
    const list = [
      delivery({ id: "whd_cccccccccccccccc", status: "pending", nextAttemptAt: ago(-30), attempts: [attempt(1, 500, null, 2400), attempt(2, null, "timed out after 10 s", 1800)] }),
      delivery({ attempts: [attempt(1, 200, null, 7200)] }),
      delivery({ id: "whd_dddddddddddddddd", event: "deploy.promoted", status: "canceled" }),
    ];
    api.replyNext({ status: 200, body: { deliveries: list } });
    const out = expectOk(await zectre("webhook", "deliveries"));
    expect(lines(out)).toEqual([
      "DELIVERY              EVENT            WEBHOOK          STATUS     ATTEMPTS  LAST",
      "whd_cccccccccccccccc  job.finished     wh_3k9x0a1b2c3d  pending    2         timed out after 10 s, 30m ago",
      "whd_aaaaaaaaaaaaaaaa  job.finished     wh_3k9x0a1b2c3d  delivered  1         200, 2h ago",
      "whd_dddddddddddddddd  deploy.promoted  wh_3k9x0a1b2c3d  canceled   0         -",
    ]);
    api.replyNext({ status: 200, body: { deliveries: [] } });
    expect(expectOk(await quick("webhook", "deliveries", HOOK.id, "--limit", "10"))).toBe("No deliveries yet.\n");
    expect(webhookRequests().map((r) => [r.path, r.query.get("limit")])).toEqual([
      ["/api/v1/webhook-deliveries", null],
      [`/api/v1/webhooks/${HOOK.id}/deliveries`, "10"],
    ]);

    api.replyNext({ status: 200, body: { deliveries: list } });
    expect(JSON.parse(expectOk(await quick("webhook", "deliveries", "--format", "json")))).toEqual({ deliveries: list });
  });

  it("checks the id and --limit before asking", async () => {
    expectOneErrorLine(await quick("webhook", "deliveries", "wh_bad"), /invalid webhook id 'wh_bad'/);
    expectOneErrorLine(await quick("webhook", "deliveries", "--limit", "0"), /invalid --limit '0'/);
    expect(webhookRequests()).toEqual([]);
  });

  it("LAST shows the status code, or the error when no answer came, and how long ago", () => {
    expect(lastAttempt(delivery({ attempts: [attempt(1, 503, null, 5)] }), now)).toBe("503, 5s ago");
    expect(lastAttempt(delivery({ attempts: [attempt(1, null, "connection refused", 120)] }), now)).toBe("connection refused, 2m ago");
    expect(lastAttempt(delivery({ attempts: [] }), now)).toBe("-");
  });
});

describe("webhook help and patterns", () => {
  it("splits, trims and dedups patterns, and names the command on mistakes", () => {
    expect(parseEventPatterns(["deploy.*,job.*", " job.* ", "*"], ["webhook", "add"])).toEqual(["deploy.*", "job.*", "*"]);
    expect(() => parseEventPatterns([",", ""], ["webhook", "add"])).toThrow(/at least one event pattern/);
  });

  it("has help with examples and the event list", async () => {
    const group = expectOk(await quick("webhook", "--help"));
    expect(group).toContain("deliveries");
    expect(group).toContain("deploy.rolled_back");
    const add = expectOk(await quick("webhook", "add", "--help"));
    expect(add).toContain("zectre webhook add URL --events PATTERNS");
    expect(add).toContain("zectre webhook add https://hooks.example.com/zectre --events 'deploy.*,job.*'");
    expect(expectOk(await quick("--help"))).toMatch(/webhook/);
  });
});
