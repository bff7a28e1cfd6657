import { log } from "../lib/log.ts";
import { buildApiApp } from "./app.ts";
import { lostGraceSeconds } from "./routes/apps.ts";
import type { ApiEnv } from "./env.ts";

export { AppObject } from "../../durable-objects/AppObject.ts";
export { HostRouteObject } from "../../durable-objects/HostRouteObject.ts";
export { JobObject } from "../../durable-objects/JobObject.ts";
export { NodeObject } from "../../durable-objects/NodeObject.ts";
export { OrgObject } from "../../durable-objects/OrgObject.ts";
export { RegistryObject } from "../../durable-objects/RegistryObject.ts";
export { WebhookObject } from "../../durable-objects/WebhookObject.ts";

const app = buildApiApp();

export default {
  fetch: app.fetch,
  /** The cron lives here (one trigger for the control plane); the work is the scheduler's. */
  async scheduled(controller, env, ctx) {
    ctx.waitUntil(
      env.SCHEDULER.reconcile(controller.cron, lostGraceSeconds(env)).then(
        (report) => log("info", "api", "reconcile finished", { ...report }),
        (error: unknown) => log("error", "api", "reconcile failed", { error: String(error) }),
      ),
    );
  },
} satisfies ExportedHandler<ApiEnv>;
