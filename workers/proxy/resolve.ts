import { APP_NAME_PATTERN, DEPLOYMENT_ID_PATTERN } from "../../protocol/deployments.ts";
import { ORG_NAME_PATTERN } from "../../protocol/names.ts";
import { parseRouteHost } from "../../protocol/routes.ts";
import type { RouteTasks } from "../../protocol/tunnel.ts";
import type { ProxyEnv } from "./env.ts";

/** What a host name serves: an org's app, at its promoted deployment (null) or a named one. */
export interface HostTarget {
  org: string;
  app: string;
  deploymentId: string | null;
}

/**
 * Cached answers live at most this long, so a changed route (a custom host
 * removed, a deployment promoted, a task gone unhealthy) is served stale for
 * two seconds at most.
 */
export const CACHE_MS = 2_000;

export class TtlCache<T> {
  readonly #entries = new Map<string, { value: T; expires: number }>();
  readonly #max: number;

  constructor(max: number) {
    this.#max = max;
  }

  get(key: string, now: number): T | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.expires > now) return entry.value;
    this.#entries.delete(key);
    return undefined;
  }

  set(key: string, value: T, now: number): void {
    if (this.#entries.size >= this.#max) this.#entries.delete(this.#entries.keys().next().value as string);
    this.#entries.set(key, { value, expires: now + CACHE_MS });
  }
}

const hosts = new TtlCache<HostTarget | null>(10_000);
const routes = new TtlCache<RouteTasks | null>(10_000);

/**
 * The host alone finds the target: names under the proxy's domain are parsed
 * (`<app>.<org>`, `<deployment>.<app>.<org>`), any other is one lookup in the
 * host's own HostRouteObject. The org always comes from the host, so nothing
 * here can reach another tenant's app.
 */
export async function resolveHost(env: ProxyEnv, hostHeader: string, now: number = Date.now()): Promise<HostTarget | null> {
  const host = hostHeader.toLowerCase().replace(/:\d+$/, "");
  const parsed = parseRouteHost(host, env.PREVIEW_DOMAIN);
  if (parsed) {
    if (!ORG_NAME_PATTERN.test(parsed.org) || !APP_NAME_PATTERN.test(parsed.app)) return null;
    if (parsed.kind === "app") return { org: parsed.org, app: parsed.app, deploymentId: null };
    return DEPLOYMENT_ID_PATTERN.test(parsed.deploymentId) ? { org: parsed.org, app: parsed.app, deploymentId: parsed.deploymentId } : null;
  }
  if (host === env.PREVIEW_DOMAIN || host.endsWith(`.${env.PREVIEW_DOMAIN}`) || !/^[a-z0-9.-]{1,253}$/.test(host)) return null;
  const cached = hosts.get(host, now);
  if (cached !== undefined) return cached;
  const found = await env.HOST_ROUTES.get(env.HOST_ROUTES.idFromName(host)).lookup();
  const target = found ? { ...found, deploymentId: null } : null;
  hosts.set(host, target, now);
  return target;
}

/** The healthy tasks of the target's deployment (null: no such app or deployment). */
export async function healthyTasks(env: ProxyEnv, target: HostTarget, now: number = Date.now()): Promise<RouteTasks | null> {
  const cached = routes.get(routeKey(target), now);
  return cached !== undefined ? cached : freshHealthyTasks(env, target, now);
}

/** The same, asked of the app object now (for a request held while its deployment wakes); the answer is cached for the next ones. */
export async function freshHealthyTasks(env: ProxyEnv, target: HostTarget, now: number = Date.now()): Promise<RouteTasks | null> {
  const tasks = await env.APP.get(env.APP.idFromName(`${target.org}/${target.app}`)).route(target.deploymentId);
  routes.set(routeKey(target), tasks, now);
  return tasks;
}

function routeKey(target: HostTarget): string {
  return `${target.org}/${target.app}/${target.deploymentId ?? ""}`;
}

const turns = new Map<string, number>();

/** Round robin: each call starts one task further along the deployment's list. */
export function rotation<T>(key: string, tasks: readonly T[]): T[] {
  const turn = turns.get(key) ?? 0;
  turns.set(key, turn + 1);
  if (turns.size > 10_000) turns.clear();
  const start = turn % Math.max(1, tasks.length);
  return [...tasks.slice(start), ...tasks.slice(0, start)];
}
