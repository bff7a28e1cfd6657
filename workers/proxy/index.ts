import { log } from "../lib/log.ts";
import { ZECTRE_VERSION } from "../lib/version.ts";
import { refusal } from "./checks.ts";
import type { ProxyEnv } from "./env.ts";
import { forward } from "./forward.ts";
import { type ProxiedApp, recordProxyRequest } from "./metrics.ts";
import { page } from "./pages.ts";
import { healthyTasks, resolveHost, rotation } from "./resolve.ts";

export type { ProxyEnv } from "./env.ts";

/** Clients are told to come back after this many seconds when nothing healthy serves the host. */
const RETRY_AFTER_SECONDS = 5;

/**
 * The edge proxy: host name → app and deployment → a healthy task → its node
 * object, which carries the request through the agent's WebSocket to
 * 127.0.0.1:<task port> on that host.
 */
export async function handleProxy(request: Request, env: ProxyEnv, resolved?: (target: ProxiedApp) => void): Promise<Response> {
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
  if (route.tasks.length === 0) {
    const what = route.deploymentId === null ? `app ${target.app} has no promoted deployment` : `deployment ${route.deploymentId} has no healthy task`;
    return page("unavailable", `${what}; try again shortly`, { "retry-after": String(RETRY_AFTER_SECONDS) });
  }
  const tasks = rotation(`${target.org}/${target.app}/${route.deploymentId}`, route.tasks);
  return forward(env, request, target, tasks);
}

export default {
  // The runtime always passes ctx; tests calling this directly may not, and then nothing is counted.
  async fetch(request: Request, env: ProxyEnv, ctx?: ExecutionContext) {
    const started = Date.now();
    const seen: { target: ProxiedApp | null } = { target: null };
    const response = await handleProxy(request, env, (target) => (seen.target = target));
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
