import type { RouteTasks } from "../../protocol/tunnel.ts";
import { log } from "../lib/log.ts";
import type { ProxyEnv } from "./env.ts";
import type { HostTarget } from "./resolve.ts";

/** Runs work after the response is sent (the runtime's `ctx.waitUntil`). */
export type Background = (work: Promise<unknown>) => void;

/** Per isolate: when each deployment's app object was last told about requests. */
const lastTouch = new Map<string, number>();
const MAX_TRACKED = 10_000;

/**
 * Keeps a deployment that scales down when idle awake while it serves: the app object hears about its
 * requests, but at most once per `touchEveryMs` from this isolate rather than once per request, and
 * after the response (the request never waits for it). Deployments that never scale down cost nothing.
 */
export function noteRequest(env: ProxyEnv, target: HostTarget, route: RouteTasks, background: Background, now: number = Date.now()): void {
  if (route.idle === undefined || route.deploymentId === null) return;
  const key = `${target.org}/${target.app}/${route.deploymentId}`;
  if (now - (lastTouch.get(key) ?? 0) < route.idle.touchEveryMs) return;
  if (lastTouch.size >= MAX_TRACKED) lastTouch.clear();
  lastTouch.set(key, now);
  const app = env.APP.get(env.APP.idFromName(`${target.org}/${target.app}`));
  background(
    app.touch(route.deploymentId).catch((error: unknown) => {
      lastTouch.delete(key);
      log("warn", "proxy", "activity report failed", { org: target.org, app: target.app, deploymentId: route.deploymentId, error: String(error) });
    }),
  );
}
