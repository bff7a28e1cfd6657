import { WorkerEntrypoint } from "cloudflare:workers";
import type { OrgObject } from "../../durable-objects/OrgObject.ts";
import { log } from "../lib/log.ts";
import { ZECTRE_VERSION } from "../lib/version.ts";

export interface SchedulerEnv {
  ORG: DurableObjectNamespace<OrgObject>;
}

export interface ReconcileReport {
  trigger: string;
  startedAt: string;
  durationMs: number;
  placed: number;
  stopped: number;
}

/**
 * Placement and reconcile, reached over RPC from the API Worker (service binding
 * SCHEDULER) and by the control plane's cron. Deployments do not exist yet, so a
 * reconcile pass has nothing to place or stop and reports zeros.
 */
export class SchedulerWorker extends WorkerEntrypoint<SchedulerEnv> {
  override async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/healthz") return Response.json({ ok: true, component: "scheduler", version: ZECTRE_VERSION });
    return Response.json({ error: { code: "not_found", message: "the scheduler has no HTTP routes" } }, { status: 404 });
  }

  async reconcile(trigger: string): Promise<ReconcileReport> {
    const started = Date.now();
    const report = { trigger, startedAt: new Date(started).toISOString(), durationMs: 0, placed: 0, stopped: 0 };
    report.durationMs = Date.now() - started;
    log("info", "scheduler", "reconcile pass", { ...report });
    return report;
  }
}

export default SchedulerWorker;
