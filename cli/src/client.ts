import type { CreatedToken, CreateTokenBody, Health, Identity, OrgInfo, TokenRecord } from "../../protocol/api.ts";
import { isErrorBody } from "../../protocol/errors.ts";
import type { CreateJobResponse, JobRecord, JobStatus, JobSummary } from "../../protocol/jobs.ts";
import type { JsonObject } from "../../protocol/json.ts";
import type {
  CreateEnrollmentTokenBody,
  DeleteSettingBody,
  EnrollmentAction,
  EnrollmentTokenRecord,
  NodeDetail,
  NodeSummary,
  PutSettingBody,
  SetLabelsBody,
  SettingRecord,
} from "../../protocol/nodes.ts";
import type { PushStatesBody, StateTreeInfo } from "../../protocol/states.ts";
import type { SetDirectBody } from "../../protocol/direct.ts";
import type { AppSummary, CreateDeploymentBody, DeploymentRecord, StoredLogLine } from "../../protocol/deployments.ts";
import type { z } from "zod";
import { networkReason, oneLine } from "../../lib/network-errors.ts";
import { CliError } from "./errors.ts";

/** An error answer from the API, carrying the server's code and message. */
export class ApiError extends CliError {
  override readonly name: string = "ApiError";
  readonly status: number;
  /** One of protocol/errors.ts's codes, or `http_<status>` when the body was not an API error. */
  readonly code: string;
  readonly details: unknown;
  readonly retryAfterSeconds: number | undefined;
  readonly requestId: string;

  constructor(init: { status: number; code: string; message: string; details: unknown; retryAfterSeconds: number | undefined; requestId: string }) {
    super(init.message);
    this.status = init.status;
    this.code = init.code;
    this.details = init.details;
    this.retryAfterSeconds = init.retryAfterSeconds;
    this.requestId = init.requestId;
  }

  /** The one line `main` prints: the server's words, its code, and what to do next. */
  describe(): string {
    let line = `${oneLine(this.message)} (${this.code})`;
    if (this.retryAfterSeconds !== undefined) line += `; retry after ${this.retryAfterSeconds}s`;
    // The server's own message for these asks the reader to find this id in its log.
    if (this.status >= 500) line += ` [request id ${this.requestId}]`;
    return line;
  }
}

/** The server could not be reached, or did not answer in time: worth trying again later. */
export class UnreachableError extends CliError {
  override readonly name: string = "UnreachableError";
}

export interface ClientOptions {
  readonly url: string;
  readonly token?: string;
  readonly fetch?: typeof fetch;
  readonly timeoutMs?: number;
  readonly userAgent?: string;
}

const DEFAULT_TIMEOUT_MS = 30_000;

export class ApiClient {
  readonly url: string;
  readonly #token: string | undefined;
  readonly #fetch: typeof fetch;
  readonly #timeoutMs: number;
  readonly #userAgent: string;

  constructor(options: ClientOptions) {
    this.url = options.url.replace(/\/+$/, "");
    this.#token = options.token;
    this.#fetch = options.fetch ?? fetch;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#userAgent = options.userAgent ?? "zectre-cli";
  }

  health(): Promise<Health> {
    return this.request<Health>("GET", "/healthz", { auth: false });
  }

  whoami(): Promise<{ identity: Identity }> {
    return this.request("GET", "/api/v1/whoami");
  }

  org(): Promise<{ org: OrgInfo }> {
    return this.request("GET", "/api/v1/org");
  }

  listTokens(all: boolean): Promise<{ tokens: TokenRecord[] }> {
    return this.request("GET", all ? "/api/v1/tokens?all=true" : "/api/v1/tokens");
  }

  createToken(body: CreateTokenBody): Promise<CreatedToken> {
    return this.request("POST", "/api/v1/tokens", { body });
  }

  revokeToken(id: string): Promise<{ token: TokenRecord }> {
    return this.request("DELETE", `/api/v1/tokens/${encodeURIComponent(id)}`);
  }

  // ---- enrollment tokens ----

  /** The body holds only what the user chose; the server fills in the defaults. */
  createEnrollmentToken(body: Partial<CreateEnrollmentTokenBody>): Promise<CreatedEnrollmentToken> {
    return this.request("POST", "/api/v1/enrollment-tokens", { body });
  }

  listEnrollmentTokens(all: boolean): Promise<{ tokens: EnrollmentTokenRecord[] }> {
    return this.request("GET", all ? "/api/v1/enrollment-tokens?all=true" : "/api/v1/enrollment-tokens");
  }

  revokeEnrollmentToken(id: string): Promise<{ token: EnrollmentTokenRecord }> {
    return this.request("DELETE", `/api/v1/enrollment-tokens/${encodeURIComponent(id)}`);
  }

  // ---- nodes ----

  /** `state` is a comma-separated list of states or `all`; without it the server lists approved and active nodes. */
  listNodes(filter: { state?: string | undefined; target?: string | undefined } = {}): Promise<{ nodes: NodeSummary[] }> {
    const query = new URLSearchParams();
    if (filter.state !== undefined) query.set("state", filter.state);
    if (filter.target !== undefined) query.set("target", filter.target);
    const search = query.toString();
    return this.request("GET", `/api/v1/nodes${search === "" ? "" : `?${search}`}`);
  }

  getNode(id: string): Promise<{ node: NodeDetail }> {
    return this.request("GET", nodePath(id));
  }

  nodeSettings(id: string): Promise<EffectiveSettings> {
    return this.request("GET", `${nodePath(id)}/settings`);
  }

  /** approve, reject or revoke one node; the body is always sent (possibly `{}`), as the routes read JSON. */
  nodeAction(id: string, action: "approve" | "reject" | "revoke", body: EnrollmentAction = {}): Promise<{ node: NodeSummary }> {
    return this.request("POST", `${nodePath(id)}/${action}`, { body });
  }

  approvePending(): Promise<{ nodes: NodeSummary[] }> {
    return this.request("POST", "/api/v1/nodes/approve-pending", { body: {} });
  }

  setNodeLabels(id: string, body: SetLabelsBody): Promise<{ node: NodeSummary }> {
    return this.request("PATCH", `${nodePath(id)}/labels`, { body });
  }

  /** An address marks the node direct; null sends the proxy through its tunnel again. */
  setNodeDirect(id: string, body: SetDirectBody): Promise<{ node: NodeSummary }> {
    return this.request("PUT", `${nodePath(id)}/direct`, { body });
  }

  // ---- settings ----

  /** `scope` in the query form `org`, `label:KEY=VALUE` or `node:ID`; without it, every scope. */
  listSettings(scope?: string): Promise<{ settings: SettingRecord[] }> {
    return this.request("GET", scope === undefined ? "/api/v1/settings" : `/api/v1/settings?${new URLSearchParams({ scope })}`);
  }

  putSetting(body: PutSettingBody): Promise<{ setting: SettingRecord }> {
    return this.request("PUT", "/api/v1/settings", { body });
  }

  deleteSetting(body: DeleteSettingBody): Promise<{ deleted: SettingRecord }> {
    return this.request("DELETE", "/api/v1/settings", { body });
  }

  // ---- state tree ----

  /** Replaces the org's state tree; the server sends it to every agent through its outbox. */
  pushStates(body: PushStatesBody): Promise<StateTreeInfo> {
    return this.request("PUT", "/api/v1/states", { body });
  }

  getStates(): Promise<StateTreeInfo> {
    return this.request("GET", "/api/v1/states");
  }

  // ---- jobs ----

  /** The body holds only what the user chose (`target` or `targets`, function, args); the server fills in the defaults. */
  createJob(body: CreateJobRequest): Promise<CreateJobResponse> {
    return this.request("POST", "/api/v1/jobs", { body });
  }

  /** Newest first; without a limit the server picks how many. */
  listJobs(limit?: number): Promise<{ jobs: JobSummary[] }> {
    return this.request("GET", limit === undefined ? "/api/v1/jobs" : `/api/v1/jobs?${new URLSearchParams({ limit: String(limit) })}`);
  }

  activeJobs(): Promise<{ jobs: JobSummary[] }> {
    return this.request("GET", "/api/v1/jobs/active");
  }

  getJob(jid: string): Promise<{ job: JobRecord }> {
    return this.request("GET", jobPath(jid));
  }

  cancelJob(jid: string): Promise<{ jid: string; status: JobStatus }> {
    return this.request("POST", `${jobPath(jid)}/cancel`, { body: {} });
  }

  /**
   * Opens a job's event stream (Server-Sent Events): the log after `since`, then live
   * events until the server closes it after `job.finished`. Only connecting is timed;
   * the stream itself lasts as long as the job. `signal` ends it early.
   */
  jobEvents(jid: string, since: number | undefined, signal?: AbortSignal): Promise<ReadableStream<Uint8Array>> {
    const query = since === undefined ? "" : `?${new URLSearchParams({ since: String(since) })}`;
    return this.openStream(`${jobPath(jid)}/events${query}`, signal);
  }

  // ---- apps and deployments ----

  createApp(name: string): Promise<{ app: AppSummary }> {
    return this.request("POST", "/api/v1/apps", { body: { name } });
  }

  listApps(): Promise<{ apps: AppSummary[] }> {
    return this.request("GET", "/api/v1/apps");
  }

  /** The app and its newest deployments (up to 20, newest first). */
  getApp(name: string): Promise<{ app: AppSummary; deployments: DeploymentRecord[] }> {
    return this.request("GET", appPath(name));
  }

  /** The body holds only what the user chose (artifacts and command always); the server fills in the defaults. */
  createDeployment(app: string, body: CreateDeploymentRequest): Promise<DeploymentWithUrls> {
    return this.request("POST", `${appPath(app)}/deployments`, { body });
  }

  listDeployments(app: string): Promise<{ deployments: DeploymentRecord[] }> {
    return this.request("GET", `${appPath(app)}/deployments`);
  }

  getDeployment(id: string): Promise<DeploymentWithUrls> {
    return this.request("GET", deploymentPath(id));
  }

  promoteDeployment(id: string): Promise<{ deployment: DeploymentRecord; appUrl: string }> {
    return this.request("POST", `${deploymentPath(id)}/promote`, { body: {} });
  }

  /** Promotes the app's previously promoted deployment again; 409 when there is none. */
  rollbackApp(app: string): Promise<{ deployment: DeploymentRecord; from: string }> {
    return this.request("POST", `${appPath(app)}/rollback`, { body: {} });
  }

  /** Changes the replicas of the app's promoted deployment. */
  scaleApp(app: string, replicas: number): Promise<{ deployment: DeploymentRecord }> {
    return this.request("POST", `${appPath(app)}/scale`, { body: { replicas } });
  }

  /** Secret values are null unless `reveal` (which needs the admin scope). */
  listEnv(app: string, reveal: boolean): Promise<{ env: EnvVarRecord[] }> {
    return this.request("GET", `${appPath(app)}/env${reveal ? "?reveal=1" : ""}`);
  }

  setEnv(app: string, name: string, value: string, secret: boolean): Promise<{ name: string; secret: boolean }> {
    return this.request("PUT", `${appPath(app)}/env/${encodeURIComponent(name)}`, { body: { value, secret } });
  }

  unsetEnv(app: string, name: string): Promise<{ name: string; removed: true }> {
    return this.request("DELETE", `${appPath(app)}/env/${encodeURIComponent(name)}`);
  }

  /** The app's event stream (deployments and tasks) after `since`; it stays open until `signal` ends it. */
  appEvents(app: string, since: number | undefined, signal?: AbortSignal): Promise<ReadableStream<Uint8Array>> {
    const query = since === undefined ? "" : `?${new URLSearchParams({ since: String(since) })}`;
    return this.openStream(`${appPath(app)}/events${query}`, signal);
  }

  /** Stored output lines of the app's tasks, oldest first. */
  appLogs(app: string, query: LogQuery): Promise<{ lines: StoredLogLine[] }> {
    return this.request("GET", `${appPath(app)}/logs${logSearch(query, false)}`);
  }

  /** The same lines as an event stream that stays open and carries new lines as they arrive. */
  followAppLogs(app: string, query: LogQuery, signal?: AbortSignal): Promise<ReadableStream<Uint8Array>> {
    return this.openStream(`${appPath(app)}/logs${logSearch(query, true)}`, signal);
  }

  /** A GET whose successful answer is a `text/event-stream`; errors are read and thrown as for `request`. */
  async openStream(path: string, signal?: AbortSignal): Promise<ReadableStream<Uint8Array>> {
    const requestId = crypto.randomUUID();
    const headers: Record<string, string> = { accept: "text/event-stream", "user-agent": this.#userAgent, "x-request-id": requestId };
    if (this.#token !== undefined) headers.authorization = `Bearer ${this.#token}`;
    const connect = new AbortController();
    const timer = setTimeout(() => connect.abort(new DOMException("connect timeout", "TimeoutError")), this.#timeoutMs);
    const combined = signal === undefined ? connect.signal : AbortSignal.any([connect.signal, signal]);
    const target = `${this.url}${path}`;

    let response: Response;
    try {
      response = await this.#fetch(target, { method: "GET", headers, signal: combined });
    } catch (error) {
      if (signal?.aborted) throw error;
      throw new UnreachableError(`could not reach ${this.url}: ${networkReason(connect.signal.aborted ? connect.signal.reason : error, this.#timeoutMs)}`);
    } finally {
      clearTimeout(timer);
    }
    if (!response.ok) {
      let text = "";
      try {
        text = await response.text();
      } catch {
        // The status alone still says what went wrong.
      }
      throw apiError("GET", path, response, parseJson(text), requestId);
    }
    const type = response.headers.get("content-type") ?? "";
    if (!type.toLowerCase().startsWith("text/event-stream") || response.body === null) {
      await response.body?.cancel().catch(() => undefined);
      throw new CliError(`GET ${target} answered HTTP ${response.status} with '${type || "no content type"}' instead of an event stream; is ${this.url} a Zectre API?`);
    }
    return response.body;
  }

  /**
   * One request with this client's credentials whose answer comes back as it came
   * (any status, body unread): for what is not JSON both ways, such as artifact
   * uploads and HEAD. Only an unreachable server throws (UnreachableError);
   * `errorOf` turns a failed answer into the ApiError `request` would have thrown.
   * A streamed body needs `signal` for its own time limit: the default one would
   * cut a long upload short.
   */
  async send(method: string, path: string, init: SendInit = {}): Promise<Response> {
    const headers: Record<string, string> = { "user-agent": this.#userAgent, "x-request-id": crypto.randomUUID(), ...init.headers };
    if (this.#token !== undefined) headers.authorization = `Bearer ${this.#token}`;
    const signal = init.signal ?? AbortSignal.timeout(this.#timeoutMs);
    try {
      return await this.#fetch(`${this.url}${path}`, { method, headers, signal, ...(init.body === undefined ? {} : { body: init.body, duplex: "half" }) });
    } catch (error) {
      const reason = signal.aborted && init.signal !== undefined ? signal.reason : error;
      throw new UnreachableError(`could not reach ${this.url}: ${networkReason(reason, this.#timeoutMs)}`);
    }
  }

  /** The ApiError for a failed answer of `send`, with the server's code and message when it sent an API error body. */
  async errorOf(method: string, path: string, response: Response): Promise<ApiError> {
    let text = "";
    try {
      text = await response.text();
    } catch {
      // The status alone still says what went wrong.
    }
    return apiError(method, path, response, parseJson(text), response.headers.get("x-request-id") ?? "");
  }

  /**
   * Sends one request and returns the parsed JSON body. The response types are
   * the protocol's interfaces, trusted rather than re-validated: the server is
   * the schema's owner, and a mismatch shows up plainly in the output.
   */
  async request<T>(method: string, path: string, init: { body?: unknown; auth?: boolean } = {}): Promise<T> {
    // A fresh id per request lets one failing call be found in the server's log.
    const requestId = crypto.randomUUID();
    const headers: Record<string, string> = { accept: "application/json", "user-agent": this.#userAgent, "x-request-id": requestId };
    if (init.auth !== false && this.#token !== undefined) headers.authorization = `Bearer ${this.#token}`;
    if (init.body !== undefined) headers["content-type"] = "application/json";
    const target = `${this.url}${path}`;

    let response: Response;
    let text: string;
    try {
      response = await this.#fetch(target, {
        method,
        headers,
        ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      text = await response.text();
    } catch (error) {
      throw new UnreachableError(`could not reach ${this.url}: ${networkReason(error, this.#timeoutMs)}`);
    }

    const json = parseJson(text);
    if (!response.ok) throw apiError(method, path, response, json, requestId);
    if (json === undefined) {
      throw new CliError(`${method} ${target} answered HTTP ${response.status} with a body that is not JSON; is ${this.url} a Zectre API?`);
    }
    return json as T;
  }
}

/** `ApiClient.send`: a body that may be a stream, extra headers, and a signal that replaces the default time limit. */
export interface SendInit {
  body?: BodyInit;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** `POST /api/v1/enrollment-tokens`: the token's plaintext, shown this once, and its record. */
export interface CreatedEnrollmentToken {
  token: string;
  record: EnrollmentTokenRecord;
}

/** `GET /api/v1/nodes/:id/settings`: the merged values and, per key, the scope that won (`org`, `label:env=prod`, `node`). */
export interface EffectiveSettings {
  settings: Record<string, unknown>;
  sources: Record<string, string>;
}

/**
 * `POST /api/v1/jobs` as the CLI sends it: exactly one of `target` and `targets`,
 * and only the optional fields the user set.
 */
export interface CreateJobRequest {
  target?: string;
  targets?: string[];
  function: string;
  args: JsonObject;
  timeout?: number;
  test?: boolean;
  metadata?: Record<string, string>;
}

/** `POST /api/v1/apps/:app/deployments` as the CLI sends it: the schema's input, so defaults may be left out. */
export type CreateDeploymentRequest = z.input<typeof CreateDeploymentBody>;

/** A deployment with the URLs that serve it: its own preview URL and the app's main URL. */
export interface DeploymentWithUrls {
  deployment: DeploymentRecord;
  previewUrl: string;
  appUrl: string;
}

/** One variable of `GET /api/v1/apps/:app/env`; a secret's value is null unless revealed. */
export interface EnvVarRecord {
  name: string;
  secret: boolean;
  value: string | null;
  updatedAt: string;
  updatedBy: string;
}

/** `since` is a duration (`10m`) or an ISO time; `limit` caps how many stored lines come back. */
export interface LogQuery {
  deployment?: string;
  since?: string;
  limit?: number;
}

function appPath(app: string): string {
  return `/api/v1/apps/${encodeURIComponent(app)}`;
}

function deploymentPath(id: string): string {
  return `/api/v1/deployments/${encodeURIComponent(id)}`;
}

function logSearch(query: LogQuery, follow: boolean): string {
  const search = new URLSearchParams();
  if (query.deployment !== undefined) search.set("deployment", query.deployment);
  if (query.since !== undefined) search.set("since", query.since);
  if (query.limit !== undefined) search.set("limit", String(query.limit));
  if (follow) search.set("follow", "1");
  const text = search.toString();
  return text === "" ? "" : `?${text}`;
}

function jobPath(jid: string): string {
  return `/api/v1/jobs/${encodeURIComponent(jid)}`;
}

function parseJson(text: string): unknown {
  try {
    return text === "" ? undefined : JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The ApiError for a non-2xx answer: the server's own code and message when the body is an API error. */
function apiError(method: string, path: string, response: Response, json: unknown, requestId: string): ApiError {
  const retryAfterSeconds = parseRetryAfter(response.headers.get("retry-after"));
  const common = { status: response.status, retryAfterSeconds, requestId: response.headers.get("x-request-id") ?? requestId };
  if (isErrorBody(json)) {
    return new ApiError({ ...common, code: json.error.code, message: json.error.message, details: json.error.details });
  }
  const status = `${response.status}${response.statusText ? ` ${response.statusText}` : ""}`;
  return new ApiError({ ...common, code: `http_${response.status}`, message: `${method} ${path} answered HTTP ${status} without an API error body`, details: undefined });
}

function nodePath(id: string): string {
  return `/api/v1/nodes/${encodeURIComponent(id)}`;
}

/** Retry-After is either delta-seconds or an HTTP date (RFC 9110 §10.2.3). */
export function parseRetryAfter(header: string | null, now: number = Date.now()): number | undefined {
  if (header === null) return undefined;
  if (/^\d+$/.test(header.trim())) return Number(header.trim());
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - now) / 1000));
}

