import { DurableObject } from "cloudflare:workers";
import {
  type AppSummary,
  type CreateDeploymentBody,
  type DeploymentRecord,
  type LogLine,
  newTaskId,
  RESERVED_ENV,
  type StoredLogLine,
  type TaskInventoryMessage,
  type TaskStart,
  type TaskState,
  type TaskStatusMessage,
} from "../protocol/deployments.ts";
import { failure, type Result } from "../protocol/errors.ts";
import type { RouteTasks } from "../protocol/tunnel.ts";
import type { JsonObject } from "../protocol/json.ts";
import { log } from "../workers/lib/log.ts";
import { AppEventLog } from "./app/app-events.ts";
import { DeploymentStore, type DeploymentRow, specOf, toDeploymentRecord } from "./app/deployment-store.ts";
import { type EnvEntry, EnvStore } from "./app/env-store.ts";
import { ActivityStore, idleDeadlines, idlePolicy, idleSinceOf, routeIdle, targetReplicas } from "./app/idle.ts";
import { type LogQuery, LogStore } from "./app/log-store.ts";
import { APP_MIGRATIONS } from "./app/schema.ts";
import { SecretBox } from "./app/secret-box.ts";
import { deploymentStatus } from "./app/status.ts";
import { TaskStore, type TaskRow, toTaskRecord } from "./app/task-store.ts";
import { lostGraceSeconds, nodeStub, type ObjectsEnv, orgStub } from "./env.ts";
import { sseFrame, SseHub } from "./sse-hub.ts";
import { publishEvent } from "./webhook/publish.ts";
import { OrgEventBuffer } from "./org-events.ts";
import { applyMigrations } from "./sql-migrations.ts";

interface AppRow extends Record<string, SqlStorageValue> {
  org: string;
  name: string;
  created_at: number;
  created_by: string;
  promoted: string | null;
  promoting: string | null;
}

/** What the scheduler needs to place an app's tasks. */
export interface AppPlan {
  org: string;
  app: string;
  deployments: Array<{
    id: string;
    replicas: number;
    cpu: number;
    memoryMb: number;
    constraints: string[];
    /** A fixed port allows one task of the deployment per node. */
    port: number | null;
    tasks: Array<{ taskId: string; nodeId: string; state: TaskState }>;
  }>;
}

/** Seconds an agent gets between SIGTERM and SIGKILL when a task is stopped. */
const STOP_GRACE_SECONDS = 10;
/** A task acked long ago but missing from its agent's inventory is started again after this. */
const MISSING_TASK_GRACE_MS = 30_000;
const LIST_LIMIT = 20;

/** `woken`: it was idle and is starting again; `awake`: it was not idle; `not_wakeable`: unknown, unwanted, or never scales down. */
export type WakeResult = "woken" | "awake" | "not_wakeable";

/** One per app: deployments (immutable), tasks and their placements, env and encrypted secrets, events and logs. */
export class AppObject extends DurableObject<ObjectsEnv> {
  private readonly sql: SqlStorage;
  private readonly deployments: DeploymentStore;
  private readonly tasks: TaskStore;
  private readonly activity: ActivityStore;
  private readonly events: AppEventLog;
  private readonly logStore: LogStore;
  private readonly envStore: EnvStore;
  private readonly eventWatchers = new SseHub();
  private readonly logWatchers = new Map<SseHub, string | null>();
  private readonly orgEvents: OrgEventBuffer;

  constructor(ctx: DurableObjectState, env: ObjectsEnv) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    applyMigrations(this.sql, APP_MIGRATIONS);
    this.orgEvents = new OrgEventBuffer(ctx, env);
    this.deployments = new DeploymentStore(this.sql);
    this.tasks = new TaskStore(this.sql);
    this.activity = new ActivityStore(this.sql);
    this.events = new AppEventLog(this.sql);
    this.logStore = new LogStore(this.sql);
    this.envStore = new EnvStore(this.sql, SecretBox.fromHex(env.SECRETS_KEY), (name) => {
      const app = this.app();
      return `${app?.org ?? ""}/${app?.name ?? ""}/${name}`;
    });
  }

  // ---- the app ----

  create(org: string, name: string, by: string): Result<{ app: AppSummary }> {
    if (this.app()) return failure("conflict", `app '${name}' already exists`);
    this.sql.exec("INSERT INTO app (id, org, name, created_at, created_by) VALUES (1, ?, ?, ?, ?)", org, name, Date.now(), by);
    this.emit("app.created", null, null, { by });
    return { ok: true, app: this.summaryOf(this.app() as AppRow) };
  }

  summary(): AppSummary | null {
    const app = this.app();
    return app ? this.summaryOf(app) : null;
  }

  // ---- the proxy ----

  /**
   * Read-only: the healthy tasks serving `deploymentId` (null: the promoted deployment), for the proxy.
   * Null when the app or that deployment does not exist.
   */
  route(deploymentId: string | null): RouteTasks | null {
    const app = this.app();
    const id = deploymentId ?? app?.promoted ?? null;
    if (!app || (deploymentId !== null && !this.deployments.get(deploymentId))) return null;
    if (id === null) return { deploymentId: null, tasks: [] };
    const tasks = this.tasks
      .wanted(id)
      .filter((t) => t.state === "healthy" && t.host_port !== null)
      .map((t) => ({ taskId: t.task_id, nodeId: t.node_id, hostPort: t.host_port as number }));
    const row = this.deployments.get(id);
    const policy = row === null ? null : idlePolicy(row);
    if (policy === null || !this.wantedDeploymentIds().has(id)) return { deploymentId: id, tasks };
    return { deploymentId: id, tasks, idle: routeIdle(policy) };
  }

  // ---- scale to zero ----

  /** The proxy served requests of the deployment (at most one call every few seconds per proxy isolate). */
  async touch(deploymentId: string): Promise<void> {
    const row = this.deployments.get(deploymentId);
    if (row === null || idlePolicy(row) === null) return;
    if (this.activity.isIdle(deploymentId)) await this.wake(deploymentId);
    else this.activity.touch(deploymentId, Date.now());
  }

  /**
   * Idempotent, so the proxy calls it for every request it holds: an idle deployment gets its replicas back and
   * the scheduler places them now; an awake one only has its idle clock restarted.
   */
  async wake(deploymentId: string): Promise<WakeResult> {
    const app = this.app();
    const row = this.deployments.get(deploymentId);
    if (!app || row === null || idlePolicy(row) === null || !this.wantedDeploymentIds().has(deploymentId)) return "not_wakeable";
    if (!this.activity.wake(deploymentId, Date.now())) return "awake";
    this.emit("deployment.woken", deploymentId, null, { replicas: row.replicas });
    await this.publish("deploy.woken", deploymentId, { replicas: row.replicas });
    await this.refreshStatus(deploymentId);
    await this.placeNow(app);
    return "woken";
  }

  /** Scales down the deployments idle past their timeout, then sleeps until the next one is due. */
  override async alarm(): Promise<void> {
    const now = Date.now();
    for (const { id } of this.idleDeadlines().filter((d) => d.dueAt <= now)) await this.scaleDownIdle(id);
    await this.armIdleAlarm();
  }

  // ---- deployments ----

  /** Stores the deployment; the scheduler places its tasks (called right after, and by every cron reconcile). */
  async createDeployment(id: string, body: CreateDeploymentBody, by: string): Promise<Result<{ deployment: DeploymentRecord }>> {
    const app = this.app();
    if (!app) return failure("not_found", "app not found");
    if (this.deployments.get(id)) return failure("conflict", `deployment ${id} already exists`);
    this.deployments.insert(id, body, by, Date.now());
    this.activity.touch(id, Date.now());
    this.emit("deployment.created", id, null, { by, replicas: body.replicas });
    // The first deployment is always promoted once healthy; later ones only when asked.
    if (body.promote || (app.promoted === null && app.promoting === null)) this.setPromoting(id);
    await this.publish("deploy.created", id, { by, replicas: body.replicas });
    return { ok: true, deployment: this.record(this.deployments.get(id) as DeploymentRow) };
  }

  deployment(id: string): DeploymentRecord | null {
    const row = this.deployments.get(id);
    return row ? this.record(row) : null;
  }

  listDeployments(limit: number = LIST_LIMIT): DeploymentRecord[] {
    return this.deployments.list(limit).map((row) => this.record(row));
  }

  /** Rolling: the main URL switches once the deployment is healthy, and only then do the old tasks stop. */
  async promote(id: string, by: string): Promise<Result<{ deployment: DeploymentRecord }>> {
    const app = this.app();
    const row = this.deployments.get(id);
    if (!app || !row) return failure("not_found", `deployment ${id} not found`);
    if (app.promoted === id && app.promoting === null) return { ok: true, deployment: this.record(row) };
    if (row.replicas === 0) this.deployments.setReplicas(id, 1);
    // A promotion waits for it to be healthy, so an idle deployment wakes (the caller has the scheduler place it).
    this.activity.wake(id, Date.now());
    this.setPromoting(id, by);
    await this.refreshStatus(id);
    return { ok: true, deployment: this.record(this.deployments.get(id) as DeploymentRow) };
  }

  /** Back to the deployment promoted before the current one; its artifacts are still stored, so nothing uploads. */
  async rollback(by: string): Promise<Result<{ deployment: DeploymentRecord; from: string }>> {
    const app = this.app();
    if (!app) return failure("not_found", "app not found");
    const current = app.promoted;
    if (current === null) return failure("conflict", "nothing is promoted yet, so there is nothing to roll back from");
    const previous = this.sql
      .exec<{ deployment_id: string }>("SELECT deployment_id FROM promotions WHERE deployment_id != ? ORDER BY seq DESC LIMIT 1", current)
      .toArray()[0]?.deployment_id;
    if (!previous) return failure("conflict", `no deployment was promoted before ${current}`);
    const promoted = await this.promote(previous, by);
    if (!promoted.ok) return promoted;
    await this.publish("deploy.rolled_back", previous, { from: current, by });
    return { ok: true, deployment: promoted.deployment, from: current };
  }

  /** Scales the promoted deployment (or the one being promoted when none is yet). */
  async scale(replicas: number, by: string): Promise<Result<{ deployment: DeploymentRecord }>> {
    const app = this.app();
    const id = app?.promoted ?? app?.promoting ?? null;
    if (!app || id === null) return failure("conflict", "the app has no promoted deployment to scale");
    this.deployments.setReplicas(id, replicas);
    // Asked for by name: the replicas run now, and the idle clock starts over.
    this.activity.wake(id, Date.now());
    this.emit("deployment.scaled", id, null, { replicas, by });
    await this.publish("deploy.scaled", id, { replicas, by });
    await this.stopSurplus(id, replicas);
    await this.refreshStatus(id);
    return { ok: true, deployment: this.record(this.deployments.get(id) as DeploymentRow) };
  }

  // ---- env ----

  async setEnv(name: string, value: string, secret: boolean, by: string): Promise<Result<{ name: string; secret: boolean }>> {
    if (!this.app()) return failure("not_found", "app not found");
    if ((RESERVED_ENV as readonly string[]).includes(name)) return failure("bad_request", `${name} is set by Zectre and cannot be overridden`);
    if (secret && !this.envStore.canStoreSecrets) {
      return failure("unavailable", "secrets are disabled: set the SECRETS_KEY secret (64 hex characters) on the API Worker");
    }
    await this.envStore.set(name, value, secret, by);
    return { ok: true, name, secret };
  }

  unsetEnv(name: string): Result<{ name: string; removed: true }> {
    if (!this.envStore.unset(name)) return failure("not_found", `no variable named ${name}`);
    return { ok: true, name, removed: true };
  }

  async listEnv(reveal: boolean): Promise<EnvEntry[]> {
    return this.envStore.list(reveal);
  }

  // ---- called by the scheduler ----

  /** The deployments that want tasks, with what they have. */
  plan(): AppPlan | null {
    const app = this.app();
    if (!app) return null;
    this.tasks.prune(Date.now());
    const deployments = [...this.wantedDeploymentIds()].map((id) => {
      const row = this.deployments.get(id) as DeploymentRow;
      const spec = specOf(row);
      const tasks = this.tasks.wanted(id).map((t) => ({ taskId: t.task_id, nodeId: t.node_id, state: t.state as TaskState }));
      return { id, replicas: targetReplicas(row, this.activity), cpu: spec.resources.cpu, memoryMb: spec.resources.memoryMb, constraints: spec.constraints, port: spec.port ?? null, tasks };
    });
    return { org: app.org, app: app.name, deployments };
  }

  /**
   * Records placements, then pushes `task.start` through each node's outbox (write before send).
   * A stale plan is cut down to what the deployment still lacks (version check across the scheduler's awaits).
   */
  async assignTasks(deploymentId: string, nodeIds: readonly string[]): Promise<string[]> {
    const app = this.app();
    const row = this.deployments.get(deploymentId);
    if (!app || !row || !this.wantedDeploymentIds().has(deploymentId)) return [];
    const room = Math.max(0, targetReplicas(row, this.activity) - this.tasks.wanted(deploymentId).length);
    const now = Date.now();
    const assigned = nodeIds.slice(0, room).map((nodeId) => {
      const taskId = newTaskId(now);
      this.tasks.insert(taskId, deploymentId, nodeId, now);
      this.emit("task.assigned", deploymentId, taskId, { nodeId });
      return { taskId, nodeId };
    });
    if (assigned.length === 0) return [];
    await this.refreshStatus(deploymentId);
    const spec = specOf(row);
    await orgStub(this.env, app.org).trackTasks(
      app.name,
      assigned.map((a) => ({ taskId: a.taskId, nodeId: a.nodeId, cpu: spec.resources.cpu, memoryMb: spec.resources.memoryMb })),
    );
    const env = { ...(await this.envStore.resolved()), ...spec.env };
    await Promise.all(assigned.map((a) => this.sendStart(app, row, a.taskId, a.nodeId, env)));
    return assigned.map((a) => a.taskId);
  }

  /** Tasks on nodes gone past the grace: given up here (and told to stop if the node ever returns); the scheduler re-places. */
  async markLost(taskIds: readonly string[], reason: string): Promise<void> {
    const app = this.app();
    if (!app) return;
    const lost = taskIds.map((id) => this.tasks.get(id)).filter((t): t is TaskRow => t !== null && t.desired === "run");
    const now = Date.now();
    for (const task of lost) {
      this.tasks.release(task.task_id, "lost", reason, now);
      this.emit("task.lost", task.deployment_id, task.task_id, { nodeId: task.node_id, reason });
    }
    await this.releaseLoad(app, lost);
    await Promise.all(lost.map((t) => this.sendStop(app, t)));
    for (const id of new Set(lost.map((t) => t.deployment_id))) await this.refreshStatus(id);
  }

  placementFailed(deploymentId: string, message: string): void {
    this.emit("placement.failed", deploymentId, null, { message });
  }

  /** Stops the live tasks of deployments nobody wants any more (superseded previews, replaced promotions). */
  async stopUnwanted(): Promise<number> {
    const app = this.app();
    if (!app) return 0;
    const wanted = this.wantedDeploymentIds();
    const unwanted = this.tasks.wanted().filter((t) => !wanted.has(t.deployment_id));
    await this.stopTasks(app, unwanted);
    for (const id of new Set(unwanted.map((t) => t.deployment_id))) await this.refreshStatus(id);
    return unwanted.length;
  }

  // ---- called by NodeObject ----

  /** A status from the node that runs the task (identity from the socket). `stop` asks the node to stop it. */
  async taskStatus(nodeId: string, message: TaskStatusMessage): Promise<"stored" | "stop" | "ignored"> {
    const task = this.tasks.get(message.taskId);
    if (!task) return "stop";
    if (task.node_id !== nodeId) {
      log("warn", "app", "task status from a node that does not run it", { taskId: message.taskId, nodeId });
      return "ignored";
    }
    if (task.desired === "stop") {
      if (message.state === "stopped") this.applyStatus(task, "stopped", message.hostPort, message.restarts, message.message);
      return message.state === "stopped" ? "stored" : "stop";
    }
    this.applyStatus(task, message.state, message.hostPort, message.restarts, message.exitCode === null ? message.message : `${message.message ?? "exited"} (exit ${message.exitCode})`);
    await this.refreshStatus(task.deployment_id);
    return "stored";
  }

  /**
   * After a reconnect the agent lists what it runs: tasks we no longer want are stopped, tasks we want there
   * but it lacks (acked long ago, so not merely in flight) are started again.
   */
  async reconcileNode(nodeId: string, inventory: TaskInventoryMessage["tasks"]): Promise<{ stop: string[]; restart: number }> {
    const app = this.app();
    if (!app) return { stop: inventory.map((t) => t.taskId), restart: 0 };
    const stop: string[] = [];
    const reported = new Set<string>();
    for (const entry of inventory) {
      reported.add(entry.taskId);
      const task = this.tasks.get(entry.taskId);
      if (!task || task.node_id !== nodeId || task.desired === "stop") stop.push(entry.taskId);
      else if (task.state !== entry.state || task.host_port !== entry.hostPort) {
        this.applyStatus(task, entry.state, entry.hostPort, task.restarts, task.message);
      }
    }
    const now = Date.now();
    const missing = this.tasks
      .onNode(nodeId)
      .filter((t) => t.desired === "run" && !reported.has(t.task_id) && now - t.assigned_at > MISSING_TASK_GRACE_MS);
    if (missing.length > 0) {
      const env = await this.envStore.resolved();
      for (const task of missing) {
        const row = this.deployments.get(task.deployment_id) as DeploymentRow;
        await this.sendStart(app, row, task.task_id, nodeId, { ...env, ...specOf(row).env });
      }
    }
    for (const id of new Set(inventory.map((t) => this.tasks.get(t.taskId)?.deployment_id).filter((d) => d !== undefined))) {
      await this.refreshStatus(id);
    }
    return { stop, restart: missing.length };
  }

  /** Lines from the node that runs their tasks; lines naming a task of another node are dropped. */
  appendLogs(nodeId: string, lines: readonly LogLine[]): number {
    const own = lines.filter((line) => this.tasks.get(line.taskId)?.node_id === nodeId);
    const seqs = this.logStore.append(nodeId, own);
    const app = this.app();
    if (app && this.logWatchers.size > 0) {
      own.forEach((line, i) => {
        const stored: StoredLogLine = { ...line, nodeId, seq: seqs[i] as number };
        const frame = sseFrame(stored.seq, stored);
        for (const [hub, deploymentId] of this.logWatchers) if (deploymentId === null || deploymentId === line.deploymentId) hub.broadcast(frame);
      });
    }
    for (const hub of this.logWatchers.keys()) if (hub.size === 0) this.logWatchers.delete(hub);
    return own.length;
  }

  logs(query: LogQuery): StoredLogLine[] {
    return this.logStore.query(this.app()?.name ?? "", query);
  }

  /** `/events?since=N` and `/logs?follow=1&...`: server-sent events that stay open until the client leaves. */
  override async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (!this.app()) return Response.json({ error: { code: "not_found", message: "app not found" } }, { status: 404 });
    if (url.pathname === "/events") {
      const since = Number(url.searchParams.get("since") ?? "0");
      const backlog = this.events.after(Number.isFinite(since) ? since : 0).map((e) => sseFrame(e.seq, e));
      return this.eventWatchers.open(backlog, true);
    }
    const deploymentId = url.searchParams.get("deployment");
    const sinceMs = Number(url.searchParams.get("sinceMs") ?? "0");
    const limit = Math.min(10_000, Math.max(1, Number(url.searchParams.get("limit") ?? "200") || 200));
    const backlog = this.logs({ deploymentId: deploymentId ?? undefined, sinceMs, limit }).map((l) => sseFrame(l.seq, l));
    const hub = new SseHub();
    const response = hub.open(backlog, true);
    this.logWatchers.set(hub, deploymentId);
    return response;
  }

  // ---- internals ----

  private async sendStart(app: AppRow, row: DeploymentRow, taskId: string, nodeId: string, env: Record<string, string>): Promise<void> {
    const spec = specOf(row);
    const action: TaskStart = {
      kind: "task.start",
      taskId,
      app: app.name,
      deploymentId: row.id,
      artifacts: spec.artifacts,
      command: spec.command,
      env,
      healthCheck: spec.healthCheck,
      resources: spec.resources,
      runtime: spec.runtime,
      port: spec.port ?? null,
    };
    await nodeStub(this.env, app.org, nodeId).startTask(action);
  }

  private async sendStop(app: AppRow, task: TaskRow): Promise<void> {
    await nodeStub(this.env, app.org, task.node_id).stopTask({ kind: "task.stop", taskId: task.task_id, graceSeconds: STOP_GRACE_SECONDS }, app.name);
  }

  private async stopTasks(app: AppRow, tasks: readonly TaskRow[]): Promise<void> {
    const now = Date.now();
    for (const task of tasks) {
      this.tasks.release(task.task_id, "stopping", null, now);
      this.emit("task.stopping", task.deployment_id, task.task_id, { nodeId: task.node_id });
    }
    await this.releaseLoad(app, tasks);
    await Promise.all(tasks.map((t) => this.sendStop(app, t)));
  }

  /** Scale-down stops the least useful tasks first: failing, then the newest. */
  private async stopSurplus(deploymentId: string, replicas: number): Promise<void> {
    const app = this.app() as AppRow;
    const live = this.tasks.wanted(deploymentId);
    if (live.length <= replicas) return;
    const rank = (t: TaskRow) => (t.state === "healthy" ? 1 : 0);
    const ordered = [...live].sort((a, b) => rank(a) - rank(b) || b.assigned_at - a.assigned_at);
    await this.stopTasks(app, ordered.slice(0, live.length - replicas));
  }

  private async releaseLoad(app: AppRow, tasks: readonly TaskRow[]): Promise<void> {
    if (tasks.length > 0) await orgStub(this.env, app.org).untrackTasks(tasks.map((t) => t.task_id));
  }

  private applyStatus(task: TaskRow, state: TaskState, hostPort: number | null, restarts: number, message: string | null): void {
    this.tasks.update(task.task_id, { state, hostPort, restarts, message }, Date.now());
    this.emit("task.state", task.deployment_id, task.task_id, { nodeId: task.node_id, state, hostPort, restarts, message });
  }

  /** Recomputes a deployment's status; a healthy deployment being promoted becomes the promoted one. */
  private async refreshStatus(deploymentId: string): Promise<void> {
    const row = this.deployments.get(deploymentId);
    if (!row) return;
    const wanted = this.wantedDeploymentIds().has(deploymentId);
    const states = wanted ? this.tasks.wanted(deploymentId).map((t) => t.state as TaskState) : [];
    const status = deploymentStatus(wanted ? targetReplicas(row, this.activity) : 0, states, wanted && this.activity.isIdle(deploymentId));
    const changed = this.deployments.setStatus(deploymentId, status);
    if (changed) {
      this.emit("deployment.status", deploymentId, null, { status });
      if (status === "healthy" || status === "failed") await this.publish(`deploy.${status}`, deploymentId, {});
    }
    if (status === "healthy" && this.app()?.promoting === deploymentId) await this.completePromotion(deploymentId);
    // After a promotion completes: a deployment being promoted is never scaled down.
    if (changed && idlePolicy(row) !== null) await this.idleClockOnStatus(deploymentId, status);
  }

  /** Becoming healthy restarts the idle clock (a woken deployment gets its full timeout to serve); any change may move the alarm. */
  private async idleClockOnStatus(deploymentId: string, status: string): Promise<void> {
    if (status === "healthy") this.activity.touch(deploymentId, Date.now());
    await this.armIdleAlarm();
  }

  /** Down to the minimum through the normal stop path; the tasks are released before any await, so a wake meanwhile cannot lose its new ones. */
  private async scaleDownIdle(id: string): Promise<void> {
    const row = this.deployments.get(id);
    const policy = row === null ? null : idlePolicy(row);
    if (policy === null || !this.activity.sleep(id, Date.now())) return;
    const data = { minReplicas: policy.minReplicas, idleTimeoutSeconds: policy.idleTimeoutMs / 1000 };
    this.emit("deployment.idle", id, null, data);
    await this.stopSurplus(id, policy.minReplicas);
    await this.publish("deploy.idle", id, data);
    await this.refreshStatus(id);
  }

  private idleDeadlines(): Array<{ id: string; dueAt: number }> {
    const rows = [...this.wantedDeploymentIds()].map((id) => this.deployments.get(id)).filter((row) => row !== null);
    return idleDeadlines(rows, this.app()?.promoting ?? null, this.activity);
  }

  /** The alarm is set for the earliest deployment due; one that fires early finds nothing due and sets the next. */
  private async armIdleAlarm(): Promise<void> {
    const next = Math.min(...this.idleDeadlines().map((d) => d.dueAt));
    if (!Number.isFinite(next)) return;
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > next) await this.ctx.storage.setAlarm(next);
  }

  /** As the API does after a change: the scheduler places now (if it cannot be reached, its next cron pass does). */
  private async placeNow(app: AppRow): Promise<void> {
    try {
      await this.env.SCHEDULER?.reconcileApp(app.org, app.name, lostGraceSeconds(this.env));
    } catch (error) {
      log("warn", "app", "scheduler unreachable; the cron will place", { org: app.org, app: app.name, error: String(error) });
    }
  }

  private setPromoting(id: string, by: string = "system"): void {
    this.sql.exec("UPDATE app SET promoting = ?", id);
    this.emit("deployment.promoting", id, null, { by });
  }

  private async completePromotion(id: string): Promise<void> {
    const now = Date.now();
    this.sql.exec("UPDATE app SET promoted = ?, promoting = NULL", id);
    this.sql.exec("INSERT INTO promotions (deployment_id, at, by) VALUES (?, ?, 'system')", id, now);
    this.emit("deployment.promoted", id, null, {});
    await this.publish("deploy.promoted", id, {});
    await this.stopUnwanted();
  }

  /**
   * Promoted, being promoted, and the newest if it was never promoted (a fresh preview whose URL must work).
   * Everything else stops: a deployment replaced by a promotion or a rollback does not come back by itself.
   */
  private wantedDeploymentIds(): Set<string> {
    const app = this.app();
    const ids = new Set<string>();
    if (!app) return ids;
    const latest = this.deployments.latest()?.id ?? null;
    const freshPreview = latest !== null && !this.wasPromoted(latest) ? latest : null;
    for (const id of [app.promoted, app.promoting, freshPreview]) if (id !== null) ids.add(id);
    return ids;
  }

  private wasPromoted(deploymentId: string): boolean {
    return this.sql.exec("SELECT 1 FROM promotions WHERE deployment_id = ? LIMIT 1", deploymentId).toArray().length > 0;
  }

  private record(row: DeploymentRow): DeploymentRecord {
    const app = this.app() as AppRow;
    const tasks = this.tasks.ofDeployment(row.id).map(toTaskRecord);
    return { ...toDeploymentRecord(row, app.name, app.promoted, tasks), ...idleSinceOf(row, this.activity) };
  }

  private summaryOf(app: AppRow): AppSummary {
    return {
      name: app.name,
      createdAt: new Date(app.created_at).toISOString(),
      createdBy: app.created_by,
      promoted: app.promoted,
      latest: this.deployments.latest()?.id ?? null,
    };
  }

  private emit(type: Parameters<AppEventLog["append"]>[0], deploymentId: string | null, taskId: string | null, data: JsonObject): void {
    const event = this.events.append(type, deploymentId, taskId, data);
    this.eventWatchers.broadcast(sseFrame(event.seq, event));
    this.orgEvents.fromAppEvent(this.app(), event);
  }

  /** Webhooks (`deploy.*`): stored for delivery before this returns; never fails the change that caused it. */
  private async publish(type: string, deploymentId: string, data: JsonObject): Promise<void> {
    const app = this.app();
    if (app) this.orgEvents.fromDeploy(app.org, type, { app: app.name, deploymentId, ...data });
    if (app) await publishEvent(this.env, app.org, type, { app: app.name, deploymentId, ...data });
  }

  private app(): AppRow | undefined {
    return this.sql.exec<AppRow>("SELECT * FROM app").toArray()[0];
  }
}
