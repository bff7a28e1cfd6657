import {
  type CreatedWebhook,
  EVENT_TYPES,
  eventPatternProblem,
  KEPT_DELIVERIES,
  MAX_PATTERNS,
  WEBHOOK_ID_PATTERN,
  type WebhookDeliveryRecord,
  type WebhookRecord,
  webhookUrlProblem,
} from "../../../protocol/webhooks.ts";
import type { ApiClient } from "../client.ts";
import { defineCommand, defineGroup, type Entry } from "../command.ts";
import { UsageError } from "../errors.ts";
import { formatAgo, formatTime, table } from "../output.ts";

const group = defineGroup({
  path: ["webhook"],
  summary: "Send events (jobs finishing, deployments changing) to your own HTTP endpoints",
  description:
    "A webhook POSTs each matching event as JSON to a URL, signed with HMAC-SHA256 in the zectre-signature header " +
    "(the README shows how to verify it). Failed deliveries are retried with backoff, up to 6 attempts; " +
    `every attempt is recorded (the last ${KEPT_DELIVERIES} deliveries are kept). Events: ${EVENT_TYPES.join(", ")}.`,
});

const ID_ARG = { name: "id", required: true, description: "The webhook's id (wh_...), as 'zectre webhook list' shows it" } as const;

function checkId(id: string, commandPath: readonly string[]): string {
  if (!WEBHOOK_ID_PATTERN.test(id)) throw new UsageError(`invalid webhook id '${id}': ids look like wh_ followed by 12 letters and digits`, commandPath);
  return id;
}

/** `--events a,b --events c` → `[a, b, c]`, each checked as the server would. */
export function parseEventPatterns(values: readonly string[], commandPath: readonly string[]): string[] {
  const patterns = [...new Set(values.flatMap((value) => value.split(",")).map((p) => p.trim()).filter((p) => p !== ""))];
  if (patterns.length === 0) throw new UsageError("give at least one event pattern with --events, e.g. --events 'deploy.*,job.*'", commandPath);
  if (patterns.length > MAX_PATTERNS) throw new UsageError(`at most ${MAX_PATTERNS} event patterns per webhook`, commandPath);
  for (const pattern of patterns) {
    const problem = eventPatternProblem(pattern);
    if (problem) throw new UsageError(problem, commandPath);
  }
  return patterns;
}

const api = {
  add: (client: ApiClient, url: string, events: string[]) => client.request<CreatedWebhook>("POST", "/api/v1/webhooks", { body: { url, events } }),
  list: (client: ApiClient) => client.request<{ webhooks: WebhookRecord[] }>("GET", "/api/v1/webhooks"),
  remove: (client: ApiClient, id: string) => client.request<{ webhook: WebhookRecord }>("DELETE", `/api/v1/webhooks/${encodeURIComponent(id)}`),
  test: (client: ApiClient, id: string) => client.request<{ delivery: WebhookDeliveryRecord }>("POST", `/api/v1/webhooks/${encodeURIComponent(id)}/test`),
  deliveries: (client: ApiClient, id: string | undefined, limit: number | undefined) => {
    const query = limit === undefined ? "" : `?limit=${limit}`;
    const path = id === undefined ? `/api/v1/webhook-deliveries${query}` : `/api/v1/webhooks/${encodeURIComponent(id)}/deliveries${query}`;
    return client.request<{ deliveries: WebhookDeliveryRecord[] }>("GET", path);
  },
};

const add = defineCommand({
  path: ["webhook", "add"],
  usage: "zectre webhook add URL --events PATTERNS",
  summary: "Subscribe a URL to events; prints the signing secret this once",
  description:
    "PATTERNS is a comma-separated list of event types or globs over them: '*' matches any one part, and a final '*' " +
    "the rest ('job.*', 'deploy.*', '*.failed', '*'). The URL must be http or https; a deployed control plane " +
    "refuses loopback and private addresses. Needs the admin scope.",
  options: {
    events: { type: "string", valueName: "PATTERNS", multiple: true, description: "Which events to send, e.g. 'deploy.*,job.*'" },
  },
  positionals: [{ name: "url", required: true, description: "Where to POST the events" }],
  examples: [
    "zectre webhook add https://hooks.example.com/zectre --events 'deploy.*,job.*'",
    "zectre webhook add https://ci.example.com/hook --events deploy.promoted --events deploy.failed",
  ],
  async run(ctx) {
    const path = ["webhook", "add"];
    const events = parseEventPatterns(ctx.options.events, path);
    const urlProblem = webhookUrlProblem(ctx.args.url, true);
    if (urlProblem) throw new UsageError(`invalid URL: ${urlProblem}`, path);
    const created = await api.add(ctx.client(), ctx.args.url, events);
    ctx.out.result(created, (c) => [
      `Added webhook ${created.webhook.id} for ${created.webhook.events.join(", ")} → ${created.webhook.url}`,
      "",
      `Signing secret:  ${c.bold(created.secret)}`,
      "",
      c.yellow("Keep it now: it will not be shown again. Receivers use it to check the zectre-signature header."),
    ]);
    if (ctx.out.format !== "text") ctx.out.warn("the signing secret above is shown only this once; keep it now");
  },
});

const list = defineCommand({
  path: ["webhook", "list"],
  summary: "List the org's webhooks",
  examples: ["zectre webhook list", "zectre webhook list --format json"],
  async run(ctx) {
    const result = await api.list(ctx.client());
    ctx.out.result(result, (c) => {
      if (result.webhooks.length === 0) return "No webhooks. Add one with 'zectre webhook add URL --events PATTERNS'.";
      const rows = result.webhooks.map((hook) => [hook.id, hook.url, hook.events.join(","), formatTime(hook.createdAt, "-")]);
      return table(["ID", "URL", "EVENTS", "CREATED"], rows, c);
    });
  },
});

const remove = defineCommand({
  path: ["webhook", "remove"],
  summary: "Remove a webhook; its pending deliveries are canceled, its delivery records stay",
  positionals: [ID_ARG],
  examples: ["zectre webhook remove wh_3k9x0a1b2c3d"],
  async run(ctx) {
    const id = checkId(ctx.args.id, ["webhook", "remove"]);
    const result = await api.remove(ctx.client(), id);
    ctx.out.result(result, () => `Removed webhook ${result.webhook.id} (${result.webhook.url}).`);
  },
});

/** The last attempt's answer and when: `500, 2m ago`, `timed out after 10 s, 5s ago`, `-` before the first. */
export function lastAttempt(delivery: WebhookDeliveryRecord, now: number = Date.now()): string {
  const last = delivery.attempts.at(-1);
  if (!last) return "-";
  const answer = last.statusCode === null ? (last.error ?? "no answer") : String(last.statusCode);
  return `${answer}, ${formatAgo(last.at, "-", now)}`;
}

const deliveries = defineCommand({
  path: ["webhook", "deliveries"],
  usage: "zectre webhook deliveries [ID] [--limit N]",
  summary: "Show recent deliveries, newest first: of one webhook, or of all",
  description:
    "STATUS is pending (waiting for its next attempt), delivered (a 2xx answer), failed (6 attempts without one) " +
    "or canceled (its webhook was removed). --format json shows every attempt with its status code or error and duration.",
  options: {
    limit: { type: "string", short: "n", valueName: "N", description: `At most N deliveries (default 50, at most ${KEPT_DELIVERIES})` },
  },
  positionals: [{ name: "id", description: "Only this webhook's deliveries" }],
  examples: ["zectre webhook deliveries", "zectre webhook deliveries wh_3k9x0a1b2c3d --limit 10", "zectre webhook deliveries --format json"],
  async run(ctx) {
    const path = ["webhook", "deliveries"];
    const id = ctx.args.id === undefined ? undefined : checkId(ctx.args.id, path);
    let limit: number | undefined;
    if (ctx.options.limit !== undefined) {
      if (!/^\d{1,6}$/.test(ctx.options.limit) || Number(ctx.options.limit) < 1) {
        throw new UsageError(`invalid --limit '${ctx.options.limit}': give a whole number from 1`, path);
      }
      limit = Number(ctx.options.limit);
    }
    const result = await api.deliveries(ctx.client(), id, limit);
    ctx.out.result(result, (c) => {
      if (result.deliveries.length === 0) return "No deliveries yet.";
      const rows = result.deliveries.map((d) => [d.id, d.event, d.webhookId, d.status, String(d.attempts.length), lastAttempt(d)]);
      return table(["DELIVERY", "EVENT", "WEBHOOK", "STATUS", "ATTEMPTS", "LAST"], rows, c);
    });
  },
});

const test = defineCommand({
  path: ["webhook", "test"],
  summary: "Send a webhook.test event to one webhook, whatever its patterns",
  description: "The delivery is queued and sent within moments; 'zectre webhook deliveries ID' shows how it went.",
  positionals: [ID_ARG],
  examples: ["zectre webhook test wh_3k9x0a1b2c3d"],
  async run(ctx) {
    const id = checkId(ctx.args.id, ["webhook", "test"]);
    const result = await api.test(ctx.client(), id);
    ctx.out.result(result, () => [
      `Queued test delivery ${result.delivery.id} to ${result.delivery.url}.`,
      `See how it went: zectre webhook deliveries ${id}`,
    ]);
  },
});

export const webhookCommands: readonly Entry[] = [group, add, list, remove, deliveries, test];
