import { createHash } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { CreateTokenBody, type TokenRecord } from "../../../protocol/api.ts";
import { ERROR_STATUS, type ErrorBody, type ErrorCode } from "../../../protocol/errors.ts";
import {
  CreateEnrollmentTokenBody,
  DeleteSettingBody,
  EnrollmentAction,
  type EnrollmentState,
  type EnrollmentTokenRecord,
  ENROLLMENT_STATES,
  type Facts,
  type Labels,
  type NodeDetail,
  type NodeSummary,
  PutSettingBody,
  SetLabelsBody,
  type SettingRecord,
  type SettingScope,
} from "../../../protocol/nodes.ts";
import {
  CreateJobBody,
  finalStatus,
  FINAL_STATUSES,
  type JobCounts,
  type JobEvent,
  type JobEventType,
  type JobRecord,
  type JobReturn,
  type JobSummary,
  newJid,
} from "../../../protocol/jobs.ts";
import type { JsonObject } from "../../../protocol/json.ts";
import { buildGrains, resolveTarget, TargetParseError } from "../../../protocol/target.ts";
import { canonicalJson } from "../../../protocol/agent-wire.ts";
import { PushStatesBody, type StateTreeInfo } from "../../../protocol/states.ts";
import { formatToken, mintToken, parseToken, type Scope, scopeAllows } from "../../../protocol/tokens.ts";
import { readRequest } from "./read-request.ts";

/**
 * A stand-in for the API Worker that speaks the same routes, bodies and error
 * shapes, so the CLI can be driven as a real binary without workerd.
 */

export interface RecordedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  body: unknown;
}

export interface CannedReply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

export interface FakeApi {
  readonly url: string;
  readonly org: string;
  readonly version: string;
  readonly adminToken: string;
  readonly readToken: string;
  readonly requests: RecordedRequest[];
  /** Records by id, including revoked ones. */
  readonly records: Map<string, TokenRecord>;
  /** Enrollment token records by id, including revoked ones. */
  readonly enrollmentTokens: Map<string, EnrollmentTokenRecord>;
  /** The org's nodes by id; see FLEET for the ones every fake starts with. */
  readonly nodes: Map<string, FakeNode>;
  /** Every stored setting, of every scope, in insertion order. */
  readonly settings: SettingRecord[];
  /** Jobs by jid, in creation order. */
  readonly jobs: Map<string, FakeJob>;
  /** The org's state tree (`PUT/GET /api/v1/states`), null until one is pushed. */
  stateTree: (StateTreeInfo & { contents: Record<string, string> }) | null;
  /** Decides what each target of a new job does; defaults to `defaultJobBehavior`. */
  jobBehavior: JobBehavior;
  /**
   * The next event stream (of any job) is cut after it has sent `afterEvents` events:
   * `end` closes it cleanly, `destroy` resets the connection.
   */
  dropNextStream(afterEvents: number, how?: "end" | "destroy"): void;
  /** The next request (of any route) gets this answer instead. */
  replyNext(reply: CannedReply): void;
  close(): Promise<void>;
}

interface StoredToken {
  plaintext: string;
  record: TokenRecord;
}

const CREATED_AT = "2026-01-05T10:20:30.000Z";
export const STATES_UPDATED_AT = "2026-01-08T11:12:13.000Z";

export async function startFakeApi(options: { org?: string; version?: string } = {}): Promise<FakeApi> {
  const org = options.org ?? "acme";
  const version = options.version ?? "9.8.7-fake";
  const tokens = new Map<string, StoredToken>();
  const records = new Map<string, TokenRecord>();
  const requests: RecordedRequest[] = [];
  const canned: CannedReply[] = [];
  const fleet = startFleet(org);
  const jobs = startJobs(fleet.nodes);
  let stateTree: FakeApi["stateTree"] = null;

  const addToken = (name: string, scope: Scope, createdBy: string, ttlSeconds?: number): StoredToken => {
    const parts = mintToken(org);
    const record: TokenRecord = {
      id: parts.id,
      name,
      scope,
      createdAt: CREATED_AT,
      createdBy,
      expiresAt: ttlSeconds === undefined ? null : new Date(Date.parse(CREATED_AT) + ttlSeconds * 1000).toISOString(),
      lastUsedAt: null,
      revokedAt: null,
    };
    const stored = { plaintext: formatToken(parts), record };
    tokens.set(parts.id, stored);
    records.set(parts.id, record);
    return stored;
  };
  const admin = addToken("admin", "admin", "operator");
  const reader = addToken("dashboard", "read", `token:${admin.record.id}(admin)`);

  const server = createServer(async (req, res) => {
    const { url, body } = await readRequest(req);
    requests.push({ method: req.method ?? "GET", path: url.pathname, query: url.searchParams, headers: req.headers, body });
    const requestId = req.headers["x-request-id"];
    if (typeof requestId === "string") res.setHeader("X-Request-ID", requestId);

    const reply = canned.shift();
    if (reply) return send(res, reply.status, reply.body, reply.headers);
    route(req.method ?? "GET", url, req.headers.authorization, body, res);
  });

  const route = (method: string, url: URL, authorization: string | undefined, body: unknown, res: ServerResponse): void => {
    const path = url.pathname;
    if (method === "GET" && path === "/healthz") return send(res, 200, { ok: true, component: "api", version });
    if (!path.startsWith("/api/v1/")) return fail(res, "not_found", `no route for ${method} ${path}`);

    const raw = /^Bearer\s+(\S+)$/i.exec(authorization ?? "")?.[1];
    if (!raw) return fail(res, "unauthorized", "missing API token: send 'Authorization: Bearer <token>'");
    const parsed = parseToken(raw);
    const stored = parsed ? tokens.get(parsed.id) : undefined;
    if (!parsed || !stored || stored.plaintext !== raw || stored.record.revokedAt !== null) {
      return fail(res, "unauthorized", "invalid or revoked API token");
    }
    stored.record.lastUsedAt = "2026-01-06T08:00:00.000Z";
    const identity = { org, tokenId: stored.record.id, tokenName: stored.record.name, scope: stored.record.scope };

    if (method === "GET" && path === "/api/v1/whoami") return send(res, 200, { identity });
    if (method === "GET" && path === "/api/v1/org") return send(res, 200, { org: { name: org, createdAt: CREATED_AT, rateLimitPerMinute: 600 } });
    if (path === "/api/v1/tokens" || path.startsWith("/api/v1/tokens/")) {
      if (!scopeAllows(identity.scope, "admin")) {
        return fail(res, "forbidden", `this action needs the 'admin' scope; the token has '${identity.scope}'`);
      }
      const actor = `token:${identity.tokenId}(${identity.tokenName})`;
      if (method === "GET" && path === "/api/v1/tokens") {
        const all = url.searchParams.get("all") === "true";
        return send(res, 200, { tokens: [...records.values()].filter((r) => all || r.revokedAt === null) });
      }
      if (method === "POST" && path === "/api/v1/tokens") {
        const parsedBody = CreateTokenBody.safeParse(body);
        if (!parsedBody.success) return fail(res, "invalid_body", "request body does not match the schema");
        const created = addToken(parsedBody.data.name, parsedBody.data.scope, actor, parsedBody.data.ttlSeconds);
        return send(res, 201, { token: created.plaintext, record: created.record });
      }
      const id = decodeURIComponent(path.slice("/api/v1/tokens/".length));
      if (method === "DELETE" && id !== "") {
        const record = records.get(id);
        if (!record) return fail(res, "not_found", "token not found");
        record.revokedAt ??= "2026-01-07T09:30:00.000Z";
        return send(res, 200, { token: record });
      }
    }
    if (path === "/api/v1/jobs" || path.startsWith("/api/v1/jobs/")) {
      const answer = jobs.route(method, url, body, identity.scope, `token:${identity.tokenId}(${identity.tokenName})`, res);
      if (answer) send(res, answer.status, answer.body);
      return;
    }
    if (path === "/api/v1/states") {
      const info = (tree: NonNullable<FakeApi["stateTree"]>): StateTreeInfo => ({
        version: tree.version,
        files: tree.files,
        bytes: tree.bytes,
        updatedAt: tree.updatedAt,
        updatedBy: tree.updatedBy,
      });
      if (method === "GET") return stateTree ? send(res, 200, info(stateTree)) : fail(res, "not_found", "no state tree has been pushed");
      if (method === "PUT") {
        if (!scopeAllows(identity.scope, "admin")) return fail(res, "forbidden", `this action needs the 'admin' scope; the token has '${identity.scope}'`);
        const parsedBody = PushStatesBody.safeParse(body);
        if (!parsedBody.success) return fail(res, "invalid_body", `invalid body: ${parsedBody.error.issues[0]?.message ?? "invalid"}`);
        const contents = parsedBody.data.files;
        stateTree = {
          version: createHash("sha256").update(canonicalJson(contents)).digest("hex").slice(0, 16),
          files: Object.keys(contents).sort(),
          bytes: Object.values(contents).reduce((n, text) => n + Buffer.byteLength(text), 0),
          updatedAt: STATES_UPDATED_AT,
          updatedBy: `token:${identity.tokenId}(${identity.tokenName})`,
          contents,
        };
        return send(res, 200, info(stateTree));
      }
    }
    if (/^\/api\/v1\/(enrollment-tokens|nodes|settings)(\/|$)/.test(path)) {
      const answer = fleet.route(method, url, body, identity.scope, `token:${identity.tokenId}(${identity.tokenName})`);
      return send(res, answer.status, answer.body);
    }
    return fail(res, "not_found", `no route for ${method} ${path}`);
  };

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    org,
    version,
    adminToken: admin.plaintext,
    readToken: reader.plaintext,
    requests,
    records,
    enrollmentTokens: fleet.enrollmentTokens,
    nodes: fleet.nodes,
    settings: fleet.settings,
    jobs: jobs.jobs,
    get stateTree() {
      return stateTree;
    },
    set stateTree(tree: FakeApi["stateTree"]) {
      stateTree = tree;
    },
    get jobBehavior() {
      return jobs.behavior.current;
    },
    set jobBehavior(behavior: JobBehavior) {
      jobs.behavior.current = behavior;
    },
    dropNextStream: (afterEvents, how = "destroy") => jobs.drops.push({ afterEvents, how }),
    replyNext: (reply) => canned.push(reply),
    close: () =>
      new Promise<void>((resolve, reject) => {
        jobs.stop();
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}

// ---- nodes, enrollment tokens and settings ----

/** A node as the fake stores it: `lastSeen` is kept as an age so relative times are exact whenever a test runs. */
export interface FakeNode {
  id: string;
  state: EnrollmentState;
  online: boolean;
  lastSeenAgoSeconds: number | null;
  labels: Labels;
  facts: Facts | null;
  enrolledAt: string;
  stateReason: string | null;
}

export function fakeFacts(os: string, arch: string, hostname: string, custom: Facts["custom"] = {}): Facts {
  return {
    os,
    osRelease: "12",
    arch,
    kernel: "6.1.0-fake",
    hostname,
    cpuCount: 4,
    cpuModel: "Fake CPU @ 3GHz",
    memoryBytes: 8_589_934_592,
    disk: [{ mount: "/", totalBytes: 100_000_000_000, freeBytes: 40_000_000_000 }],
    ipAddresses: ["10.0.0.7"],
    agentVersion: "0.1.0",
    nodeVersion: "v22.23.3",
    custom,
  };
}

const ENROLLED_AT = "2026-01-05T11:00:00.000Z";
export const SETTING_UPDATED_AT = "2026-01-06T12:00:00.000Z";

/** Every fake starts with this fleet: two states besides approved/active, one node never seen, one of each age unit. */
export const FLEET: readonly FakeNode[] = [
  {
    id: "web-1",
    state: "active",
    online: true,
    lastSeenAgoSeconds: 12,
    labels: { env: "prod", role: "web" },
    facts: fakeFacts("linux", "x64", "web-1.example.com", { rack: "r1", "app.version": "1.2.3" }),
    enrolledAt: ENROLLED_AT,
    stateReason: null,
  },
  { id: "web-2", state: "approved", online: false, lastSeenAgoSeconds: 5 * 60 + 30, labels: { env: "prod" }, facts: fakeFacts("linux", "arm64", "web-2"), enrolledAt: ENROLLED_AT, stateReason: null },
  { id: "db-1", state: "active", online: false, lastSeenAgoSeconds: 3 * 3600 + 100, labels: { env: "staging" }, facts: fakeFacts("linux", "x64", "db-1"), enrolledAt: ENROLLED_AT, stateReason: null },
  { id: "mac-1", state: "active", online: true, lastSeenAgoSeconds: 2 * 86400 + 100, labels: {}, facts: fakeFacts("darwin", "arm64", "mac-1"), enrolledAt: ENROLLED_AT, stateReason: null },
  { id: "new-1", state: "pending", online: false, lastSeenAgoSeconds: null, labels: {}, facts: null, enrolledAt: "2026-01-07T08:00:00.000Z", stateReason: null },
  { id: "new-2", state: "pending", online: false, lastSeenAgoSeconds: null, labels: {}, facts: fakeFacts("linux", "x64", "new-2"), enrolledAt: "2026-01-07T08:05:00.000Z", stateReason: null },
  { id: "bad-1", state: "rejected", online: false, lastSeenAgoSeconds: null, labels: {}, facts: null, enrolledAt: "2026-01-04T09:00:00.000Z", stateReason: "unknown host" },
];

interface Answer {
  status: number;
  body: unknown;
}

function problem(code: ErrorCode, message: string): Answer {
  const body: ErrorBody = { error: { code, message } };
  return { status: ERROR_STATUS[code], body };
}

function scopeKey(scope: SettingScope): string {
  return scope.kind === "org" ? "org" : scope.kind === "label" ? `label:${scope.key}=${scope.value}` : `node:${scope.nodeId}`;
}

/** The routes of protocol/nodes.ts, kept in memory. */
function startFleet(org: string) {
  const enrollmentTokens = new Map<string, EnrollmentTokenRecord>();
  const nodes = new Map<string, FakeNode>(FLEET.map((node) => [node.id, structuredClone(node)]));
  const settings: SettingRecord[] = [];

  const summary = (node: FakeNode): NodeSummary => ({
    id: node.id,
    state: node.state,
    online: node.online,
    lastSeen: node.lastSeenAgoSeconds === null ? null : new Date(Date.now() - node.lastSeenAgoSeconds * 1000).toISOString(),
    labels: node.labels,
    os: node.facts?.os ?? null,
    arch: node.facts?.arch ?? null,
    hostname: node.facts?.hostname ?? null,
    agentVersion: node.facts?.agentVersion ?? null,
    enrolledAt: node.enrolledAt,
    stateReason: node.stateReason,
    directAddress: null,
  });

  /** Org, then matching labels, then the node's own: the later scope wins. */
  const effective = (node: FakeNode): { settings: NodeDetail["settings"]; sources: Record<string, string> } => {
    const merged: { settings: NodeDetail["settings"]; sources: Record<string, string> } = { settings: {}, sources: {} };
    const rank = (scope: SettingScope) => (scope.kind === "org" ? 0 : scope.kind === "label" ? 1 : 2);
    const applies = (scope: SettingScope) =>
      scope.kind === "org" || (scope.kind === "label" ? node.labels[scope.key] === scope.value : scope.nodeId === node.id);
    for (const setting of [...settings].filter((one) => applies(one.scope)).sort((a, b) => rank(a.scope) - rank(b.scope))) {
      merged.settings[setting.key] = setting.value;
      merged.sources[setting.key] = setting.scope.kind === "node" ? "node" : scopeKey(setting.scope);
    }
    return merged;
  };

  const detail = (node: FakeNode): NodeDetail => ({ ...summary(node), facts: node.facts, settings: effective(node).settings, connectedAt: node.online ? ENROLLED_AT : null });

  const transition = (node: FakeNode, action: string, reason: string | undefined): Answer => {
    const allowed: Record<string, { from: readonly EnrollmentState[]; to: EnrollmentState }> = {
      approve: { from: ["pending"], to: "approved" },
      reject: { from: ["pending"], to: "rejected" },
      revoke: { from: ["approved", "active"], to: "revoked" },
    };
    const rule = allowed[action];
    if (!rule) return problem("not_found", `no route for POST /api/v1/nodes/${node.id}/${action}`);
    if (!rule.from.includes(node.state)) return problem("conflict", `node '${node.id}' is ${node.state} and cannot be ${rule.to}`);
    node.state = rule.to;
    node.stateReason = reason ?? null;
    if (rule.to === "revoked") node.online = false;
    return { status: 200, body: { node: summary(node) } };
  };

  const route = (method: string, url: URL, body: unknown, scope: Scope, actor: string): Answer => {
    const path = url.pathname;
    const needs = (needed: Scope): Answer | undefined =>
      scopeAllows(scope, needed) ? undefined : problem("forbidden", `this action needs the '${needed}' scope; the token has '${scope}'`);
    const invalid = (error: { issues: readonly { path: readonly PropertyKey[]; message: string }[] }): Answer => {
      const issue = error.issues[0];
      return problem("invalid_body", `invalid request body: ${issue?.path.map(String).join(".") ?? ""}: ${issue?.message ?? "invalid"}`);
    };

    if (path === "/api/v1/enrollment-tokens" || path.startsWith("/api/v1/enrollment-tokens/")) {
      const denied = needs("admin");
      if (denied) return denied;
      if (method === "GET" && path === "/api/v1/enrollment-tokens") {
        const all = url.searchParams.get("all") === "true";
        return { status: 200, body: { tokens: [...enrollmentTokens.values()].filter((t) => all || t.revokedAt === null) } };
      }
      if (method === "POST" && path === "/api/v1/enrollment-tokens") {
        const parsed = CreateEnrollmentTokenBody.safeParse(body);
        if (!parsed.success) return invalid(parsed.error);
        const parts = mintToken(org);
        const record: EnrollmentTokenRecord = {
          id: parts.id,
          uses: parsed.data.uses,
          usesLeft: parsed.data.uses,
          autoApprove: parsed.data.autoApprove,
          labels: parsed.data.labels,
          createdAt: CREATED_AT,
          createdBy: actor,
          expiresAt: new Date(Date.parse(CREATED_AT) + parsed.data.ttlSeconds * 1000).toISOString(),
          revokedAt: null,
        };
        enrollmentTokens.set(record.id, record);
        return { status: 201, body: { token: `zet_${parts.org}_${parts.id}_${parts.secret}`, record } };
      }
      const id = decodeURIComponent(path.slice("/api/v1/enrollment-tokens/".length));
      if (method === "DELETE" && id !== "") {
        const record = enrollmentTokens.get(id);
        if (!record) return problem("not_found", "enrollment token not found");
        record.revokedAt ??= "2026-01-07T09:30:00.000Z";
        return { status: 200, body: { token: record } };
      }
      return problem("not_found", `no route for ${method} ${path}`);
    }

    if (path === "/api/v1/nodes" && method === "GET") {
      const stateParam = url.searchParams.get("state");
      const states: readonly string[] = stateParam === null ? ["approved", "active"] : stateParam === "all" ? ENROLLMENT_STATES : stateParam.split(",");
      const bad = states.find((one) => !(ENROLLMENT_STATES as readonly string[]).includes(one));
      if (bad !== undefined) return problem("bad_request", `unknown state '${bad}'`);
      const target = url.searchParams.get("target");
      const label = target === null ? undefined : /^([^=]+)=([^=]*)$/.exec(target);
      if (target !== null && !label) return problem("bad_request", `the fake only understands KEY=VALUE targets, not '${target}'`);
      const selected = [...nodes.values()].filter((node) => states.includes(node.state) && (!label || node.labels[label[1] as string] === label[2]));
      return { status: 200, body: { nodes: selected.map(summary) } };
    }
    if (path === "/api/v1/nodes/approve-pending" && method === "POST") {
      const denied = needs("admin");
      if (denied) return denied;
      const approved = [...nodes.values()].filter((node) => node.state === "pending");
      for (const node of approved) node.state = "approved";
      return { status: 200, body: { nodes: approved.map(summary) } };
    }
    const nodeMatch = /^\/api\/v1\/nodes\/([^/]+)(?:\/([a-z]+))?$/.exec(path);
    if (nodeMatch) {
      const id = decodeURIComponent(nodeMatch[1] as string);
      const sub = nodeMatch[2];
      const node = nodes.get(id);
      if (!node) return problem("not_found", `node '${id}' not found`);
      if (method === "GET" && sub === undefined) return { status: 200, body: { node: detail(node) } };
      if (method === "GET" && sub === "settings") return { status: 200, body: effective(node) };
      if (method === "PATCH" && sub === "labels") {
        const denied = needs("operate");
        if (denied) return denied;
        const parsed = SetLabelsBody.safeParse(body);
        if (!parsed.success) return invalid(parsed.error);
        for (const [key, value] of Object.entries(parsed.data.labels)) {
          if (value === null) delete node.labels[key];
          else node.labels[key] = value;
        }
        return { status: 200, body: { node: summary(node) } };
      }
      if (method === "POST" && sub !== undefined) {
        const denied = needs("admin");
        if (denied) return denied;
        const parsed = EnrollmentAction.safeParse(body);
        if (!parsed.success) return invalid(parsed.error);
        return transition(node, sub, parsed.data.reason);
      }
      return problem("not_found", `no route for ${method} ${path}`);
    }

    if (path === "/api/v1/settings") {
      if (method === "GET") {
        const scopeParam = url.searchParams.get("scope");
        return { status: 200, body: { settings: settings.filter((one) => scopeParam === null || scopeKey(one.scope) === scopeParam) } };
      }
      const denied = needs("admin");
      if (denied) return denied;
      if (method === "PUT") {
        const parsed = PutSettingBody.safeParse(body);
        if (!parsed.success) return invalid(parsed.error);
        const { scope: where, key, value } = parsed.data;
        const record: SettingRecord = { scope: where, key, value, updatedAt: SETTING_UPDATED_AT, updatedBy: actor };
        const index = settings.findIndex((one) => one.key === key && scopeKey(one.scope) === scopeKey(where));
        if (index >= 0) settings[index] = record;
        else settings.push(record);
        return { status: 200, body: { setting: record } };
      }
      if (method === "DELETE") {
        const parsed = DeleteSettingBody.safeParse(body);
        if (!parsed.success) return invalid(parsed.error);
        const index = settings.findIndex((one) => one.key === parsed.data.key && scopeKey(one.scope) === scopeKey(parsed.data.scope));
        if (index < 0) return problem("not_found", `setting '${parsed.data.key}' is not set at scope ${scopeKey(parsed.data.scope)}`);
        const [deleted] = settings.splice(index, 1);
        return { status: 200, body: { deleted } };
      }
    }
    return problem("not_found", `no route for ${method} ${path}`);
  };

  return { enrollmentTokens, nodes, settings, route };
}

// ---- jobs ----

/** What one target of a fake job does, `delayMs` after dispatch. `silent` never answers (the deadline decides). */
export type FakeOutcome =
  | { kind: "return"; delayMs: number; return: Pick<JobReturn, "success" | "retcode" | "result" | "error"> }
  | { kind: "unreachable"; delayMs: number }
  | { kind: "silent" };

export type JobBehavior = (node: FakeNode, fn: string, args: JsonObject) => FakeOutcome;

/** Arrival order for `*` (web-1, web-2, db-1, mac-1 in fleet order): web-2, mac-1, db-1, web-1. */
export const FAKE_DELAYS_MS: Readonly<Record<string, number>> = { "web-2": 30, "mac-1": 80, "db-1": 130, "web-1": 180 };

/**
 * Offline nodes are unreachable; online ones answer: test.ping → true; test.echo → its
 * positional words joined; test.sleep → true after `length` seconds; cmd.run → stdout
 * `ran: CMD`, or (when CMD contains "fail") output on both streams and retcode 2;
 * anything else fails as not available.
 */
export const defaultJobBehavior: JobBehavior = (node, fn, args) => {
  const delayMs = FAKE_DELAYS_MS[node.id] ?? 50;
  if (!node.online) return { kind: "unreachable", delayMs };
  const ok = (result: JobReturn["result"]): FakeOutcome => ({ kind: "return", delayMs, return: { success: true, retcode: 0, result, error: null } });
  switch (fn) {
    case "test.ping":
      return ok(true);
    case "test.echo":
      return ok(Array.isArray(args["_"]) ? args["_"].join(" ") : "");
    case "test.sleep": {
      const seconds = typeof args["length"] === "number" ? args["length"] : 1;
      return { kind: "return", delayMs: seconds * 1000, return: { success: true, retcode: 0, result: true, error: null } };
    }
    case "cmd.run": {
      const cmd = typeof args["cmd"] === "string" ? args["cmd"] : "";
      if (cmd.includes("fail")) {
        return { kind: "return", delayMs, return: { success: false, retcode: 2, result: { stdout: `partial output of ${cmd}\n`, stderr: "it failed\nbadly\n" }, error: null } };
      }
      return ok({ stdout: `ran: ${cmd}\n`, stderr: "" });
    }
    default:
      return { kind: "return", delayMs, return: { success: false, retcode: null, result: null, error: `'${fn}' is not available on ${node.id}` } };
  }
};

export interface FakeJob {
  readonly record: JobRecord;
  readonly events: JobEvent[];
  /** Open event streams, each with how many more events it may send before a planned drop. */
  readonly watchers: Map<ServerResponse, { left: number; how: "end" | "destroy" } | null>;
  readonly timers: NodeJS.Timeout[];
}

function summarize(record: JobRecord): JobSummary {
  const { jid, function: fn, target, status, user, createdAt, updatedAt, counts } = record;
  return { jid, function: fn, target, status, user, createdAt, updatedAt, counts: { ...counts } };
}

/** The job routes: jobs resolve targets with the real target grammar over the fleet, and play out on timers. */
function startJobs(nodes: Map<string, FakeNode>) {
  const jobs = new Map<string, FakeJob>();
  const behavior = { current: defaultJobBehavior };
  const drops: { afterEvents: number; how: "end" | "destroy" }[] = [];
  let stopped = false;

  const write = (job: FakeJob, res: ServerResponse, event: JobEvent): void => {
    const chunk = `data: ${JSON.stringify(event)}\n\n`;
    const drop = job.watchers.get(res);
    if (!drop || --drop.left > 0) {
      res.write(chunk);
      return;
    }
    job.watchers.delete(res);
    // Cut only once the events are on the wire: a reset that loses them would test nothing.
    if (drop.how === "end") res.end(chunk);
    else res.write(chunk, () => res.destroy());
  };

  const append = (job: FakeJob, type: JobEventType, nodeId: string | null, data: JsonObject): void => {
    const now = new Date().toISOString();
    const event: JobEvent = { seq: job.events.length + 1, ts: now, type, nodeId, data };
    job.events.push(event);
    job.record.updatedAt = now;
    for (const res of [...job.watchers.keys()]) write(job, res, event);
    if (type === "job.finished") {
      for (const res of job.watchers.keys()) res.end();
      job.watchers.clear();
    }
  };

  const finish = (job: FakeJob, reason: "all_returned" | "deadline" | "canceled"): void => {
    for (const timer of job.timers) clearTimeout(timer);
    const status = finalStatus(reason, job.record.counts);
    job.record.status = status;
    job.record.finishedAt = new Date().toISOString();
    const counts: JobCounts = { ...job.record.counts };
    append(job, "job.finished", null, { status, counts: { ...counts } });
  };

  const store = (job: FakeJob, nodeId: string, ret: JobReturn): void => {
    const target = job.record.targets.find((one) => one.nodeId === nodeId);
    if (!target || FINAL_STATUSES.includes(job.record.status)) return;
    const counts = job.record.counts;
    counts.returned++;
    if (ret.synthetic) counts.unreachable++;
    else if (ret.success) counts.succeeded++;
    else counts.failed++;
    target.state = "returned";
    target.returnedAt = new Date().toISOString();
    target.return = ret;
    append(job, ret.synthetic ? "target.unreachable" : "target.returned", nodeId, { return: { ...ret } });
    if (counts.returned === counts.targets) finish(job, "all_returned");
  };

  const create = (body: unknown, actor: string): Answer => {
    const parsed = CreateJobBody.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      return problem("invalid_body", `invalid request body: ${issue?.path.map(String).join(".") ?? ""}: ${issue?.message ?? "invalid"}`);
    }
    const spec = parsed.data;
    const eligible = [...nodes.values()].filter((node) => node.state === "approved" || node.state === "active");
    let ids: string[];
    if (spec.target !== undefined) {
      try {
        ids = resolveTarget(spec.target, eligible.map((node) => ({ id: node.id, grains: buildGrains(node.facts, node.labels) })));
      } catch (error) {
        if (!(error instanceof TargetParseError)) throw error;
        return { status: 400, body: { error: { code: "bad_request", message: `bad target expression: ${error.message}`, details: { position: String(error.position) } } } };
      }
    } else {
      const wanted = new Set(spec.targets);
      ids = eligible.filter((node) => wanted.has(node.id)).map((node) => node.id);
    }
    if (ids.length === 0) return problem("bad_request", "no nodes matched target");

    const now = new Date().toISOString();
    const jid = newJid();
    const record: JobRecord = {
      jid,
      function: spec.function,
      target: spec.target ?? `L@${(spec.targets ?? []).join(",")}`,
      status: "running",
      user: actor,
      createdAt: now,
      updatedAt: now,
      counts: { targets: ids.length, returned: 0, succeeded: 0, failed: 0, unreachable: 0 },
      args: spec.args,
      timeout: spec.timeout,
      test: spec.test,
      metadata: spec.metadata,
      finishedAt: null,
      targets: ids.map((nodeId) => ({
        nodeId,
        state: "dispatched",
        onlineAtDispatch: nodes.get(nodeId)?.online === true,
        dispatchedAt: now,
        ackedAt: null,
        resent: false,
        returnedAt: null,
        return: null,
      })),
    };
    const job: FakeJob = { record, events: [], watchers: new Map(), timers: [] };
    jobs.set(jid, job);
    append(job, "job.created", null, { function: spec.function, target: record.target, targets: ids });
    for (const nodeId of ids) {
      append(job, "target.dispatched", nodeId, {});
      const node = nodes.get(nodeId) as FakeNode;
      const outcome = behavior.current(node, spec.function, spec.args);
      if (outcome.kind === "silent") continue;
      job.timers.push(
        setTimeout(() => {
          const startedAt = new Date(Date.now() - Math.min(outcome.delayMs, 5)).toISOString();
          const ret: JobReturn =
            outcome.kind === "unreachable"
              ? { success: false, retcode: null, result: null, error: "node did not answer", durationMs: 0, startedAt: null, synthetic: true }
              : { ...outcome.return, durationMs: outcome.delayMs, startedAt, synthetic: false };
          store(job, nodeId, ret);
        }, outcome.delayMs),
      );
    }
    job.timers.push(setTimeout(() => finish(job, "deadline"), spec.timeout * 1000));
    return { status: 202, body: { jid, targets: ids, status: record.status } };
  };

  const stream = (job: FakeJob, url: URL, res: ServerResponse): Answer | undefined => {
    const sinceText = url.searchParams.get("since");
    if (sinceText !== null && !/^\d+$/.test(sinceText)) return problem("bad_request", `since must be a whole number, not '${sinceText}'`);
    const since = sinceText === null ? 0 : Number(sinceText);
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    // A comment first, as servers send to open the stream through proxies; clients must skip it.
    res.write(`: events of job ${job.record.jid} after ${since}\n\n`);
    const drop = drops.shift();
    job.watchers.set(res, drop ? { ...drop, left: drop.afterEvents } : null);
    res.on("close", () => job.watchers.delete(res));
    for (const event of job.events.filter((one) => one.seq > since)) {
      if (!job.watchers.has(res)) return undefined;
      write(job, res, event);
    }
    if (FINAL_STATUSES.includes(job.record.status) && job.watchers.has(res)) {
      job.watchers.delete(res);
      res.end();
    }
    return undefined;
  };

  const route = (method: string, url: URL, body: unknown, scope: Scope, actor: string, res: ServerResponse): Answer | undefined => {
    const path = url.pathname;
    const needs = (needed: Scope): Answer | undefined =>
      scopeAllows(scope, needed) ? undefined : problem("forbidden", `this action needs the '${needed}' scope; the token has '${scope}'`);
    if (path === "/api/v1/jobs" && method === "POST") return needs("operate") ?? create(body, actor);
    if (path === "/api/v1/jobs" && method === "GET") {
      const limitText = url.searchParams.get("limit");
      if (limitText !== null && !/^[1-9]\d*$/.test(limitText)) return problem("bad_request", `limit must be a positive whole number, not '${limitText}'`);
      const newest = [...jobs.values()].reverse().map((job) => summarize(job.record));
      return { status: 200, body: { jobs: newest.slice(0, limitText === null ? 50 : Number(limitText)) } };
    }
    if (path === "/api/v1/jobs/active" && method === "GET") {
      const running = [...jobs.values()].reverse().filter((job) => !FINAL_STATUSES.includes(job.record.status));
      return { status: 200, body: { jobs: running.map((job) => summarize(job.record)) } };
    }
    const match = /^\/api\/v1\/jobs\/([^/]+)(?:\/([a-z]+))?$/.exec(path);
    if (!match) return problem("not_found", `no route for ${method} ${path}`);
    const jid = decodeURIComponent(match[1] as string);
    const job = jobs.get(jid);
    if (!job) return problem("not_found", `job '${jid}' not found`);
    const sub = match[2];
    if (method === "GET" && sub === undefined) return { status: 200, body: { job: structuredClone(job.record) } };
    if (method === "GET" && sub === "events") return stream(job, url, res);
    if (method === "POST" && sub === "cancel") {
      const denied = needs("operate");
      if (denied) return denied;
      if (FINAL_STATUSES.includes(job.record.status)) return problem("conflict", `job ${jid} already finished (${job.record.status})`);
      append(job, "job.cancel_requested", null, {});
      finish(job, "canceled");
      return { status: 202, body: { jid, status: job.record.status } };
    }
    return problem("not_found", `no route for ${method} ${path}`);
  };

  return {
    jobs,
    behavior,
    drops,
    route,
    stop: () => {
      if (stopped) return;
      stopped = true;
      for (const job of jobs.values()) for (const timer of job.timers) clearTimeout(timer);
    },
  };
}

function fail(res: ServerResponse, code: ErrorCode, message: string): void {
  const body: ErrorBody = { error: { code, message } };
  send(res, ERROR_STATUS[code], body);
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  res.writeHead(status, { "content-type": typeof body === "string" ? "text/plain" : "application/json", ...headers });
  res.end(text);
}

/** A URL on which nothing listens: the port of a server that was just closed. */
export async function unusedUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}
