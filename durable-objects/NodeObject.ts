import { DurableObject } from "cloudflare:workers";
import { type AgentMessage, CLOSE, PING_FRAME, PONG_FRAME, type SettingsUpdate, WIRE_VERSION } from "../protocol/agent-wire.ts";
import type { TaskInventoryMessage, TaskLogsMessage, TaskStart, TaskStatusMessage, TaskStop } from "../protocol/deployments.ts";
import { type JobDispatch, reportJid } from "../protocol/jobs.ts";
import type { StatesUpdate } from "../protocol/states.ts";
import { log } from "../workers/lib/log.ts";
import { failure, type Result } from "../protocol/errors.ts";
import type { ChallengeResponse, EnrollmentState, Facts } from "../protocol/nodes.ts";
import { appStub, heartbeatSeconds, jobStub, type ObjectsEnv, orgStub } from "./env.ts";
import { NonceStore, signatureValid } from "./node/handshake.ts";
import { parseInbound } from "./node/inbound.ts";
import { InFlightDispatches } from "./node/in-flight.ts";
import { actionFrame, newEntry, Outbox, type OutboxEntry } from "./node/outbox.ts";
import { isTunnelRequest, NodeTunnel } from "./node/tunnel.ts";
import { tunnelMetrics } from "./node/tunnel-metrics.ts";
import { applyMigrations } from "./sql-migrations.ts";

const MIGRATIONS = [
  `CREATE TABLE identity (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     org TEXT NOT NULL,
     node_id TEXT NOT NULL,
     public_key TEXT NOT NULL,
     state TEXT NOT NULL
   );
   CREATE TABLE presence (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     connected_at INTEGER,
     last_seen INTEGER,
     reported_seen INTEGER
   );
   INSERT INTO presence (id) VALUES (1);
   CREATE TABLE facts (id INTEGER PRIMARY KEY CHECK (id = 1), body TEXT NOT NULL, updated_at INTEGER NOT NULL);
   CREATE TABLE nonces (nonce TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
   CREATE TABLE outbox (id TEXT PRIMARY KEY, kind TEXT NOT NULL, body TEXT NOT NULL, created_at INTEGER NOT NULL);
   CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);`,
  // Which app each task sent here belongs to, so an inventory after reconnect reaches every app involved.
  `CREATE TABLE tasks (task_id TEXT PRIMARY KEY, app TEXT NOT NULL);`,
] as const;

interface Identity extends Record<string, SqlStorageValue> {
  org: string;
  node_id: string;
  public_key: string;
  state: string;
}

interface Presence extends Record<string, SqlStorageValue> {
  connected_at: number | null;
  last_seen: number | null;
  reported_seen: number | null;
}

interface SocketAttachment {
  connectedAt: number;
  lastMessageAt: number;
}

export interface NodeConfig {
  org: string;
  nodeId: string;
  publicKey: string;
  state: EnrollmentState;
}

export interface NodeLiveDetail {
  online: boolean;
  connectedAt: number | null;
  lastSeen: number | null;
  facts: Facts | null;
  pendingActions: number;
}

const CONNECTABLE: readonly string[] = ["approved", "active"];
/**
 * An online node's last-seen time reaches the org's directory this often, not on every
 * presence check: a thousand nodes would otherwise call the one org object every window.
 * Going offline and coming back are reported at once, with the exact time.
 */
const SEEN_REPORT_INTERVAL_MS = 5 * 60_000;

/** Nodes that connected together would check presence together, waking a thousand objects in one burst. */
function presenceJitterMs(env: ObjectsEnv): number {
  return Math.floor(Math.random() * heartbeatSeconds(env) * 500);
}

/** One per host: the agent's hibernatable WebSocket, presence, facts and the action outbox. */
export class NodeObject extends DurableObject<ObjectsEnv> {
  private readonly sql: SqlStorage;
  private readonly nonces: NonceStore;
  private readonly outbox: Outbox;
  private readonly inFlight = new InFlightDispatches();
  private identityRow: { row: Identity | undefined } | null = null;
  private readonly tunnel = new NodeTunnel(tunnelMetrics(this.ctx, this.env, () => this.identity()?.org ?? null));

  constructor(ctx: DurableObjectState, env: ObjectsEnv) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    applyMigrations(this.sql, MIGRATIONS);
    this.nonces = new NonceStore(this.sql);
    this.outbox = new Outbox(this.sql);
    // Heartbeats are answered by the runtime without waking the object, so idle nodes hibernate.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(PING_FRAME, PONG_FRAME));
  }

  // ---- called by OrgObject ----

  configure(config: NodeConfig): void {
    this.sql.exec(
      `INSERT INTO identity (id, org, node_id, public_key, state) VALUES (1, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET org = excluded.org, node_id = excluded.node_id, public_key = excluded.public_key, state = excluded.state`,
      config.org,
      config.nodeId,
      config.publicKey,
      config.state,
    );
    this.identityRow = null;
  }

  /** Revoked or rejected nodes lose their socket at once; every later connect is refused. */
  setState(state: EnrollmentState): void {
    this.sql.exec("UPDATE identity SET state = ?", state);
    this.identityRow = null;
    if (!CONNECTABLE.includes(state)) {
      this.parkInFlight();
      for (const ws of this.ctx.getWebSockets()) {
        ws.close(CLOSE.revoked, `node is ${state}`);
        this.tunnel.socketClosed(ws);
      }
      this.sql.exec("UPDATE presence SET connected_at = NULL");
    }
  }

  /** Queues the node's merged settings unless the agent already has (or is about to get) that version. */
  pushSettings(update: SettingsUpdate): boolean {
    return this.pushVersioned(update, "settings_version");
  }

  /** Same for the org's state tree. */
  pushStates(update: StatesUpdate): boolean {
    return this.pushVersioned(update, "states_version");
  }

  /**
   * To a connected agent the dispatch goes at once and waits for its ack in memory (the job
   * stored it already and re-sends to silent targets: see InFlightDispatches); to an absent
   * one it waits in the outbox for the next connect.
   */
  dispatch(action: JobDispatch): { online: boolean; actionId: string } {
    const sockets = this.openSockets();
    const entry = newEntry(action);
    if (sockets.length === 0 || !this.inFlight.add(entry)) this.outbox.store(entry);
    this.sendToAgent(actionFrame(entry), sockets);
    return { online: sockets.length > 0, actionId: entry.id };
  }

  /**
   * The job's one re-send to a silent target: the same action id, so the agent dedups.
   * From here on the action is in the outbox, whatever becomes of this instance; an id this
   * instance does not know (it restarted since) is stored again from the job's copy.
   * False when the agent has already acked the action: not silent after all.
   */
  resend(actionId: string, action: JobDispatch): boolean {
    if (this.inFlight.wasAcked(actionId)) return false;
    const remembered = this.inFlight.take(actionId) ?? { id: actionId, action, createdAt: Date.now() };
    const entry = this.outbox.get(actionId) ?? this.outbox.store(remembered);
    this.sendToAgent(actionFrame(entry));
    return true;
  }

  /** Whether the agent acked the action. Jobs ask, rather than being told per ack, so acks cost the job object nothing. */
  isAcked(actionId: string): boolean {
    return !this.inFlight.has(actionId) && this.outbox.get(actionId) === null;
  }

  // ---- called by AppObject ----

  /** Write before send: the task is remembered and the action stored in the outbox, then sent if connected. */
  startTask(action: TaskStart): { online: boolean } {
    this.sql.exec("INSERT INTO tasks (task_id, app) VALUES (?, ?) ON CONFLICT (task_id) DO NOTHING", action.taskId, action.app);
    this.sendToAgent(actionFrame(this.outbox.add(action)));
    return { online: this.openSockets().length > 0 };
  }

  stopTask(action: TaskStop, app: string): void {
    this.sql.exec("INSERT INTO tasks (task_id, app) VALUES (?, ?) ON CONFLICT (task_id) DO NOTHING", action.taskId, app);
    this.sendToAgent(actionFrame(this.outbox.add(action)));
  }

  cancelJob(jid: string): void {
    this.sendToAgent(actionFrame(this.outbox.add({ kind: "job.cancel", jid })));
  }

  detail(): NodeLiveDetail {
    const presence = this.presence();
    const facts = this.sql.exec<{ body: string }>("SELECT body FROM facts").toArray()[0];
    return {
      online: this.openSockets().length > 0,
      connectedAt: presence.connected_at,
      lastSeen: this.currentLastSeen() ?? presence.last_seen,
      facts: facts ? (JSON.parse(facts.body) as Facts) : null,
      pendingActions: this.outbox.pending().length + this.inFlight.size,
    };
  }

  // ---- called by the API Worker for agents ----

  challenge(org: string, nodeId: string): Result<ChallengeResponse> {
    const identity = this.identity();
    if (!identity || identity.org !== org || identity.node_id !== nodeId) {
      return failure("unauthorized", `node '${nodeId}' is not enrolled`);
    }
    if (!CONNECTABLE.includes(identity.state)) {
      return failure("forbidden", `node '${nodeId}' is ${identity.state}`, { details: { state: identity.state } });
    }
    const issued = this.nonces.issue(Date.now());
    return { ok: true, nonce: issued.nonce, expiresAt: new Date(issued.expiresAt).toISOString() };
  }

  override async fetch(request: Request): Promise<Response> {
    // Only the proxy Worker makes these; the API Worker forwards nothing but /api/v1/agent/connect here.
    if (isTunnelRequest(request)) {
      return this.tunnel.fetch(request, { socket: this.openSockets()[0] ?? null, hasTask: (taskId, app) => this.hasTask(taskId, app) });
    }
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return errorResponse(426, "bad_request", "expected a WebSocket upgrade");
    }
    const url = new URL(request.url);
    const [org, nodeId, nonce, sig] = ["org", "node", "nonce", "sig"].map((k) => url.searchParams.get(k) ?? "");
    const identity = this.identity();
    if (!identity || identity.org !== org || identity.node_id !== nodeId) {
      return errorResponse(401, "unauthorized", `node '${nodeId}' is not enrolled`);
    }
    if (!CONNECTABLE.includes(identity.state)) {
      return errorResponse(403, "forbidden", `node '${nodeId}' is ${identity.state}`, { state: identity.state });
    }
    const now = Date.now();
    if (!this.nonces.spend(nonce as string, now)) return errorResponse(401, "unauthorized", "unknown, used or expired nonce");
    if (!(await signatureValid(identity.public_key, sig as string, identity.org, identity.node_id, nonce as string))) {
      return errorResponse(401, "unauthorized", "signature does not match the node's key");
    }
    return this.accept(identity, now);
  }

  // ---- WebSocket and alarm handlers ----

  override async webSocketMessage(ws: WebSocket, frame: string | ArrayBuffer): Promise<void> {
    // Binary frames are the tunnel's; JSON text frames are everything else. They skip the identity lookup and the
    // last-message stamp: the socket was authenticated at accept, and tunnel traffic is the hot path.
    if (typeof frame !== "string") {
      const problem = this.tunnel.onFrame(ws, frame);
      if (problem !== null) ws.send(JSON.stringify({ type: "error", v: WIRE_VERSION, code: "invalid_message", message: problem }));
      return;
    }
    const identity = this.identity();
    if (!identity) return ws.close(CLOSE.policy, "node is not configured");
    this.stampLastMessage(ws);
    const inbound = parseInbound(frame, identity.node_id);
    if (!inbound.ok) {
      if (inbound.close !== undefined) return ws.close(inbound.close, inbound.message);
      ws.send(JSON.stringify({ type: "error", v: WIRE_VERSION, code: inbound.code, message: inbound.message }));
      return;
    }
    const message = inbound.message;
    switch (message.type) {
      case "facts":
        this.sql.exec(
          "INSERT INTO facts (id, body, updated_at) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
          JSON.stringify(message.facts),
          Date.now(),
        );
        await orgStub(this.env, identity.org).nodeFactsChanged(identity.node_id, message.facts);
        return;
      case "ack":
        this.takeAcks(message.ids);
        return;
      case "return":
        if (message.acks) this.takeAcks(message.acks);
        await this.routeReturn(ws, identity.org, identity.node_id, message);
        return;
      case "job.report":
        await this.routeReport(ws, identity.org, identity.node_id, message);
        return;
      case "task.status":
        await this.routeTaskStatus(ws, identity.org, identity.node_id, message);
        return;
      case "task.inventory":
        await this.reconcileTasks(identity.org, identity.node_id, message.tasks);
        return;
      case "task.logs":
        await this.routeLogs(ws, identity.org, identity.node_id, message);
        return;
    }
  }

  override async webSocketClose(ws: WebSocket, code: number): Promise<void> {
    this.tunnel.socketClosed(ws);
    try {
      // 1005/1006 are not valid codes to send back.
      ws.close(code === 1005 || code === 1006 ? 1000 : code, "closing");
    } catch {
      // Already closed.
    }
    await this.lastSocketGone(ws);
  }

  override async webSocketError(ws: WebSocket): Promise<void> {
    this.tunnel.socketClosed(ws);
    await this.lastSocketGone(ws);
  }

  /** Runs at least once per 3 heartbeats while connected: offline detection and last-seen reporting. */
  override async alarm(): Promise<void> {
    const identity = this.identity();
    const sockets = this.openSockets();
    if (!identity) return;
    if (sockets.length === 0) {
      this.parkInFlight();
      // A restart of the runtime drops sockets without any close event: presence may still say connected.
      if (this.presence().connected_at !== null) await this.markOffline();
      return;
    }
    const lastSeen = this.currentLastSeen() ?? Date.now();
    const window = 3 * heartbeatSeconds(this.env) * 1000;
    if (Date.now() - lastSeen > window) {
      this.parkInFlight();
      for (const ws of sockets) {
        ws.close(CLOSE.heartbeatTimeout, "missed 3 heartbeats");
        this.tunnel.socketClosed(ws);
      }
      await this.markOffline(lastSeen);
      return;
    }
    const presence = this.presence();
    if (presence.reported_seen === null || lastSeen - presence.reported_seen >= SEEN_REPORT_INTERVAL_MS) {
      this.sql.exec("UPDATE presence SET last_seen = ?, reported_seen = ?", lastSeen, lastSeen);
      await orgStub(this.env, identity.org).nodePresenceChanged(identity.node_id, true, lastSeen);
    }
    await this.ctx.storage.setAlarm(lastSeen + window + 500 + presenceJitterMs(this.env));
  }

  // ---- internals ----

  private async accept(identity: Identity, now: number): Promise<Response> {
    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    this.parkInFlight();
    for (const old of this.ctx.getWebSockets()) {
      old.close(CLOSE.replaced, "replaced by a newer connection");
      this.tunnel.socketClosed(old);
    }
    this.ctx.acceptWebSocket(server);
    server.serializeAttachment({ connectedAt: now, lastMessageAt: now } satisfies SocketAttachment);
    if (identity.state === "approved") {
      this.sql.exec("UPDATE identity SET state = 'active'");
      this.identityRow = null;
    }
    this.sql.exec("UPDATE presence SET connected_at = ?, last_seen = ?, reported_seen = ?", now, now, now);
    const window = 3 * heartbeatSeconds(this.env) * 1000;
    await this.ctx.storage.setAlarm(now + window + 500 + presenceJitterMs(this.env));
    // The org records the node as active and online, and returns its current settings.
    const current = await orgStub(this.env, identity.org).nodeConnected(identity.node_id, now);
    // Queued, not sent: the welcome goes first, then everything pending in order.
    if (current) this.queueVersioned(current.settings, "settings_version");
    if (current?.states) this.queueVersioned(current.states, "states_version");
    server.send(
      JSON.stringify({
        type: "welcome",
        v: WIRE_VERSION,
        org: identity.org,
        nodeId: identity.node_id,
        heartbeatSeconds: heartbeatSeconds(this.env),
        serverTime: new Date(now).toISOString(),
      }),
    );
    for (const entry of this.outbox.pending()) this.deliver(server, actionFrame(entry));
    return new Response(null, { status: 101, webSocket: client });
  }

  /**
   * The node is the socket's, never the payload's. The agent's outbox entry is acked
   * only after the job stored the return; returns for unknown jobs or non-targets are
   * dropped (and acked, so they stop coming back).
   */
  private async routeReturn(ws: WebSocket, org: string, nodeId: string, message: Extract<AgentMessage, { type: "return" }>): Promise<void> {
    const outcome = await jobStub(this.env, org, message.jid).recordReturn(nodeId, message.return);
    if (outcome === "unknown_job" || outcome === "not_a_target") {
      log("warn", "node", "dropped a return", { org, nodeId, jid: message.jid, outcome });
    }
    ws.send(JSON.stringify({ type: "ack", v: WIRE_VERSION, ids: [message.id] }));
  }

  /** Acked once the app stored it; a task the app no longer wants is told to stop. */
  private async routeTaskStatus(ws: WebSocket, org: string, nodeId: string, message: TaskStatusMessage): Promise<void> {
    const outcome = await appStub(this.env, org, message.app).taskStatus(nodeId, message);
    if (outcome === "stop") this.stopTask({ kind: "task.stop", taskId: message.taskId, graceSeconds: 10 }, message.app);
    ws.send(JSON.stringify({ type: "ack", v: WIRE_VERSION, ids: [message.id] }));
  }

  /** Every app with a task here or in the agent's list gets to say what should stop and what is missing. */
  private async reconcileTasks(org: string, nodeId: string, inventory: TaskInventoryMessage["tasks"]): Promise<void> {
    const known = this.sql.exec<{ task_id: string; app: string }>("SELECT task_id, app FROM tasks").toArray();
    const apps = new Set([...known.map((t) => t.app), ...inventory.map((t) => t.app)]);
    for (const app of apps) {
      const { stop } = await appStub(this.env, org, app).reconcileNode(nodeId, inventory.filter((t) => t.app === app));
      for (const taskId of stop) this.stopTask({ kind: "task.stop", taskId, graceSeconds: 10 }, app);
    }
    // Tasks the agent no longer has and nobody wants are forgotten.
    const reported = new Set(inventory.map((t) => t.taskId));
    const pendingIds = new Set(this.outbox.pending().map((e) => e.id));
    if (pendingIds.size === 0) for (const t of known) if (!reported.has(t.task_id)) this.sql.exec("DELETE FROM tasks WHERE task_id = ?", t.task_id);
  }

  /** Lines are grouped per app; the batch is acked once every app stored its share. */
  private async routeLogs(ws: WebSocket, org: string, nodeId: string, message: TaskLogsMessage): Promise<void> {
    const byApp = new Map<string, TaskLogsMessage["lines"]>();
    for (const line of message.lines) byApp.set(line.app, [...(byApp.get(line.app) ?? []), line]);
    await Promise.all([...byApp].map(([app, lines]) => appStub(this.env, org, app).appendLogs(nodeId, lines)));
    ws.send(JSON.stringify({ type: "ack", v: WIRE_VERSION, ids: [message.id] }));
  }

  private pushVersioned(update: SettingsUpdate | StatesUpdate, versionKey: string): boolean {
    const entry = this.queueVersioned(update, versionKey);
    if (entry) this.sendToAgent(actionFrame(entry));
    return entry !== null;
  }

  /** Only the newest version of a kind matters: older queued ones are dropped, an unchanged one is not queued. */
  /** A schedule's result becomes a finished job; acked once stored (a resend finds the same jid). */
  private async routeReport(ws: WebSocket, org: string, nodeId: string, message: Extract<AgentMessage, { type: "job.report" }>): Promise<void> {
    const started = message.return.startedAt === null ? Number.NaN : Date.parse(message.return.startedAt);
    const jid = await reportJid(nodeId, message.id, Number.isFinite(started) ? started : Date.now());
    await jobStub(this.env, org, jid).recordReport({
      org, jid, nodeId, function: message.function, args: message.args, metadata: message.metadata, ret: message.return,
    });
    ws.send(JSON.stringify({ type: "ack", v: WIRE_VERSION, ids: [message.id] }));
  }

  private queueVersioned(update: SettingsUpdate | StatesUpdate, versionKey: string): OutboxEntry | null {
    if (this.kv(versionKey) === update.version) return null;
    this.setKv(versionKey, update.version);
    return this.outbox.add(update, { replaceKind: true });
  }

  /**
   * A socket a reconnect replaced closes after the new one is open: what is in flight then
   * went out on the new socket and stays in memory. Only the last socket's going parks it.
   */
  private async lastSocketGone(closed: WebSocket): Promise<void> {
    if (this.openSockets().some((other) => other !== closed)) return;
    this.parkInFlight();
    await this.markOffline();
  }

  private async markOffline(lastSeen?: number): Promise<void> {
    const identity = this.identity();
    const seen = lastSeen ?? this.presence().last_seen ?? Date.now();
    this.sql.exec("UPDATE presence SET connected_at = NULL, last_seen = ?, reported_seen = ?", seen, seen);
    if (identity) await orgStub(this.env, identity.org).nodePresenceChanged(identity.node_id, false, seen);
  }

  private takeAcks(ids: readonly string[]): void {
    const elsewhere = this.inFlight.ack(ids);
    if (elsewhere.length > 0) this.outbox.ack(elsewhere);
  }

  /** Dispatches still unacked when their socket goes wait in the outbox for the next connect. */
  private parkInFlight(): void {
    for (const entry of this.inFlight.drain()) this.outbox.store(entry);
  }

  private sendToAgent(frame: string, sockets: readonly WebSocket[] = this.openSockets()): void {
    for (const ws of sockets) this.deliver(ws, frame);
  }

  /** Every action frame goes out here, so the duplicate-delivery fault switch covers them all. */
  private deliver(ws: WebSocket, frame: string): void {
    ws.send(frame);
    if (this.env.FAULT_DUPLICATE_DELIVERY === "1") ws.send(frame);
  }

  private openSockets(): WebSocket[] {
    return this.ctx.getWebSockets().filter((ws) => ws.readyState === WebSocket.OPEN);
  }

  /** Latest of the last auto-answered ping and the last message, across open sockets. */
  private currentLastSeen(): number | null {
    let latest: number | null = null;
    for (const ws of this.openSockets()) {
      const attachment = ws.deserializeAttachment() as SocketAttachment | null;
      const ping = this.ctx.getWebSocketAutoResponseTimestamp(ws)?.getTime() ?? 0;
      const seen = Math.max(ping, attachment?.lastMessageAt ?? 0, attachment?.connectedAt ?? 0);
      latest = latest === null ? seen : Math.max(latest, seen);
    }
    return latest;
  }

  /** Tunnelled requests may only reach tasks this node object sent to its agent, for the app the proxy named. */
  private hasTask(taskId: string, app: string): boolean {
    return this.sql.exec("SELECT 1 FROM tasks WHERE task_id = ? AND app = ?", taskId, app).toArray().length > 0;
  }

  /** Presence needs seconds, not milliseconds: the attachment is rewritten at most once a second, not on every message. */
  private stampLastMessage(ws: WebSocket): void {
    const attachment = ws.deserializeAttachment() as SocketAttachment | null;
    const now = Date.now();
    if (attachment && now - attachment.lastMessageAt >= 1000) ws.serializeAttachment({ ...attachment, lastMessageAt: now });
  }

  /** Read on every agent message; only configure, setState and accept write the row, and each forgets this copy. */
  private identity(): Identity | undefined {
    this.identityRow ??= { row: this.sql.exec<Identity>("SELECT * FROM identity").toArray()[0] };
    return this.identityRow.row;
  }

  private presence(): Presence {
    return this.sql.exec<Presence>("SELECT * FROM presence").one();
  }

  private kv(key: string): string | null {
    return this.sql.exec<{ value: string }>("SELECT value FROM kv WHERE key = ?", key).toArray()[0]?.value ?? null;
  }

  private setKv(key: string, value: string): void {
    this.sql.exec("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, value);
  }
}

function errorResponse(status: number, code: string, message: string, details?: unknown): Response {
  return Response.json({ error: details === undefined ? { code, message } : { code, message, details } }, { status });
}
