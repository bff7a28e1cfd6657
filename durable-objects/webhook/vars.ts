import { DEFAULT_RETRY_BASE_SECONDS } from "../../protocol/webhooks.ts";
import type { ObjectsEnv } from "../env.ts";

type WebhookVars = Pick<ObjectsEnv, "WEBHOOK_ALLOW_PRIVATE" | "WEBHOOK_RETRY_BASE_SECONDS">;

export function allowPrivateTargets(env: WebhookVars): boolean {
  return env.WEBHOOK_ALLOW_PRIVATE === "1";
}

export function retryBaseSeconds(env: WebhookVars): number {
  const value = Number(env.WEBHOOK_RETRY_BASE_SECONDS ?? DEFAULT_RETRY_BASE_SECONDS);
  return Number.isFinite(value) && value > 0 ? value : DEFAULT_RETRY_BASE_SECONDS;
}
