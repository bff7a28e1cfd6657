import { DurableObject } from "cloudflare:workers";
import type { ObjectsEnv } from "./env.ts";

/** One per org: webhook subscriptions, the signed delivery queue with retries, and delivery records. */
export class WebhookObject extends DurableObject<ObjectsEnv> {}
