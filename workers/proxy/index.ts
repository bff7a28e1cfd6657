import type { RouteTasks } from "../../protocol/tunnel.ts";
import { log } from "../lib/log.ts";
import { ZECTRE_VERSION } from "../lib/version.ts";
import { type Background, noteRequest } from "./activity.ts";
import { refusal } from "./checks.ts";
import type { ProxyEnv } from "./env.ts";
import { forward } from "./forward.ts";
import { type ProxiedApp, recordProxyRequest } from "./metrics.ts";
import { page } from "./pages.ts";
import { healthyTasks, type HostTarget, resolveHost, rotation } from "./resolve.ts";
import { wakeAndHold } from "./wake.ts";

export type { ProxyEnv } from "./env.ts";

/** Clients are told to come back after this many seconds when nothing healthy serves the host. */
const RETRY_AFTER_SECONDS = 5;

/**
 * The edge proxy: host name → app and deployment → a healthy task → its node
 * object, which carries the request through the agent's WebSocket to
 * 127.0.0.1:<task port> on that host. `background` runs work after the response (the runtime's ctx.waitUntil).
 */
export async function handleProxy(
  request: Request,
  env: ProxyEnv,
  resolved?: (target: ProxiedApp) => void,
  background: Background = (work) => void work,
): Promise<Response> {
  const url = new URL(request.url);
  const host = (request.headers.get("host") ?? url.host).toLowerCase();
  if (url.pathname === "/healthz" && host.replace(/:\d+$/, "") === env.PREVIEW_DOMAIN) {
    return Response.json({ ok: true, component: "proxy", version: ZECTRE_VERSION, previewDomain: env.PREVIEW_DOMAIN });
  }
  const refused = refusal(request);
  if (refused) return refused;
  const target = await resolveHost(env, host);
  if (!target) return page("not_found", `no app or deployment is served at '${host.replace(/:\d+$/, "")}'`);
  resolved?.(target);
  const route = await healthyTasks(env, target);
  if (!route) return page("not_found", `no app or deployment is served at '${host.replace(/:\d+$/, "")}'`);
  const serving = route.tasks.length > 0 ? route : await whenNoneHealthy(env, target, route);
  if (serving instanceof Response) return serving;
  noteRequest(env, target, serving, background);
  const tasks = rotation(`${target.org}/${target.app}/${serving.deploymentId}`, serving.tasks);
  return forward(env, request, target, tasks);
}

/** Nothing healthy: a deployment scaled to zero is woken and the request held until it serves; anything else is a 503 at once. */
async function whenNoneHealthy(env: ProxyEnv, target: HostTarget, route: RouteTasks): Promise<RouteTasks | Response> {
  const retry = { "retry-after": String(RETRY_AFTER_SECONDS) };
  const woken = route.deploymentId !== null && route.idle?.scalesToZero ? await wakeAndHold(env, target, route.deploymentId) : null;
  if (woken?.kind === "ready") return woken.route;
  if (woken?.kind === "timeout") return page("unavailable", `deployment ${route.deploymentId} is waking up; try again shortly`, retry);
  const what = route.deploymentId === null ? `app ${target.app} has no promoted deployment` : `deployment ${route.deploymentId} has no healthy task`;
  return page("unavailable", `${what}; try again shortly`, retry);
}

export default {
  // The runtime always passes ctx; tests calling this directly may not, and then nothing is counted.
  async fetch(request: Request, env: ProxyEnv, ctx?: ExecutionContext) {
    const started = Date.now();
    const seen: { target: ProxiedApp | null } = { target: null };
    const background = ctx ? (work: Promise<unknown>) => ctx.waitUntil(work) : undefined;
    const response = await handleProxy(request, env, (target) => (seen.target = target), background);
    if (seen.target && ctx) recordProxyRequest(env, ctx, seen.target, response.status, (Date.now() - started) / 1000);
    log(response.status >= 500 ? "warn" : "info", "proxy", "request", {
      host: request.headers.get("host"),
      method: request.method,
      path: new URL(request.url).pathname,
      status: response.status,
      durationMs: Date.now() - started,
    });
    return response;
  },
} satisfies ExportedHandler<ProxyEnv>;
