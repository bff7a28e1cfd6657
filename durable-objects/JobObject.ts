import { DurableObject } from "cloudflare:workers";
import { failure, type Result } from "../protocol/errors.ts";
import type { JsonObject } from "../protocol/json.ts";
import {
  ACTIVE_STATUSES,
  type JobDispatch,
  type JobEvent,
  type JobRecord,
  type JobReturn,
  type JobStatus,
  type JobSummary,
  finalStatus,
} from "../protocol/jobs.ts";
import { type ObjectsEnv, nodeStub, orgStub } from "./env.ts";
import { CoalescedWrites } from "./job/coalesced-writes.ts";
import { countsOf, EventLog, JOB_MIGRATIONS, type JobRow, type TargetRow, toRecord } from "./job/job-store.ts";
import { RESEND_AFTER_MS, retentionMs, UNREACHABLE_AFTER_MS } from "./job/timing.ts";
import { OrgEventBuffer } from "./org-events.ts";
import { mapPool } from "../lib/map-pool.ts";
import { applyMigrations } from "./sql-migrations.ts";
import { sseFrame, SseHub } from "./sse-hub.ts";
import { publishEvent } from "./webhook/publish.ts";

export interface JobSpec {
  org: string;
  jid: string;
  function: string;
  args: JsonObject;
  target: string;
  targets: string[];
  timeout: number;
  test: boolean;
  metadata: Record<string, string>;
  user: string;
}

export interface ReportSpec {
  org: string;
  jid: string;
  nodeId: string;
  function: string;
  args: JsonObject;
  metadata: Record<string, string>;
  ret: Omit<JobReturn, "synthetic">;
}

export type ReturnOutcome = "stored" | "duplicate" | "not_a_target" | "unknown_job";

/** Fan-out to node objects keeps this many calls in flight. */
const NODE_CALLS_IN_FLIGHT = 50;
const EPOCH = 1;

type DispatchSpec = Pick<JobSpec, "org" | "jid" | "function" | "args" | "timeout" | "test">;

function dispatchSpecOf(job: JobRow): DispatchSpec {
  return { org: job.org, jid: job.jid, function: job.function, args: JSON.parse(job.args) as JsonObject, timeout: job.timeout, test: job.test === 1 };
}

function dispatchAction(spec: DispatchSpec): JobDispatch {
  return { kind: "job.dispatch", jid: spec.jid, epoch: EPOCH, function: spec.function, args: spec.args, timeout: spec.timeout, test: spec.test };
}

/** One per job: the record, per-target state and returns, the event log, the deadline alarm and live watchers. */
export class JobObject extends DurableObject<ObjectsEnv> {
  private readonly sql: SqlStorage;
  private readonly events: EventLog;
  private readonly watchers = new SseHub();
  private readonly orgEvents: OrgEventBuffer;
  /** Returns and dispatch results of one moment share a commit. */
  private readonly writes = new CoalescedWrites();
  /** The job row, read once per instance: every return needs it, and only writeJob changes it. */
  private cachedJob: { row: JobRow | undefined } | null = null;

  constructor(ctx: DurableObjectState, env: ObjectsEnv) {
    super(ctx, env);
    this.orgEvents = new OrgEventBuffer(ctx, env);
    this.sql = ctx.storage.sql;
    applyMigrations(this.sql, JOB_MIGRATIONS);
    this.events = new EventLog(this.sql);
  }

  /** Writes the whole job before anything is dispatched, then dispatches through each node's outbox. */
  async start(spec: JobSpec): Promise<Result<{ status: JobStatus }>> {
    if (this.job()) return failure("conflict", `job ${spec.jid} already exists`);
    const now = Date.now();
    this.writeJob(
      `INSERT INTO job (id, jid, org, function, args, target, timeout, test, metadata, status, user, created_at, updated_at)
       VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, 'claimed', ?, ?, ?)`,
      spec.jid, spec.org, spec.function, JSON.stringify(spec.args), spec.target, spec.timeout, spec.test ? 1 : 0,
      JSON.stringify(spec.metadata), spec.user, now, now,
    );
    for (const nodeId of spec.targets) {
      this.sql.exec("INSERT INTO targets (node_id, state, dispatched_at) VALUES (?, 'dispatched', ?)", nodeId, now);
    }
    this.emit("job.created", null, { function: spec.function, target: spec.target, targets: spec.targets });
    await this.ctx.storage.setAlarm(now + Math.min(RESEND_AFTER_MS, spec.timeout * 1000));
    // The org's index learns of the job while dispatches go out: both follow the stored job, and the alarm covers a crash.
    await Promise.all([this.indexInOrg(), this.dispatchTo(spec, spec.targets)]);
    this.setStatus("running");
    await this.indexInOrg();
    return { ok: true, status: "running" };
  }

  /**
   * A job the agent ran by itself (a schedule with return_job): stored already finished.
   * The jid derives from the report, so a resent report finds this job and changes nothing.
   */
  async recordReport(report: ReportSpec): Promise<"stored" | "duplicate"> {
    if (this.job()) return "duplicate";
    const now = Date.now();
    const stored: JobReturn = { ...report.ret, synthetic: false };
    const status = finalStatus("all_returned", countsOf([{ ret: JSON.stringify(stored) } as TargetRow]));
    this.writeJob(
      `INSERT INTO job (id, jid, org, function, args, target, timeout, test, metadata, status, user, created_at, updated_at, finished_at, resend_done, grace_done)
       VALUES (1, ?, ?, ?, ?, ?, 0, 0, ?, ?, ?, ?, ?, ?, 1, 1)`,
      report.jid, report.org, report.function, JSON.stringify(report.args), `L@${report.nodeId}`,
      JSON.stringify({ ...report.metadata, source: "schedule" }), status, `node:${report.nodeId}`, now, now, now,
    );
    this.sql.exec(
      "INSERT INTO targets (node_id, state, online_at_dispatch, dispatched_at, acked_at, returned_at, ret) VALUES (?, 'returned', 1, ?, ?, ?, ?)",
      report.nodeId, now, now, now, JSON.stringify(stored),
    );
    this.emit("job.created", null, { function: report.function, target: `L@${report.nodeId}`, targets: [report.nodeId] });
    this.emit("target.returned", report.nodeId, { return: stored as unknown as JsonObject });
    this.emit("job.finished", null, { status, counts: countsOf(this.targets()) as unknown as JsonObject });
    await this.ctx.storage.setAlarm(now + retentionMs(this.env));
    await this.indexInOrg();
    await publishEvent(this.env, report.org, "job.finished", { jid: report.jid, function: report.function, target: `L@${report.nodeId}`, status, counts: countsOf(this.targets()) as unknown as JsonObject, source: "schedule" });
    return "stored";
  }

  /** The record; while the job runs, acks not yet known are asked of the node objects first. */
  async get(): Promise<JobRecord | null> {
    const job = this.job();
    if (!job) return null;
    if (ACTIVE_STATUSES.includes(job.status as JobStatus)) await this.learnAcks(job, this.targets().filter((t) => t.state === "dispatched"));
    return toRecord(job, this.targets());
  }

  private acked(nodeId: string): void {
    const row = this.target(nodeId);
    if (!row || row.acked_at !== null) return;
    this.sql.exec("UPDATE targets SET acked_at = ?, state = CASE WHEN state = 'dispatched' THEN 'acked' ELSE state END WHERE node_id = ?", Date.now(), nodeId);
    this.emit("target.acked", nodeId, {});
  }

  /**
   * First real return per node wins; a real return replaces a synthetic `unreachable` one.
   * On the hot path: one conditional update and the event, no read of the target first.
   */
  async recordReturn(nodeId: string, ret: Omit<JobReturn, "synthetic">): Promise<ReturnOutcome> {
    const job = this.job();
    if (!job) return "unknown_job";
    const outcome = await this.writes.run(() => this.storeReturn(nodeId, ret, job));
    if (outcome === "stored") await this.finishIfAllReturned();
    return outcome;
  }

  private storeReturn(nodeId: string, ret: Omit<JobReturn, "synthetic">, job: JobRow): ReturnOutcome {
    const stored: JobReturn = { ...ret, synthetic: false };
    const updated = this.sql
      .exec(
        `UPDATE targets SET state = 'returned', returned_at = ?, ret = ?
         WHERE node_id = ? AND (ret IS NULL OR json_extract(ret, '$.synthetic') = 1) RETURNING node_id`,
        Date.now(), JSON.stringify(stored), nodeId,
      )
      .toArray().length;
    if (updated === 0) return this.target(nodeId) ? "duplicate" : "not_a_target";
    this.emit("target.returned", nodeId, { return: stored as unknown as JsonObject }, job);
    return "stored";
  }

  async cancel(actor: string): Promise<Result<{ status: JobStatus }>> {
    const job = this.job();
    if (!job) return failure("not_found", "job not found");
    if (!ACTIVE_STATUSES.includes(job.status as JobStatus)) {
      return failure("conflict", `job ${job.jid} already finished (${job.status})`);
    }
    this.emit("job.cancel_requested", null, { by: actor });
    await this.finish("canceled");
    return { ok: true, status: "canceled" };
  }

  /** Server-sent events: the log after `since`, then live events until the job finishes. */
  override async fetch(request: Request): Promise<Response> {
    const job = this.job();
    if (!job) return Response.json({ error: { code: "not_found", message: "job not found" } }, { status: 404 });
    const since = Number(new URL(request.url).searchParams.get("since") ?? "0");
    const backlog = this.events.after(Number.isFinite(since) ? since : 0).map((event) => sseFrame(event.seq, event));
    return this.watchers.open(backlog, ACTIVE_STATUSES.includes(job.status as JobStatus));
  }

  /** Re-send, unreachable grace, deadline, and finally retention: idempotent, so running twice is harmless. */
  override async alarm(): Promise<void> {
    // Rare, and ruled by stored times: read the row afresh rather than trust this instance's copy.
    this.cachedJob = null;
    const job = this.job();
    if (!job) return;
    const now = Date.now();
    if (!ACTIVE_STATUSES.includes(job.status as JobStatus)) {
      if (job.finished_at !== null && now >= job.finished_at + retentionMs(this.env)) {
        await this.ctx.storage.deleteAll();
        this.cachedJob = null;
        // deleteAll drops the tables too; the instance may still answer, as an empty job.
        applyMigrations(this.sql, JOB_MIGRATIONS);
      }
      else if (job.finished_at !== null) await this.ctx.storage.setAlarm(job.finished_at + retentionMs(this.env));
      return;
    }
    const deadline = job.created_at + job.timeout * 1000;
    if (now >= deadline) return this.finish("deadline");
    await this.dispatchMissing(job);
    if (!job.resend_done && now >= job.created_at + RESEND_AFTER_MS) await this.resendToSilentTargets(job);
    if (!job.grace_done && now >= job.created_at + UNREACHABLE_AFTER_MS) await this.markUnreachable();
    if (!ACTIVE_STATUSES.includes((this.job() as JobRow).status as JobStatus)) return;
    const fresh = this.job() as JobRow;
    const next = [
      fresh.resend_done ? Infinity : fresh.created_at + RESEND_AFTER_MS,
      fresh.grace_done ? Infinity : fresh.created_at + UNREACHABLE_AFTER_MS,
      deadline,
    ];
    await this.ctx.storage.setAlarm(Math.min(...next));
  }

  // ---- internals ----

  /**
   * After a crash in the middle of start(), some targets may never have been dispatched;
   * the alarm (set before dispatching) sends theirs. A repeat is harmless: the agent dedups by jid and epoch.
   */
  private async dispatchMissing(job: JobRow): Promise<void> {
    const missing = this.sql.exec<{ node_id: string }>("SELECT node_id FROM targets WHERE action_id IS NULL AND ret IS NULL").toArray();
    if (missing.length === 0) return;
    await this.dispatchTo(dispatchSpecOf(job), missing.map((r) => r.node_id));
    this.setStatus("running");
  }

  private async dispatchTo(spec: DispatchSpec, targets: readonly string[]): Promise<void> {
    const action = dispatchAction(spec);
    const job = this.job();
    const stored: Promise<void>[] = [];
    await mapPool(targets, NODE_CALLS_IN_FLIGHT, async (nodeId) => {
      const sent = await nodeStub(this.env, spec.org, nodeId).dispatch(action);
      stored.push(this.writes.run(() => this.storeDispatch(nodeId, sent, job)));
    });
    await Promise.all(stored);
  }

  private storeDispatch(nodeId: string, sent: { online: boolean; actionId: string }, job: JobRow | undefined): void {
    this.sql.exec("UPDATE targets SET online_at_dispatch = ?, action_id = ? WHERE node_id = ?", sent.online ? 1 : 0, sent.actionId, nodeId);
    this.emit("target.dispatched", nodeId, { online: sent.online }, job);
  }

  private async resendToSilentTargets(job: JobRow): Promise<void> {
    const silent = this.targets().filter((t) => t.state === "dispatched" && t.action_id !== null);
    const action = dispatchAction(dispatchSpecOf(job));
    await Promise.all(
      silent.map(async (t) => {
        if (!(await nodeStub(this.env, job.org, t.node_id).resend(t.action_id as string, action))) return this.acked(t.node_id);
        this.sql.exec("UPDATE targets SET resent = 1 WHERE node_id = ?", t.node_id);
        this.emit("target.resent", t.node_id, {});
      }),
    );
    this.writeJob("UPDATE job SET resend_done = 1");
  }

  /** Asks the targets' node objects whether their agents acked the dispatch, and records those that did. */
  private async learnAcks(job: JobRow, targets: readonly TargetRow[]): Promise<void> {
    const pending = targets.filter((t) => t.action_id !== null && t.acked_at === null && t.ret === null);
    await mapPool(pending, NODE_CALLS_IN_FLIGHT, async (t) => {
      if (await nodeStub(this.env, job.org, t.node_id).isAcked(t.action_id as string)) this.acked(t.node_id);
    });
  }

  private async markUnreachable(): Promise<void> {
    const job = this.job() as JobRow;
    await this.learnAcks(job, this.targets().filter((t) => t.online_at_dispatch === 0));
    const now = Date.now();
    for (const t of this.targets()) {
      if (t.ret !== null || t.online_at_dispatch === 1 || t.acked_at !== null) continue;
      const ret: JobReturn = { success: false, retcode: null, result: null, error: "node unreachable", durationMs: 0, startedAt: null, synthetic: true };
      this.sql.exec("UPDATE targets SET state = 'returned', returned_at = ?, ret = ? WHERE node_id = ?", now, JSON.stringify(ret), t.node_id);
      this.emit("target.unreachable", t.node_id, { return: ret as unknown as JsonObject });
    }
    this.writeJob("UPDATE job SET grace_done = 1");
    await this.finishIfAllReturned();
  }

  /** Read afresh: several returns of one batch ask in turn, and only the first may finish the job. */
  private async finishIfAllReturned(): Promise<void> {
    const job = this.job();
    if (!job || !ACTIVE_STATUSES.includes(job.status as JobStatus)) return;
    // This runs once per return: one probe of the open-targets index, not a count over every target.
    const open = this.sql.exec<{ open: number }>("SELECT EXISTS (SELECT 1 FROM targets WHERE ret IS NULL) AS open").one().open;
    if (open === 0) await this.finish("all_returned");
  }

  /** Computed once: later returns are still stored, but the status stays. */
  private async finish(reason: "all_returned" | "deadline" | "canceled"): Promise<void> {
    const job = this.job() as JobRow;
    const targets = this.targets();
    const counts = countsOf(targets);
    const status = finalStatus(reason, counts);
    const now = Date.now();
    this.writeJob("UPDATE job SET status = ?, finished_at = ?, updated_at = ?", status, now, now);
    this.emit("job.finished", null, { status, counts: counts as unknown as JsonObject });
    await this.ctx.storage.setAlarm(now + retentionMs(this.env));
    this.watchers.closeAll();
    await this.indexInOrg();
    await publishEvent(this.env, job.org, "job.finished", { jid: job.jid, function: job.function, target: job.target, status, counts: counts as unknown as JsonObject });
    if (reason !== "all_returned") await this.cancelOnAgents(job.org, targets.filter((t) => t.ret === null).map((t) => t.node_id), job.jid);
  }

  /** Best effort: agents still working on a finished job are told to stop. */
  private async cancelOnAgents(org: string, nodeIds: string[], jid: string): Promise<void> {
    await Promise.all(nodeIds.map((nodeId) => nodeStub(this.env, org, nodeId).cancelJob(jid).catch(() => undefined)));
  }

  private emit(type: JobEvent["type"], nodeId: string | null, data: JsonObject, job: JobRow | undefined = this.job()): JobEvent {
    const event = this.events.append(type, nodeId, data);
    this.watchers.broadcast(sseFrame(event.seq, event));
    this.orgEvents.fromJob(job, event);
    return event;
  }

  private async indexInOrg(): Promise<void> {
    const job = this.job();
    const record = job ? toRecord(job, this.targets()) : null;
    if (!record) return;
    const { args: _args, targets: _targets, metadata: _metadata, timeout: _timeout, test: _test, finishedAt: _f, ...summary } = record;
    await orgStub(this.env, (this.job() as JobRow).org).indexJob(summary satisfies JobSummary);
  }

  private setStatus(status: JobStatus): void {
    this.writeJob("UPDATE job SET status = ?, updated_at = ? WHERE status IN ('claimed', 'running')", status, Date.now());
  }

  private job(): JobRow | undefined {
    this.cachedJob ??= { row: this.sql.exec<JobRow>("SELECT * FROM job").toArray()[0] };
    return this.cachedJob.row;
  }

  private writeJob(query: string, ...bindings: SqlStorageValue[]): void {
    this.sql.exec(query, ...bindings);
    this.cachedJob = null;
  }

  private targets(): TargetRow[] {
    return this.sql.exec<TargetRow>("SELECT * FROM targets ORDER BY node_id").toArray();
  }

  private target(nodeId: string): TargetRow | undefined {
    return this.sql.exec<TargetRow>("SELECT * FROM targets WHERE node_id = ?", nodeId).toArray()[0];
  }
}
