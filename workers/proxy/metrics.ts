import { MetricsBatcher } from "../lib/metrics-batcher.ts";
import type { ProxyEnv } from "./env.ts";

/** Who a proxied request was for, once the host resolved to an app. */
export interface ProxiedApp {
  org: string;
  app: string;
}

/**
 * One batcher per isolate: a request adds to memory only, and each org's counts reach its
 * org object in at most one `recordMetrics` call a second (see MetricsBatcher for the window
 * this loses if the isolate dies). The env is the latest request's; every request has the same bindings.
 */
let latestEnv: ProxyEnv | null = null;
const batcher = new MetricsBatcher(async (org, deltas) => {
  if (!latestEnv) return;
  await latestEnv.ORG.get(latestEnv.ORG.idFromName(org)).recordMetrics(deltas);
});

/** Counts a request by app and status and observes the time until its response headers. Hosts that named no app are not counted. */
export function recordProxyRequest(env: ProxyEnv, ctx: Pick<ExecutionContext, "waitUntil">, target: ProxiedApp, status: number, seconds: number): void {
  latestEnv = env;
  batcher.record(target.org, (promise) => ctx.waitUntil(promise), (metrics) => {
    metrics.count("zectre_proxy_requests_total", { app: target.app, code: String(status) });
    metrics.observe("zectre_proxy_request_duration_seconds", { app: target.app }, seconds);
  });
}
