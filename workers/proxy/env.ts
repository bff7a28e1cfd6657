import type { AppObject } from "../../durable-objects/AppObject.ts";
import type { HostRouteObject } from "../../durable-objects/HostRouteObject.ts";
import type { NodeObject } from "../../durable-objects/NodeObject.ts";
import type { OrgObject } from "../../durable-objects/OrgObject.ts";

export interface ProxyEnv {
  ORG: DurableObjectNamespace<OrgObject>;
  APP: DurableObjectNamespace<AppObject>;
  NODE: DurableObjectNamespace<NodeObject>;
  HOST_ROUTES: DurableObjectNamespace<HostRouteObject>;
  /** App and preview host names sit under this domain (locally `localhost`); any other host is a custom route. */
  PREVIEW_DOMAIN: string;
  /** Seconds an app may take to start its response before the client gets a 504 (default 30). */
  PROXY_TIMEOUT_SECONDS?: string;
  /** Seconds a request to a deployment scaled to zero is held while it wakes, before a 503 (default 30). */
  WAKE_TIMEOUT_SECONDS?: string;
}

export function timeoutMs(env: ProxyEnv): number {
  const seconds = Number(env.PROXY_TIMEOUT_SECONDS ?? "30");
  return (Number.isFinite(seconds) && seconds > 0 ? seconds : 30) * 1000;
}

export function wakeTimeoutMs(env: ProxyEnv): number {
  const seconds = Number(env.WAKE_TIMEOUT_SECONDS ?? "30");
  return (Number.isFinite(seconds) && seconds > 0 ? seconds : 30) * 1000;
}
