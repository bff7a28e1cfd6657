import { DurableObject } from "cloudflare:workers";
import { canonicalJson, type SettingsUpdate } from "../protocol/agent-wire.ts";
import type { CreatedOrg, CreatedToken, CreateTokenBody, Identity, OrgInfo, TokenRecord, UpdateOrgBody } from "../protocol/api.ts";
import { failure, type Result } from "../protocol/errors.ts";
import {
  type CreateEnrollmentTokenBody,
  type EnrollBody,
  type EnrollmentState,
  type EnrollmentTokenRecord,
  ENROLLMENT_TRANSITIONS,
  type EnrollResponse,
  type Facts,
  type Labels,
  type NodeSummary,
  type SettingRecord,
  type SettingScope,
} from "../protocol/nodes.ts";
import type { JsonValue } from "../protocol/json.ts";
import type { JobSummary } from "../protocol/jobs.ts";
import type { StatesUpdate, StateTreeInfo } from "../protocol/states.ts";
import { parseTarget } from "../protocol/target.ts";
import { sha256Hex } from "../protocol/tokens.ts";
import { type ObjectsEnv, nodeStub } from "./env.ts";
import { ApiTokenStore } from "./org/api-tokens.ts";
import { AppsIndex, type NodeLoad, type TrackedTask } from "./org/apps-index.ts";
import type { AuditEntry, AuditRequestRecord, NewOrgEvent } from "../protocol/events.ts";
import { AuditLog } from "./org/audit.ts";
import { EventStore } from "./org/events.ts";
import { EventsHub } from "./org/events-hub.ts";
import { JobIndex } from "./org/job-index.ts";
import { MetricsStore } from "./org/metrics-store.ts";
import { isFinishing, jobFinishedDeltas, jobGauges, nodeGauges, ZERO_COUNTERS } from "./org/metrics-sources.ts";
import type { MetricDeltas, Sample } from "../protocol/metrics.ts";
import { StateTreeStore } from "./org/state-trees.ts";
import { retentionMs } from "./job/timing.ts";
import { EnrollmentTokenStore } from "./org/enrollment-tokens.ts";
import { MIGRATIONS } from "./org/migrations.ts";
import { type DirectoryEntry, NodeDirectory } from "./org/node-directory.ts";
import { mintHashedToken } from "./org/secrets.ts";
import { type MergedSettings, SettingsStore } from "./org/settings-store.ts";
import { RateLimiter } from "./rate-limiter.ts";
import { applyMigrations } from "./sql-migrations.ts";

const DEFAULT_RATE_LIMIT_PER_MINUTE = 1200;
/** Settings fan-out calls this many node objects at once. */
const FAN_OUT_BATCH = 50;

interface OrgRow extends Record<string, SqlStorageValue> {
  name: string;
  created_at: number;
  rate_limit_per_minute: number;
}

export type EnrollmentActionName = "approve" | "reject" | "revoke";
const ACTION_TARGET: Record<EnrollmentActionName, EnrollmentState> = { approve: "approved", reject: "rejected", revoke: "revoked" };

function toOrgInfo(row: OrgRow): OrgInfo {
  return { name: row.name, createdAt: new Date(row.created_at).toISOString(), rateLimitPerMinute: row.rate_limit_per_minute };
}

/**
 * One per tenant: API and enrollment tokens, the node directory, settings, the audit log and the event stream.
 * Methods called from API routes take the actor but do not audit: the API's audit middleware records each request once.
 */
export class OrgObject extends DurableObject<ObjectsEnv> {
  private readonly sql: SqlStorage;
  private readonly limiter = new RateLimiter();
  private readonly tokens: ApiTokenStore;
  private readonly enrollmentTokens: EnrollmentTokenStore;
  private readonly nodes: NodeDirectory;
  private readonly settings: SettingsStore;
  private readonly audit: AuditLog;
  private readonly jobs: JobIndex;
  private readonly stateTrees: StateTreeStore;
  private readonly appsIndex: AppsIndex;
  private readonly events: EventStore;
  private readonly eventsHub: EventsHub;
  private readonly metrics: MetricsStore;

  constructor(ctx: DurableObjectState, env: ObjectsEnv) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    applyMigrations(this.sql, MIGRATIONS);
    this.tokens = new ApiTokenStore(this.sql);
    this.enrollmentTokens = new EnrollmentTokenStore(this.sql);
    this.nodes = new NodeDirectory(this.sql);
    this.settings = new SettingsStore(this.sql);
    this.audit = new AuditLog(this.sql);
    this.jobs = new JobIndex(this.sql);
    this.stateTrees = new StateTreeStore(this.sql);
    this.appsIndex = new AppsIndex(this.sql);
    this.events = new EventStore(this.sql);
    this.eventsHub = new EventsHub(ctx, this.events);
    this.metrics = new MetricsStore(this.sql);
  }

  // ---- org and API tokens ----

  async createOrg(name: string, adminTokenName: string): Promise<Result<CreatedOrg>> {
    if (this.orgRow()) return failure("conflict", `org '${name}' already exists`);
    const minted = await mintHashedToken(name);
    if (this.orgRow()) return failure("conflict", `org '${name}' already exists`);
    this.sql.exec(
      "INSERT INTO org (id, name, created_at, rate_limit_per_minute) VALUES (1, ?, ?, ?)",
      name,
      Date.now(),
      DEFAULT_RATE_LIMIT_PER_MINUTE,
    );
    const admin = this.tokens.insert(minted, { name: adminTokenName, scope: "admin" }, "operator");
    return { ok: true, org: toOrgInfo(this.orgRow() as OrgRow), admin };
  }

  getOrg(): OrgInfo | null {
    const row = this.orgRow();
    return row ? toOrgInfo(row) : null;
  }

  updateOrg(body: UpdateOrgBody, _actor: string): Result<{ org: OrgInfo }> {
    if (!this.orgRow()) return failure("not_found", "org not found");
    this.sql.exec("UPDATE org SET rate_limit_per_minute = ?", body.rateLimitPerMinute);
    return { ok: true, org: toOrgInfo(this.orgRow() as OrgRow) };
  }

  async authenticate(tokenId: string, secret: string): Promise<Result<{ identity: Identity }>> {
    const org = this.orgRow();
    const now = Date.now();
    const record = org ? await this.tokens.verify(tokenId, secret, now) : null;
    if (!org || !record) return failure("unauthorized", "invalid, expired or revoked API token");
    const wait = this.limiter.take(tokenId, org.rate_limit_per_minute, now);
    if (wait > 0) {
      return failure("rate_limited", `rate limit of ${org.rate_limit_per_minute} requests per minute exceeded`, {
        retryAfterSeconds: wait,
      });
    }
    return { ok: true, identity: { org: org.name, tokenId, tokenName: record.name, scope: record.scope } };
  }

  async createToken(body: CreateTokenBody, actor: string): Promise<Result<{ created: CreatedToken }>> {
    const org = this.orgRow();
    if (!org) return failure("not_found", "org not found");
    // Hash first: checks and writes below then run with no await between them.
    const minted = await mintHashedToken(org.name);
    if (this.tokens.activeNameTaken(body.name)) return failure("conflict", `an active token named '${body.name}' already exists`);
    const created = this.tokens.insert(minted, body, actor);
    return { ok: true, created };
  }

  listTokens(includeRevoked: boolean): TokenRecord[] {
    return this.tokens.list(includeRevoked);
  }

  revokeToken(tokenId: string, _actor: string): Result<{ record: TokenRecord }> {
    const record = this.tokens.get(tokenId);
    if (!record) return failure("not_found", `token '${tokenId}' not found`);
    if (record.revokedAt !== null) return failure("conflict", `token '${tokenId}' is already revoked`);
    this.tokens.revoke(tokenId);
    this.limiter.forget(tokenId);
    this.eventsHub.closeToken(tokenId, 4001, "token revoked");
    return { ok: true, record: this.tokens.get(tokenId) as TokenRecord };
  }

  // ---- enrollment ----

  async createEnrollmentToken(
    body: CreateEnrollmentTokenBody,
    actor: string,
  ): Promise<Result<{ token: string; record: EnrollmentTokenRecord }>> {
    const org = this.orgRow();
    if (!org) return failure("not_found", "org not found");
    const minted = await mintHashedToken(org.name);
    const created = this.enrollmentTokens.insert(minted, body, actor);
    return { ok: true, ...created };
  }

  listEnrollmentTokens(includeSpent: boolean): EnrollmentTokenRecord[] {
    return this.enrollmentTokens.list(includeSpent);
  }

  revokeEnrollmentToken(id: string, _actor: string): Result<{ record: EnrollmentTokenRecord }> {
    const record = this.enrollmentTokens.get(id);
    if (!record) return failure("not_found", `enrollment token '${id}' not found`);
    if (record.revokedAt !== null) return failure("conflict", `enrollment token '${id}' is already revoked`);
    this.enrollmentTokens.revoke(id);
    return { ok: true, record: this.enrollmentTokens.get(id) as EnrollmentTokenRecord };
  }

  /** Enrolls a node; repeating it with the same key is harmless, another key for the id is refused. */
  async enroll(tokenId: string, secret: string, body: EnrollBody): Promise<Result<EnrollResponse>> {
    const org = this.orgRow();
    if (!org) return failure("unauthorized", "invalid enrollment token");
    const existing = this.nodes.get(body.nodeId);
    if (existing && existing.publicKey !== body.publicKey) {
      return failure("conflict", `node id '${body.nodeId}' is already enrolled with another key`);
    }
    if (existing) {
      await this.syncNodeObject(org.name, existing);
      return { ok: true, org: org.name, nodeId: body.nodeId, state: existing.summary.state };
    }
    const check = await this.enrollmentTokens.check(tokenId, secret, Date.now());
    if (!check.ok) return failure("unauthorized", check.message);
    // Re-read after the await: a concurrent enrollment may have taken the id.
    if (this.nodes.get(body.nodeId)) return failure("conflict", `node id '${body.nodeId}' is already enrolled`);
    const state: EnrollmentState = check.record.autoApprove ? "approved" : "pending";
    this.nodes.insert({ id: body.nodeId, publicKey: body.publicKey, state, labels: check.record.labels, facts: body.facts, tokenId });
    this.enrollmentTokens.spendUse(tokenId);
    this.audit.record(`enrollment:${tokenId}`, "node.enroll", body.nodeId, { state });
    await this.syncNodeObject(org.name, this.nodes.get(body.nodeId) as DirectoryEntry);
    return { ok: true, org: org.name, nodeId: body.nodeId, state };
  }

  async transitionNode(
    nodeId: string,
    action: EnrollmentActionName,
    reason: string | null,
    _actor: string,
  ): Promise<Result<{ node: NodeSummary }>> {
    const org = this.orgRow();
    const entry = this.nodes.get(nodeId);
    if (!org || !entry) return failure("not_found", `node '${nodeId}' not found`);
    const target = ACTION_TARGET[action];
    const current = entry.summary.state;
    // Approving an active node, or repeating an action, changes nothing but re-syncs the node object.
    const alreadyThere = current === target || (action === "approve" && current === "active");
    if (!alreadyThere && !ENROLLMENT_TRANSITIONS[current].includes(target)) {
      return failure("conflict", `cannot ${action} node '${nodeId}': it is ${current}`);
    }
    if (!alreadyThere) {
      this.nodes.setState(nodeId, target, reason);
    }
    const updated = this.nodes.get(nodeId) as DirectoryEntry;
    await this.syncNodeObject(org.name, updated);
    return { ok: true, node: updated.summary };
  }

  async approvePending(actor: string): Promise<NodeSummary[]> {
    const approved: NodeSummary[] = [];
    for (const entry of this.nodes.list(["pending"])) {
      const result = await this.transitionNode(entry.summary.id, "approve", null, actor);
      if (result.ok) approved.push(result.node);
    }
    return approved;
  }

  // ---- node directory ----

  listNodes(states: readonly EnrollmentState[] | null): NodeSummary[] {
    return this.nodes.list(states).map((entry) => entry.summary);
  }

  /** Directory entries with facts, for target resolution. */
  /**
   * Target resolution over the approved and active nodes: their ids, in id order. Only ids cross
   * the RPC, not a thousand entries with facts. The API has parsed `expression` already, so it
   * answers a bad one; here it would throw.
   */
  resolveTargets(expression: string): string[] {
    return this.nodes.matching(parseTarget(expression), ["approved", "active"]);
  }

  /** `node list --target`: what a job to `expression` would resolve, over the nodes in `states`; parsed by the API already. */
  previewTarget(expression: string, states: readonly EnrollmentState[] | null): NodeSummary[] {
    return this.nodes.listMatching(parseTarget(expression), states).map((entry) => entry.summary);
  }

  nodeEntries(states: readonly EnrollmentState[] | null): DirectoryEntry[] {
    return this.nodes.list(states);
  }

  nodeEntry(nodeId: string): DirectoryEntry | null {
    return this.nodes.get(nodeId);
  }

  async setLabels(nodeId: string, patch: Record<string, string | null>, _actor: string): Promise<Result<{ node: NodeSummary }>> {
    const entry = this.nodes.get(nodeId);
    if (!entry) return failure("not_found", `node '${nodeId}' not found`);
    const labels: Labels = { ...entry.summary.labels };
    for (const [key, value] of Object.entries(patch)) {
      if (value === null) delete labels[key];
      else labels[key] = value;
    }
    this.nodes.setLabels(nodeId, labels);
    await this.pushSettingsTo([nodeId]);
    return { ok: true, node: (this.nodes.get(nodeId) as DirectoryEntry).summary };
  }

  /** Marks the node direct at `address` (already parsed by the API), or back to its tunnel with null. */
  setDirectAddress(nodeId: string, address: string | null, _actor: string): Result<{ node: NodeSummary }> {
    const entry = this.nodes.get(nodeId);
    if (!entry) return failure("not_found", `node '${nodeId}' not found`);
    const { state } = entry.summary;
    if (address !== null && (state === "rejected" || state === "revoked")) return failure("conflict", `node '${nodeId}' is ${state}; it serves nothing`);
    this.nodes.setDirectAddress(nodeId, address);
    return { ok: true, node: (this.nodes.get(nodeId) as DirectoryEntry).summary };
  }

  /** Node id → address of every direct node that may serve, for the proxy (cached there for 2 s). */
  directNodes(): Record<string, string> {
    return this.nodes.directAddresses();
  }

  // ---- settings ----

  async putSetting(scope: SettingScope, key: string, value: JsonValue, actor: string): Promise<Result<{ setting: SettingRecord }>> {
    if (scope.kind === "node" && !this.nodes.get(scope.nodeId)) return failure("not_found", `node '${scope.nodeId}' not found`);
    const setting = this.settings.put(scope, key, value, actor);
    await this.pushSettingsTo(this.nodesInScope(scope));
    return { ok: true, setting };
  }

  async deleteSetting(scope: SettingScope, key: string, _actor: string): Promise<Result<{ deleted: SettingRecord }>> {
    const existing = this.settings.get(scope, key);
    if (!existing) return failure("not_found", `setting '${key}' is not set at that scope`);
    this.settings.delete(scope, key);
    await this.pushSettingsTo(this.nodesInScope(scope));
    return { ok: true, deleted: existing };
  }

  listSettings(scope: SettingScope | null): SettingRecord[] {
    return this.settings.list(scope);
  }

  mergedSettings(nodeId: string): Result<MergedSettings> {
    const entry = this.nodes.get(nodeId);
    if (!entry) return failure("not_found", `node '${nodeId}' not found`);
    return { ok: true, ...this.settings.mergedFor(nodeId, entry.summary.labels) };
  }

  // ---- state trees for state.apply ----

  /** Stores the tree (write before send), then queues it in every live node's outbox. */
  async pushStates(files: Record<string, string>, actor: string): Promise<Result<{ info: StateTreeInfo }>> {
    const org = this.orgRow();
    if (!org) return failure("not_found", "org not found");
    const version = (await sha256Hex(canonicalJson(files))).slice(0, 16);
    const info = this.stateTrees.store(version, files, actor);
    const update = this.stateTrees.update() as StatesUpdate;
    const live = this.nodes.list(["approved", "active"]);
    for (let i = 0; i < live.length; i += FAN_OUT_BATCH) {
      await Promise.all(live.slice(i, i + FAN_OUT_BATCH).map((e) => nodeStub(this.env, org.name, e.summary.id).pushStates(update)));
    }
    return { ok: true, info };
  }

  stateTree(): StateTreeInfo | null {
    return this.stateTrees.info();
  }

  // ---- job index (kept current by each JobObject) ----

  /** The update that moves a job into its final state also counts it in the org's metrics (no second RPC per job). */
  indexJob(summary: JobSummary): void {
    const previous = this.jobs.status(summary.jid);
    this.jobs.upsert(summary);
    if (isFinishing(previous, summary)) this.metrics.apply(jobFinishedDeltas(summary));
    this.jobs.prune(Date.now() - retentionMs(this.env));
  }

  listJobs(limit: number): JobSummary[] {
    return this.jobs.recent(limit);
  }

  activeJobs(): JobSummary[] {
    return this.jobs.active();
  }

  // ---- apps (the app objects hold the rest) ----

  appCreated(name: string): void {
    this.appsIndex.addApp(name, Date.now());
  }

  appNames(): string[] {
    return this.appsIndex.apps();
  }

  deploymentCreated(deploymentId: string, app: string): void {
    this.appsIndex.addDeployment(deploymentId, app);
  }

  appOfDeployment(deploymentId: string): string | null {
    return this.appsIndex.appOf(deploymentId);
  }

  /** Resources reserved by placed tasks, per node: the scheduler's view of room left. */
  trackTasks(app: string, tasks: TrackedTask[]): void {
    this.appsIndex.track(app, tasks);
  }

  untrackTasks(taskIds: string[]): void {
    this.appsIndex.untrack(taskIds);
  }

  nodeLoad(): NodeLoad[] {
    return this.appsIndex.load();
  }

  // ---- called by NodeObject ----

  /** Marks the node active and online; returns its settings and state tree so the node object can queue them. */
  async nodeConnected(nodeId: string, at: number): Promise<{ settings: SettingsUpdate; states: StatesUpdate | null } | null> {
    const entry = this.nodes.get(nodeId);
    if (!entry) return null;
    if (entry.summary.state === "approved") {
      this.nodes.setState(nodeId, "active", null);
      this.audit.record(`node:${nodeId}`, "node.activate", nodeId);
    }
    if (!entry.summary.online) this.recordEvents([{ ts: new Date(at).toISOString(), type: "node.online", data: { nodeId } }]);
    this.nodes.setPresence(nodeId, true, at);
    this.metrics.apply({ counters: [{ name: "zectre_agent_connections_total", labels: {}, value: 1 }], histograms: [] });
    return { settings: await this.settingsUpdateFor(nodeId, entry.summary.labels), states: this.stateTrees.update() };
  }

  nodePresenceChanged(nodeId: string, online: boolean, lastSeen: number): void {
    const entry = this.nodes.get(nodeId);
    if (!entry) return;
    if (entry.summary.online !== online) this.recordEvents([{ ts: new Date().toISOString(), type: online ? "node.online" : "node.offline", data: { nodeId } }]);
    if (entry.summary.online && !online) this.metrics.apply({ counters: [{ name: "zectre_agent_disconnections_total", labels: {}, value: 1 }], histograms: [] });
    this.nodes.setPresence(nodeId, online, lastSeen);
  }

  nodeFactsChanged(nodeId: string, facts: Facts): void {
    if (this.nodes.get(nodeId)) this.nodes.setFacts(nodeId, facts);
  }

  // ---- events and audit (the stores and the socket fan-out live in org/events*.ts) ----

  /** Stores the events (ids assigned here) and sends them to every subscriber. */
  recordEvents(events: NewOrgEvent[]): number {
    const stored = this.events.append(events);
    this.eventsHub.broadcast(stored);
    return stored.length;
  }

  /** Only WebSocket upgrades for `/api/v1/events`, forwarded by the API Worker after it authenticated the caller. */
  override async fetch(request: Request): Promise<Response> {
    return this.eventsHub.accept(request);
  }

  override async webSocketMessage(): Promise<void> {}

  override async webSocketClose(ws: WebSocket, code: number, reason: string): Promise<void> {
    this.eventsHub.closed(ws, code, reason);
  }

  recordAudit(entry: AuditRequestRecord): void {
    this.audit.recordRequest(entry);
  }

  listAudit(sinceMs: number, limit: number): AuditEntry[] {
    return this.audit.list(sinceMs, limit);
  }

  // ---- metrics (org/metrics-store.ts; GET /metrics renders them) ----

  /** Deltas from the job, node and webhook objects, the proxy and the artifact route; stored before this returns. */
  recordMetrics(deltas: MetricDeltas): { applied: number; rejected: number } {
    return this.metrics.apply(deltas);
  }

  /** Stored counters and histograms plus gauges read now, every series labelled with the org; null for an org never created. */
  metricsSnapshot(): { org: string; samples: Sample[] } | null {
    const org = this.orgRow();
    if (!org) return null;
    const stored = this.metrics.samples();
    const zeros = ZERO_COUNTERS.filter((zero) => !stored.some((s) => s.name === zero.name));
    const samples = [...nodeGauges(this.sql), ...jobGauges(this.sql), ...zeros, ...stored];
    return { org: org.name, samples: samples.map((sample) => ({ ...sample, labels: { org: org.name, ...sample.labels } })) };
  }

  // ---- internals ----

  private async syncNodeObject(org: string, entry: DirectoryEntry): Promise<void> {
    const stub = nodeStub(this.env, org, entry.summary.id);
    await stub.configure({ org, nodeId: entry.summary.id, publicKey: entry.publicKey, state: entry.summary.state });
    await stub.setState(entry.summary.state);
  }

  private nodesInScope(scope: SettingScope): string[] {
    if (scope.kind === "node") return [scope.nodeId];
    const live = this.nodes.list(["approved", "active"]);
    const matching = scope.kind === "org" ? live : live.filter((e) => e.summary.labels[scope.key] === scope.value);
    return matching.map((e) => e.summary.id);
  }

  private async settingsUpdateFor(nodeId: string, labels: Labels): Promise<SettingsUpdate> {
    const merged = this.settings.mergedFor(nodeId, labels);
    const version = (await sha256Hex(canonicalJson(merged.settings))).slice(0, 16);
    return { kind: "settings.update", version, settings: merged.settings };
  }

  /** Write before send: the settings rows are stored; each node object then queues its update in its outbox. */
  private async pushSettingsTo(nodeIds: readonly string[]): Promise<void> {
    const org = this.orgRow();
    if (!org) return;
    const live = nodeIds
      .map((id) => this.nodes.get(id))
      .filter((e): e is DirectoryEntry => e !== null && (e.summary.state === "approved" || e.summary.state === "active"));
    for (let i = 0; i < live.length; i += FAN_OUT_BATCH) {
      await Promise.all(
        live.slice(i, i + FAN_OUT_BATCH).map(async (entry) => {
          const update = await this.settingsUpdateFor(entry.summary.id, entry.summary.labels);
          await nodeStub(this.env, org.name, entry.summary.id).pushSettings(update);
        }),
      );
    }
  }

  private orgRow(): OrgRow | undefined {
    return this.sql.exec<OrgRow>("SELECT * FROM org WHERE id = 1").toArray()[0];
  }
}
