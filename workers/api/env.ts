import type { ObjectsEnv } from "../../durable-objects/env.ts";
import type { HostRouteObject } from "../../durable-objects/HostRouteObject.ts";
import type { Identity } from "../../protocol/api.ts";
import type { SchedulerWorker } from "../scheduler/index.ts";

export interface ApiEnv extends ObjectsEnv {
  SCHEDULER: Service<SchedulerWorker>;
  /** Custom host names of apps (`zectre route add`). */
  HOST_ROUTES: DurableObjectNamespace<HostRouteObject>;
  /** Bearer secret that may create orgs; unset means org creation is disabled. */
  OPERATOR_SECRET?: string;
  /** Artifact layers (`<org>/sha256/<digest>`). */
  ARTIFACTS: R2Bucket;
  /** Largest artifact layer accepted, in bytes. */
  ARTIFACT_MAX_BYTES?: string;
  /** The proxy's public base URL, for preview and app URLs. */
  PUBLIC_PROXY_URL?: string;
}

export interface ApiVariables {
  requestId: string;
  identity: Identity;
}

export interface ApiContext {
  Bindings: ApiEnv;
  Variables: ApiVariables;
}
