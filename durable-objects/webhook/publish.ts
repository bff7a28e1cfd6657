import type { JsonObject } from "../../protocol/json.ts";
import { log } from "../../workers/lib/log.ts";
import { type ObjectsEnv, webhookStub } from "../env.ts";

/**
 * Hands an event to the org's webhooks: the WebhookObject stores one delivery per
 * matching subscription before this returns, and sends them from its alarm.
 * Never throws: a webhook problem must not fail the job or deployment that caused the event.
 */
export async function publishEvent(env: ObjectsEnv, org: string, type: string, data: JsonObject): Promise<void> {
  try {
    await webhookStub(env, org).publish(org, type, data);
  } catch (error) {
    log("error", "webhooks", "publishing an event failed; its webhooks will not fire", { org, type, error: String(error) });
  }
}
