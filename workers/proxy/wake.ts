import type { RouteTasks } from "../../protocol/tunnel.ts";
import { log } from "../lib/log.ts";
import { type ProxyEnv, wakeTimeoutMs } from "./env.ts";
import { freshHealthyTasks, type HostTarget } from "./resolve.ts";

/** How often a held request asks again whether the waking deployment has a healthy task. */
const POLL_MS = 250;

export type WakeOutcome = { kind: "ready"; route: RouteTasks } | { kind: "timeout" } | { kind: "not_wakeable" };

/**
 * A deployment scaled to zero got a request: its app object is asked to wake it (idempotent, so every
 * held request asks, and the first one's call does the work), then the request is held, reading the route
 * fresh each time (past the proxy's 2 s cache), until a task is healthy or the wake timeout passes. The
 * request's body is untouched meanwhile, so it is forwarded whole afterwards.
 */
export async function wakeAndHold(env: ProxyEnv, target: HostTarget, deploymentId: string): Promise<WakeOutcome> {
  const deadline = Date.now() + wakeTimeoutMs(env);
  const app = env.APP.get(env.APP.idFromName(`${target.org}/${target.app}`));
  try {
    if ((await app.wake(deploymentId)) === "not_wakeable") return { kind: "not_wakeable" };
  } catch (error) {
    log("warn", "proxy", "wake failed", { org: target.org, app: target.app, deploymentId, error: String(error) });
    return { kind: "timeout" };
  }
  while (Date.now() < deadline) {
    await sleep(Math.min(POLL_MS, deadline - Date.now()));
    const route = await servingRoute(env, target);
    if (route !== null) return { kind: "ready", route };
  }
  return { kind: "timeout" };
}

/** The route once it has a healthy task; a failed read is only a missed look (the next one may work). */
async function servingRoute(env: ProxyEnv, target: HostTarget): Promise<RouteTasks | null> {
  try {
    const route = await freshHealthyTasks(env, target);
    return route !== null && route.tasks.length > 0 ? route : null;
  } catch (error) {
    log("warn", "proxy", "route read failed while waking", { org: target.org, app: target.app, error: String(error) });
    return null;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}
