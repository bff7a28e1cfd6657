import { DEFAULT_RETRY_BASE_SECONDS } from "../../protocol/webhooks.ts";

/** The webhook settings among the Worker's vars (optional, so any env object has them or not). */
export interface WebhookVars {
  /** "1" lets webhooks target loopback and private addresses: local development only. */
  WEBHOOK_ALLOW_PRIVATE?: string;
  /** Seconds before the first retry (default 10); each later retry waits 4 times longer. */
  WEBHOOK_RETRY_BASE_SECONDS?: string;
}

/** Takes any env: these vars are not declared on the shared env types. */
export function allowPrivateTargets(env: object): boolean {
  return (env as WebhookVars).WEBHOOK_ALLOW_PRIVATE === "1";
}

export function retryBaseSeconds(env: object): number {
  const value = Number((env as WebhookVars).WEBHOOK_RETRY_BASE_SECONDS ?? DEFAULT_RETRY_BASE_SECONDS);
  return Number.isFinite(value) && value > 0 ? value : DEFAULT_RETRY_BASE_SECONDS;
}
