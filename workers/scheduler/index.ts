import { WorkerEntrypoint } from "cloudflare:workers";
import type { AppObject } from "../../durable-objects/AppObject.ts";
import type { OrgObject } from "../../durable-objects/OrgObject.ts";
import type { RegistryObject } from "../../durable-objects/RegistryObject.ts";
import { log } from "../lib/log.ts";
import { ZECTRE_VERSION } from "../lib/version.ts";
import { type AppReconcileReport, reconcileAll, reconcileApp } from "./reconcile.ts";

export interface SchedulerEnv {
  ORG: DurableObjectNamespace<OrgObject>;
  APP: DurableObjectNamespace<AppObject>;
  REGISTRY: DurableObjectNamespace<RegistryObject>;
}

export interface ReconcileReport extends AppReconcileReport {
  trigger: string;
  startedAt: string;
  durationMs: number;
}

const DEFAULT_LOST_GRACE_SECONDS = 60;

/**
 * Placement and reconcile, reached over RPC from the API Worker (service binding SCHEDULER):
 * right after a deployment changes (one app), and from the control plane's cron (every app).
 */
export class SchedulerWorker extends WorkerEntrypoint<SchedulerEnv> {
  override async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/healthz") return Response.json({ ok: true, component: "scheduler", version: ZECTRE_VERSION });
    return Response.json({ error: { code: "not_found", message: "the scheduler has no HTTP routes" } }, { status: 404 });
  }

  /** The cron's pass over every app. The grace comes from the caller, whose config holds it. */
  async reconcile(trigger: string, lostGraceSeconds: number = DEFAULT_LOST_GRACE_SECONDS): Promise<ReconcileReport> {
    const started = Date.now();
    const counts = await reconcileAll(this.env, lostGraceSeconds * 1000);
    const report = { trigger, startedAt: new Date(started).toISOString(), durationMs: Date.now() - started, ...counts };
    log("info", "scheduler", "reconcile pass", { ...report });
    return report;
  }

  async reconcileApp(org: string, app: string, lostGraceSeconds: number = DEFAULT_LOST_GRACE_SECONDS): Promise<AppReconcileReport> {
    const report = await reconcileApp(this.env, org, app, lostGraceSeconds * 1000);
    log("info", "scheduler", "app reconciled", { org, app, ...report });
    return report;
  }
}

export default SchedulerWorker;
