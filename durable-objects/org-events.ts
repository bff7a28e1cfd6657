import type { AppEvent } from "../protocol/deployments.ts";
import { type NewOrgEvent, ORG_EVENT_TYPES, type OrgEventType } from "../protocol/events.ts";
import type { JobEvent } from "../protocol/jobs.ts";
import type { JsonObject } from "../protocol/json.ts";
import { log } from "../workers/lib/log.ts";
import { type ObjectsEnv, orgStub } from "./env.ts";

/** Returns and task changes arrive in bursts; this long a wait turns a burst into one RPC. */
const BATCH_DELAY_MS = 200;

interface JobFacts {
  jid: string;
  org: string;
  function: string;
  target: string;
  user: string;
}

/**
 * Producers' side of the org event stream (JobObject, AppObject). Events are queued
 * in memory and handed to the org object in one `recordEvents` RPC per burst, so a
 * job with a thousand returns does not make a thousand calls on its hot path.
 * Rare events (`job.created`, `job.finished`, `deploy.*`) flush the queue at once,
 * in order. The queue is not persisted: a crash loses at most one burst of this
 * live feed, which is acceptable because webhooks remain the durable path.
 */
export class OrgEventBuffer {
  private readonly ctx: DurableObjectState;
  private readonly env: ObjectsEnv;
  private readonly delayMs: number;
  private pending: NewOrgEvent[] = [];
  private org: string | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  /** Flushes run one after another, so the org object receives events in the order they happened. */
  private flushing: Promise<void> = Promise.resolve();

  constructor(ctx: DurableObjectState, env: ObjectsEnv, delayMs: number = BATCH_DELAY_MS) {
    this.ctx = ctx;
    this.env = env;
    this.delayMs = delayMs;
  }

  add(org: string, type: OrgEventType, data: JsonObject, urgent: boolean): void {
    this.org = org;
    this.pending.push({ ts: new Date().toISOString(), type, data });
    if (urgent) this.flushNow();
    else if (this.timer === null) this.flushLater();
  }

  /** Maps a job's own event log entry to the org stream, if it is one the stream carries. */
  fromJob(job: JobFacts | undefined, event: JobEvent): void {
    if (!job) return;
    if (event.type === "job.created") {
      const targets = Array.isArray(event.data["targets"]) ? event.data["targets"].length : 0;
      this.add(job.org, "job.created", { jid: job.jid, function: job.function, target: job.target, targets, user: job.user }, true);
    } else if (event.type === "target.returned" || event.type === "target.unreachable") {
      const ret = event.data["return"] as { success?: boolean; synthetic?: boolean } | undefined;
      this.add(job.org, "job.return", { jid: job.jid, nodeId: event.nodeId, success: ret?.success === true, synthetic: ret?.synthetic === true }, false);
    } else if (event.type === "job.finished") {
      this.add(job.org, "job.finished", { jid: job.jid, status: event.data["status"] ?? null, counts: event.data["counts"] ?? {} }, true);
    }
  }

  /** Task state changes from an app's own event log. */
  fromAppEvent(app: { org: string; name: string } | undefined, event: AppEvent): void {
    if (!app || event.type !== "task.state") return;
    const { nodeId = null, state = null, hostPort = null } = event.data;
    this.add(app.org, "task.state", { app: app.name, deploymentId: event.deploymentId, taskId: event.taskId, nodeId, state, hostPort }, false);
  }

  /** `deploy.*` as published to webhooks; other types are not part of the stream. */
  fromDeploy(org: string, type: string, data: JsonObject): void {
    if ((ORG_EVENT_TYPES as readonly string[]).includes(type) && type.startsWith("deploy.")) this.add(org, type as OrgEventType, data, true);
  }

  /** The idle object stays in memory far longer than the delay, so a plain timer is enough here. */
  private flushLater(): void {
    this.timer = setTimeout(() => {
      this.timer = null;
      this.ctx.waitUntil(this.flush());
    }, this.delayMs);
  }

  private flushNow(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.ctx.waitUntil(this.flush());
  }

  private flush(): Promise<void> {
    this.flushing = this.flushing.then(() => this.send());
    return this.flushing;
  }

  private async send(): Promise<void> {
    const events = this.pending;
    const org = this.org;
    this.pending = [];
    if (events.length === 0 || org === null) return;
    try {
      await orgStub(this.env, org).recordEvents(events);
    } catch (error) {
      log("warn", "events", "a batch of org events was lost", { org, count: events.length, error: String(error) });
    }
  }
}
