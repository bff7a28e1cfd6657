import { DurableObject } from "cloudflare:workers";
import type { ObjectsEnv } from "./env.ts";

/** One per app: deployments (immutable), tasks and their placements, env and encrypted secrets, logs. */
export class AppObject extends DurableObject<ObjectsEnv> {}
