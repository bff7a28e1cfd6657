import { Hono } from "hono";
import { webhookStub } from "../../../durable-objects/env.ts";
import { allowPrivateTargets } from "../../../durable-objects/webhook/vars.ts";
import { CreateWebhookBody, KEPT_DELIVERIES, WEBHOOK_ID_PATTERN, webhookUrlProblem } from "../../../protocol/webhooks.ts";
import { actorOf, authenticate, requireScope } from "../auth.ts";
import { limitBody, readJson } from "../body.ts";
import type { ApiContext } from "../env.ts";
import { ApiError, unwrap } from "../errors.ts";

const BODY_LIMIT = 16 * 1024;
const DEFAULT_DELIVERY_LIMIT = 50;

function webhookId(raw: string): string {
  // Anything that is not a webhook id cannot name one: same answer as an unknown one.
  if (!WEBHOOK_ID_PATTERN.test(raw)) throw new ApiError("not_found", `webhook ${raw} not found`);
  return raw;
}

function deliveryLimit(raw: string | undefined): number {
  if (raw === undefined) return DEFAULT_DELIVERY_LIMIT;
  const limit = Number(raw);
  if (!Number.isInteger(limit) || limit < 1) throw new ApiError("bad_request", `limit must be a whole number from 1 to ${KEPT_DELIVERIES}`);
  return Math.min(limit, KEPT_DELIVERIES);
}

/** Subscriptions and their delivery records. Reading needs `read`; anything that sends or changes needs `admin`. */
export const webhookRoutes = new Hono<ApiContext>()
  .use("/webhooks", authenticate())
  .use("/webhooks/*", authenticate())
  .use("/webhook-deliveries", authenticate())
  .post("/webhooks", requireScope("admin"), limitBody(BODY_LIMIT), async (c) => {
    const body = await readJson(c, CreateWebhookBody);
    // The shape was checked by the schema; whether private hosts are allowed depends on this deployment.
    const problem = webhookUrlProblem(body.url, allowPrivateTargets(c.env));
    if (problem) throw new ApiError("invalid_body", `invalid request body: url: ${problem}`);
    const identity = c.get("identity");
    const created = unwrap(await webhookStub(c.env, identity.org).add(identity.org, { url: body.url, events: body.events, createdBy: actorOf(identity) }));
    return c.json({ webhook: created.webhook, secret: created.secret }, 201);
  })
  .get("/webhooks", async (c) => c.json({ webhooks: await webhookStub(c.env, c.get("identity").org).list() }))
  .get("/webhooks/:id", async (c) => {
    const id = webhookId(c.req.param("id"));
    const webhook = await webhookStub(c.env, c.get("identity").org).get(id);
    if (!webhook) throw new ApiError("not_found", `webhook ${id} not found`);
    return c.json({ webhook });
  })
  .delete("/webhooks/:id", requireScope("admin"), async (c) => {
    const id = webhookId(c.req.param("id"));
    const removed = unwrap(await webhookStub(c.env, c.get("identity").org).remove(id));
    return c.json({ webhook: removed.webhook });
  })
  .post("/webhooks/:id/test", requireScope("admin"), async (c) => {
    const id = webhookId(c.req.param("id"));
    const org = c.get("identity").org;
    const queued = unwrap(await webhookStub(c.env, org).enqueueTest(org, id));
    return c.json({ delivery: queued.delivery }, 202);
  })
  .get("/webhooks/:id/deliveries", async (c) => {
    const id = webhookId(c.req.param("id"));
    const limit = deliveryLimit(c.req.query("limit"));
    const result = unwrap(await webhookStub(c.env, c.get("identity").org).listDeliveries(limit, id));
    return c.json({ deliveries: result.deliveries });
  })
  .get("/webhook-deliveries", async (c) => {
    const limit = deliveryLimit(c.req.query("limit"));
    const result = unwrap(await webhookStub(c.env, c.get("identity").org).listDeliveries(limit));
    return c.json({ deliveries: result.deliveries });
  });
