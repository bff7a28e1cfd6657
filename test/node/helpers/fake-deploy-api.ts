import { createHash } from "node:crypto";
import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { ArtifactInfo } from "../../../protocol/artifacts.ts";
import { ERROR_STATUS, type ErrorCode } from "../../../protocol/errors.ts";
import {
  type AppEvent,
  type AppEventType,
  AppName,
  type AppSummary,
  CreateDeploymentBody,
  type DeploymentRecord,
  newDeploymentId,
  newTaskId,
  type StoredLogLine,
  type TaskRecord,
  type TaskState,
} from "../../../protocol/deployments.ts";
import type { JsonObject } from "../../../protocol/json.ts";
import type { EnvVarRecord } from "../../../cli/src/client.ts";
import { type PerTestServer, perTestWithConfigDir } from "./per-test.ts";
import { readRequest } from "./read-request.ts";

/**
 * A stand-in for the deployments half of the API (apps, deployments, env, events,
 * logs), speaking the routes and shapes of the contract, so the CLI's deployment
 * commands run against real HTTP and real event streams without workerd. Tasks play
 * out on short timers as `taskScript` says.
 */

export const TOKENS = { admin: "zt_fake_admin", operate: "zt_fake_operate", read: "zt_fake_read" } as const;
type Scope = keyof typeof TOKENS;
const RANK: Record<Scope, number> = { read: 0, operate: 1, admin: 2 };

export interface Recorded {
  method: string;
  path: string;
  query: URLSearchParams;
  body: unknown;
}

/** One step of a task's life: after `afterMs`, it reports `state` (with a port when healthy). */
export interface TaskStep {
  afterMs: number;
  state: TaskState;
  message?: string;
}

export type TaskScript = (replica: number) => TaskStep[];

export const HEALTHY_SCRIPT: TaskScript = () => [
  { afterMs: 20, state: "starting" },
  { afterMs: 40, state: "healthy" },
];

/** Starts, crashes, restarts, crashes again: never healthy. */
export const CRASHING_SCRIPT: TaskScript = () => [
  { afterMs: 20, state: "starting" },
  { afterMs: 20, state: "crashed", message: "exited with code 1" },
  { afterMs: 20, state: "starting" },
  { afterMs: 20, state: "crashed", message: "exited with code 1" },
];

interface FakeApp {
  summary: AppSummary;
  deployments: DeploymentRecord[];
  promotedHistory: string[];
  env: Map<string, { value: string; secret: boolean; updatedAt: string }>;
  events: AppEvent[];
  watchers: Set<ServerResponse>;
  logs: StoredLogLine[];
  logWatchers: Set<ServerResponse>;
}

export interface FakeDeployApi {
  readonly url: string;
  readonly requests: Recorded[];
  readonly apps: Map<string, FakeApp>;
  /** Stored artifacts by digest (`HEAD`/`PUT`/`GET /artifacts`), their bytes verified against the digest. */
  readonly artifacts: Map<string, ArtifactInfo>;
  /** How each replica of the next deployments behaves; `null` means the scheduler cannot place them. */
  taskScript: TaskScript | null;
  /** Misbehaves on purpose: env lists carry secret values even without `reveal`. */
  leakSecrets: boolean;
  /** Cuts every open event stream (the client should reconnect with `since`). */
  dropEventStreams(): void;
  /** Adds a stored log line (and sends it to live followers). */
  addLog(app: string, line: Omit<StoredLogLine, "app" | "seq">): void;
  /** Cuts every open log stream. */
  dropLogStreams(): void;
  close(): Promise<void>;
}

const CREATED_AT = "2026-11-23T09:00:00.000Z";
const PROXY = "localhost:47000";
const ORG = "acme";

export async function startFakeDeployApi(): Promise<FakeDeployApi> {
  const apps = new Map<string, FakeApp>();
  const requests: Recorded[] = [];
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const state = { taskScript: HEALTHY_SCRIPT as TaskScript | null, leakSecrets: false };

  const later = (ms: number, fn: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
  };

  const emit = (app: FakeApp, type: AppEventType, deploymentId: string | null, taskId: string | null, data: JsonObject) => {
    const event: AppEvent = { seq: app.events.length + 1, ts: new Date().toISOString(), type, deploymentId, taskId, data };
    app.events.push(event);
    for (const res of app.watchers) res.write(`id: ${event.seq}\ndata: ${JSON.stringify(event)}\n\n`);
  };

  const urls = (app: string, id: string) => ({ previewUrl: `http://${id}.${app}.${ORG}.${PROXY}`, appUrl: `http://${app}.${ORG}.${PROXY}` });

  const refreshStatus = (app: FakeApp, deployment: DeploymentRecord) => {
    const healthy = deployment.tasks.filter((t) => t.state === "healthy").length;
    const next = healthy >= deployment.replicas ? "healthy" : "deploying";
    if (next === deployment.status) return;
    deployment.status = next;
    emit(app, "deployment.status", deployment.id, null, { status: next });
  };

  const promote = (app: FakeApp, deployment: DeploymentRecord) => {
    for (const other of app.deployments) other.promoted = other.id === deployment.id;
    app.summary.promoted = deployment.id;
    app.promotedHistory.push(deployment.id);
    emit(app, "deployment.promoted", deployment.id, null, {});
  };

  const playTasks = (app: FakeApp, deployment: DeploymentRecord, autoPromote: boolean) => {
    const script = state.taskScript;
    if (script === null) {
      later(10, () => emit(app, "placement.failed", deployment.id, null, { message: "no node matches the constraints" }));
      return;
    }
    for (let replica = 0; replica < deployment.replicas; replica++) {
      const task: TaskRecord = {
        taskId: newTaskId(),
        deploymentId: deployment.id,
        nodeId: `web-${replica + 1}`,
        state: "assigned",
        desired: "run",
        hostPort: null,
        restarts: 0,
        message: null,
        updatedAt: new Date().toISOString(),
      };
      deployment.tasks.push(task);
      emit(app, "task.assigned", deployment.id, task.taskId, { nodeId: task.nodeId });
      let at = 0;
      for (const step of script(replica)) {
        at += step.afterMs;
        later(at, () => {
          task.state = step.state;
          task.hostPort = step.state === "healthy" ? 41000 + replica : null;
          task.message = step.message ?? null;
          emit(app, "task.state", deployment.id, task.taskId, {
            state: step.state,
            nodeId: task.nodeId,
            hostPort: task.hostPort,
            ...(step.message ? { message: step.message } : {}),
          });
          refreshStatus(app, deployment);
          if (deployment.status === "healthy" && autoPromote && !deployment.promoted) promote(app, deployment);
        });
      }
    }
  };

  const server = createServer(async (req, res) => {
    const { url, bytes, body } = await readRequest(req);
    const isArtifact = url.pathname.startsWith("/api/v1/artifacts");
    requests.push({ method: req.method ?? "GET", path: url.pathname, query: url.searchParams, body: isArtifact ? undefined : body });
    const token = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? "")?.[1];
    const scope = (Object.keys(TOKENS) as Scope[]).find((key) => TOKENS[key] === token);
    if (!scope) return fail(res, "unauthorized", "invalid or revoked API token");
    if (isArtifact) return artifactRoute(req.method ?? "GET", url, bytes, res);
    route(req.method ?? "GET", url, body, scope, res);
  });

  const artifacts = new Map<string, ArtifactInfo>();
  const artifactRoute = (method: string, url: URL, bytes: Buffer, res: ServerResponse): void => {
    const digest = url.pathname.split("/")[4];
    if (digest === undefined && method === "GET") {
      const layer = url.searchParams.get("layer");
      const lockfile = url.searchParams.get("lockfile");
      const found = [...artifacts.values()].filter((a) => (layer === null || a.layer === layer) && (lockfile === null || a.lockfile === lockfile));
      return send(res, 200, { artifacts: found });
    }
    if (digest !== undefined && method === "HEAD") {
      res.writeHead(artifacts.has(digest) ? 200 : 404);
      return void res.end();
    }
    if (digest !== undefined && method === "PUT") {
      const known = artifacts.get(digest);
      if (known) return send(res, 200, { artifact: known, created: false });
      if (createHash("sha256").update(bytes).digest("hex") !== digest) return fail(res, "bad_request", "the body's sha256 is not the digest");
      const layer = url.searchParams.get("layer") === "deps" ? "deps" : "app";
      const info: ArtifactInfo = { digest, size: bytes.length, layer, lockfile: url.searchParams.get("lockfile"), uploadedAt: new Date().toISOString(), uploadedBy: "operate" };
      artifacts.set(digest, info);
      return send(res, 201, { artifact: info, created: true });
    }
    return fail(res, "not_found", `no route for ${method} ${url.pathname}`);
  };

  const route = (method: string, url: URL, body: unknown, scope: Scope, res: ServerResponse): void => {
    const path = url.pathname.replace(/^\/api\/v1/, "");
    const needs = (wanted: Scope) => RANK[scope] >= RANK[wanted];
    const denied = (wanted: Scope) => fail(res, "forbidden", `this action needs the '${wanted}' scope; the token has '${scope}'`);
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);

    if (path === "/apps" && method === "GET") return send(res, 200, { apps: [...apps.values()].map((a) => a.summary) });
    if (path === "/apps" && method === "POST") {
      if (!needs("operate")) return denied("operate");
      const name = AppName.safeParse((body as { name?: unknown } | undefined)?.name);
      if (!name.success) return fail(res, "invalid_body", "invalid body: name: bad app name");
      if (apps.has(name.data)) return fail(res, "conflict", `app ${name.data} already exists`);
      const summary: AppSummary = { name: name.data, createdAt: CREATED_AT, createdBy: `token:${scope}`, promoted: null, latest: null };
      apps.set(name.data, { summary, deployments: [], promotedHistory: [], env: new Map(), events: [], watchers: new Set(), logs: [], logWatchers: new Set() });
      return send(res, 201, { app: summary });
    }
    if (parts[0] === "deployments" && parts[1] !== undefined) {
      const found = [...apps.values()].flatMap((a) => a.deployments.map((d) => ({ app: a, d }))).find((x) => x.d.id === parts[1]);
      if (!found) return fail(res, "not_found", `deployment ${parts[1]} not found`);
      if (method === "GET" && parts.length === 2) return send(res, 200, { deployment: found.d, ...urls(found.app.summary.name, found.d.id) });
      if (method === "POST" && parts[2] === "promote") {
        if (!needs("operate")) return denied("operate");
        promote(found.app, found.d);
        return send(res, 200, { deployment: found.d, appUrl: urls(found.app.summary.name, found.d.id).appUrl });
      }
    }
    if (parts[0] !== "apps" || parts[1] === undefined) return fail(res, "not_found", `no route for ${method} ${path}`);
    const app = apps.get(parts[1]);
    if (!app) return fail(res, "not_found", `app ${parts[1]} not found`);
    const sub = parts.slice(2).join("/");

    if (method === "GET" && sub === "") return send(res, 200, { app: app.summary, deployments: [...app.deployments].reverse().slice(0, 20) });
    if (sub === "deployments" && method === "GET") return send(res, 200, { deployments: [...app.deployments].reverse() });
    if (sub === "deployments" && method === "POST") {
      if (!needs("operate")) return denied("operate");
      const parsed = CreateDeploymentBody.safeParse(body);
      if (!parsed.success) return fail(res, "invalid_body", `invalid body: ${parsed.error.issues[0]?.message ?? "invalid"}`);
      const { replicas, promote: wantsPromote, ...spec } = parsed.data;
      const deployment: DeploymentRecord = {
        id: newDeploymentId(),
        app: app.summary.name,
        createdAt: new Date().toISOString(),
        createdBy: `token:${scope}`,
        status: "pending",
        promoted: false,
        replicas,
        spec,
        tasks: [],
      };
      app.deployments.push(deployment);
      app.summary.latest = deployment.id;
      emit(app, "deployment.created", deployment.id, null, {});
      playTasks(app, deployment, wantsPromote || app.summary.promoted === null);
      return send(res, 201, { deployment, ...urls(app.summary.name, deployment.id) });
    }
    if (sub === "rollback" && method === "POST") {
      if (!needs("operate")) return denied("operate");
      const previous = app.promotedHistory.at(-2);
      const target = app.deployments.find((d) => d.id === previous);
      if (!target || app.summary.promoted === null) return fail(res, "conflict", `app ${app.summary.name} has no previous promoted deployment`);
      const from = app.summary.promoted;
      promote(app, target);
      return send(res, 200, { deployment: target, from });
    }
    if (sub === "scale" && method === "POST") {
      if (!needs("operate")) return denied("operate");
      const replicas = (body as { replicas?: unknown } | undefined)?.replicas;
      const promoted = app.deployments.find((d) => d.promoted);
      if (typeof replicas !== "number") return fail(res, "invalid_body", "invalid body: replicas");
      if (!promoted) return fail(res, "conflict", `app ${app.summary.name} has no promoted deployment`);
      promoted.replicas = replicas;
      return send(res, 200, { deployment: promoted });
    }
    if (sub === "env" && method === "GET") {
      const reveal = url.searchParams.get("reveal") === "1";
      if (reveal && scope !== "admin") return fail(res, "forbidden", "revealing secrets needs an admin token");
      const env: EnvVarRecord[] = [...app.env.entries()].map(([name, v]) => ({
        name,
        secret: v.secret,
        value: v.secret && !reveal && !state.leakSecrets ? null : v.value,
        updatedAt: v.updatedAt,
        updatedBy: "token:operate",
      }));
      return send(res, 200, { env });
    }
    if (parts[2] === "env" && parts[3] !== undefined) {
      if (!needs("operate")) return denied("operate");
      const name = parts[3];
      if (method === "PUT") {
        const given = body as { value?: unknown; secret?: unknown } | undefined;
        if (typeof given?.value !== "string") return fail(res, "invalid_body", "invalid body: value");
        app.env.set(name, { value: given.value, secret: given.secret === true, updatedAt: "2026-11-23T09:30:00.000Z" });
        return send(res, 200, { name, secret: given.secret === true });
      }
      if (method === "DELETE") {
        if (!app.env.delete(name)) return fail(res, "not_found", `variable ${name} not found`);
        return send(res, 200, { name, removed: true });
      }
    }
    if (sub === "events" && method === "GET") {
      const since = Number(url.searchParams.get("since") ?? "0");
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      res.write(": app events\n\n");
      for (const event of app.events.filter((e) => e.seq > since)) res.write(`id: ${event.seq}\ndata: ${JSON.stringify(event)}\n\n`);
      app.watchers.add(res);
      res.on("close", () => app.watchers.delete(res));
      return;
    }
    if (sub === "logs" && method === "GET") {
      const deployment = url.searchParams.get("deployment");
      const since = url.searchParams.get("since");
      const limit = Number(url.searchParams.get("limit") ?? "200");
      const sinceMs = since === null ? 0 : /^\d+m$/.test(since) ? Date.now() - Number(since.slice(0, -1)) * 60_000 : Date.parse(since);
      const lines = app.logs.filter((l) => (deployment === null || l.deploymentId === deployment) && Date.parse(l.ts) >= sinceMs).slice(-limit);
      if (url.searchParams.get("follow") !== "1") return send(res, 200, { lines });
      res.writeHead(200, { "content-type": "text/event-stream" });
      for (const line of lines) res.write(`id: ${line.seq}\ndata: ${JSON.stringify(line)}\n\n`);
      app.logWatchers.add(res);
      res.on("close", () => app.logWatchers.delete(res));
      return;
    }
    return fail(res, "not_found", `no route for ${method} ${path}`);
  };

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const api: FakeDeployApi = {
    url: `http://127.0.0.1:${port}`,
    requests,
    apps,
    artifacts,
    get taskScript() {
      return state.taskScript;
    },
    set taskScript(script: TaskScript | null) {
      state.taskScript = script;
    },
    get leakSecrets() {
      return state.leakSecrets;
    },
    set leakSecrets(leak: boolean) {
      state.leakSecrets = leak;
    },
    dropEventStreams: () => {
      for (const app of apps.values()) for (const res of app.watchers) res.destroy();
    },
    addLog: (name, line) => {
      const app = apps.get(name);
      if (!app) throw new Error(`no app ${name}`);
      const stored: StoredLogLine = { ...line, app: name, seq: app.logs.length + 1 };
      app.logs.push(stored);
      for (const res of app.logWatchers) res.write(`id: ${stored.seq}\ndata: ${JSON.stringify(stored)}\n\n`);
    },
    dropLogStreams: () => {
      for (const app of apps.values()) for (const res of app.logWatchers) res.destroy();
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        for (const timer of timers) clearTimeout(timer);
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
  return api;
}

function fail(res: ServerResponse, code: ErrorCode, message: string): void {
  send(res, ERROR_STATUS[code], { error: { code, message } });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

/** The deploy-side CLI tests' common setup: a fake deployments API and a config dir per test. */
export function useFakeDeployApi(): PerTestServer<FakeDeployApi> {
  return perTestWithConfigDir(startFakeDeployApi);
}
