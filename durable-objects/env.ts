import type { AppObject } from "./AppObject.ts";
import type { JobObject } from "./JobObject.ts";
import type { NodeObject } from "./NodeObject.ts";
import type { OrgObject } from "./OrgObject.ts";
import type { RegistryObject } from "./RegistryObject.ts";
import type { WebhookObject } from "./WebhookObject.ts";
import type { SchedulerWorker } from "../workers/scheduler/index.ts";

/** Bindings the Durable Objects use to reach each other. */
export interface ObjectsEnv {
  ORG: DurableObjectNamespace<OrgObject>;
  NODE: DurableObjectNamespace<NodeObject>;
  JOB: DurableObjectNamespace<JobObject>;
  APP: DurableObjectNamespace<AppObject>;
  WEBHOOKS: DurableObjectNamespace<WebhookObject>;
  REGISTRY: DurableObjectNamespace<RegistryObject>;
  /** Placement, for an app object that needs tasks placed now (a woken deployment); only the control-plane Worker has it. */
  SCHEDULER?: Service<SchedulerWorker>;
  /** Hex key (32 bytes) that app secrets are encrypted under (a wrangler secret). */
  SECRETS_KEY?: string;
  /** "1" lets webhooks target loopback and private addresses: local development only. */
  WEBHOOK_ALLOW_PRIVATE?: string;
  /** Seconds before a webhook delivery's first retry (default 10); each later retry waits 4 times longer. */
  WEBHOOK_RETRY_BASE_SECONDS?: string;
  /** A task whose node has been offline this long is placed elsewhere (default 60). */
  NODE_LOST_GRACE_SECONDS?: string;
  /** Fault injection for tests ("1"): node objects send every action frame twice. Never set in production. */
  FAULT_DUPLICATE_DELIVERY?: string;
  /** How long finished jobs and their returns are kept (default 7). */
  JOB_RETENTION_DAYS?: string;
  /** Agents ping this often; 3 missed pings mark a node offline. */
  HEARTBEAT_SECONDS?: string;
}

export function orgStub(env: ObjectsEnv, org: string): DurableObjectStub<OrgObject> {
  return env.ORG.get(env.ORG.idFromName(org));
}

/**
 * One object per (org, node): the same node id in two orgs is two nodes.
 *
 * The stub is made from the id's hex form, which carries no name. Under `wrangler dev`,
 * miniflare wraps every SQLite-backed class so that each construction of an object whose
 * id has a name writes that name into the object's database (for its storage explorer):
 * a write transaction, two fsyncs and a new WAL file on every wake. Node objects wake for
 * every job, presence check and proxied request after hibernating, so that write was a
 * measurable part of a fan-out to idle agents on disk (bench/README.md). On Cloudflare
 * nothing changes: it is the same id, and nothing here reads `ctx.id.name`.
 */
export function nodeStub(env: Pick<ObjectsEnv, "NODE">, org: string, nodeId: string): DurableObjectStub<NodeObject> {
  const id = env.NODE.idFromName(`${org}/${nodeId}`);
  return env.NODE.get(env.NODE.idFromString(id.toString()));
}

export function jobStub(env: ObjectsEnv, org: string, jid: string): DurableObjectStub<JobObject> {
  return env.JOB.get(env.JOB.idFromName(`${org}/${jid}`));
}

export function appStub(env: ObjectsEnv, org: string, app: string): DurableObjectStub<AppObject> {
  return env.APP.get(env.APP.idFromName(`${org}/${app}`));
}

/** One per org: webhook subscriptions, the delivery queue and its records. */
export function webhookStub(env: ObjectsEnv, org: string): DurableObjectStub<WebhookObject> {
  return env.WEBHOOKS.get(env.WEBHOOKS.idFromName(org));
}

export function registryStub(env: ObjectsEnv): DurableObjectStub<RegistryObject> {
  return env.REGISTRY.get(env.REGISTRY.idFromName("global"));
}

export function lostGraceSeconds(env: ObjectsEnv): number {
  const value = Number(env.NODE_LOST_GRACE_SECONDS ?? "60");
  return Number.isFinite(value) && value >= 0 ? value : 60;
}

export function heartbeatSeconds(env: ObjectsEnv): number {
  const value = Number(env.HEARTBEAT_SECONDS ?? "10");
  return Number.isFinite(value) && value > 0 ? value : 10;
}
