import { createPublicKey, randomBytes, verify } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { type WebSocket, WebSocketServer } from "ws";
import { afterEach, beforeEach } from "vitest";
import { PING_FRAME, PONG_FRAME } from "../../../protocol/agent-wire.ts";
import { fromBase64Url } from "../../../protocol/base64url.ts";
import { ERROR_STATUS, type ErrorBody, type ErrorCode } from "../../../protocol/errors.ts";
import { ReportMessage } from "../../../protocol/jobs.ts";
import { ChallengeBody, connectSigningInput, EnrollBody, type EnrollmentState } from "../../../protocol/nodes.ts";

/**
 * A stand-in for the control plane's agent endpoints (enroll, challenge,
 * connect) that checks what a real one would: bodies against the protocol's
 * schemas, single-use nonces, and the Ed25519 signature over each nonce.
 */

export interface RecordedRequest {
  method: string;
  path: string;
  body: unknown;
}

export interface FakeNode {
  nodeId: string;
  publicKey: string;
  state: EnrollmentState;
}

export interface AgentSession {
  readonly nodeId: string;
  readonly nonce: string;
  readonly socket: WebSocket;
  /** Every text frame the agent sent, parsed (pings included, as `{type:"ping"}`). */
  readonly received: unknown[];
  readonly closed: Promise<{ code: number; reason: string }>;
}

export interface CannedReply {
  status: number;
  body: unknown;
}

export interface FakeControlPlaneOptions {
  org?: string;
  heartbeatSeconds?: number;
  /** State of newly enrolled nodes (default pending). */
  enrollState?: EnrollmentState;
  /** Enrollment tokens that work (default ["zet_good"]). */
  tokens?: string[];
  /** Answer agent messages that carry an `id` (outbox messages) with a server ack (default true). */
  autoAck?: boolean;
}

export class FakeControlPlane {
  readonly org: string;
  readonly heartbeatSeconds: number;
  readonly nodes = new Map<string, FakeNode>();
  readonly requests: RecordedRequest[] = [];
  readonly issuedNonces: string[] = [];
  /** Nonces of connects whose signature verified, in order. */
  readonly acceptedNonces: string[] = [];
  /** Connect attempts the server refused, with why. */
  readonly refusedConnects: string[] = [];
  readonly sessions: AgentSession[] = [];
  /** Valid `job.report` messages (schedule runs), as stored: one per id, however often it was resent. */
  readonly reports = new Map<string, ReturnType<typeof ReportMessage.parse>>();
  /** `job.report` messages that failed the protocol schema (never acked), with the problem. */
  readonly invalidReports: { message: unknown; problem: string }[] = [];
  autoAck: boolean;
  /** Leave pings unanswered, like a half-dead connection. */
  silent = false;
  /** Answers the next challenges in turn instead of the normal logic. */
  readonly challengeReplies: CannedReply[] = [];
  /** Answers the next enroll instead of the normal logic. */
  enrollReply: CannedReply | undefined;
  url = "";

  readonly #enrollState: EnrollmentState;
  readonly #tokens: Set<string>;
  readonly #nonces = new Map<string, string>();
  readonly #server = createServer((request, response) => void this.#handle(request, response));
  readonly #wss = new WebSocketServer({ noServer: true });

  private constructor(options: FakeControlPlaneOptions) {
    this.org = options.org ?? "acme";
    this.heartbeatSeconds = options.heartbeatSeconds ?? 30;
    this.#enrollState = options.enrollState ?? "pending";
    this.#tokens = new Set(options.tokens ?? ["zet_good"]);
    this.autoAck = options.autoAck ?? true;
    this.#server.on("upgrade", (request: IncomingMessage, socket: Socket, head: Buffer) => this.#upgrade(request, socket, head));
  }

  static async start(options: FakeControlPlaneOptions = {}): Promise<FakeControlPlane> {
    const plane = new FakeControlPlane(options);
    await new Promise<void>((resolve) => plane.#server.listen(0, "127.0.0.1", resolve));
    plane.url = `http://127.0.0.1:${(plane.#server.address() as AddressInfo).port}`;
    return plane;
  }

  /** Registers a node as if it had enrolled earlier. */
  register(nodeId: string, publicKey: string, state: EnrollmentState = "active"): void {
    this.nodes.set(nodeId, { nodeId, publicKey, state });
  }

  /** The newest session, or the one at `index`. */
  session(index = -1): AgentSession {
    const session = this.sessions.at(index);
    if (!session) throw new Error(`no agent session at ${index} (there are ${this.sessions.length})`);
    return session;
  }

  sendAction(session: AgentSession, id: string, action: unknown): void {
    session.socket.send(JSON.stringify({ type: "action", v: 1, id, sentAt: new Date().toISOString(), action }));
  }

  /** Acks outbox messages (returns) by id, as the control plane does once it stored them. */
  ack(session: AgentSession, ids: string[]): void {
    session.socket.send(JSON.stringify({ type: "ack", v: 1, ids }));
  }

  /** How often the agent acked action `id`: in `ack` messages, and on returns that carry acks. */
  ackCount(session: AgentSession, id: string): number {
    return session.received.filter((message) => acksIn(message).includes(id)).length;
  }

  /** Messages of one type the session received, e.g. every `ack`. */
  messages(session: AgentSession, type: string): Record<string, unknown>[] {
    return session.received.filter((message): message is Record<string, unknown> => isRecord(message) && message.type === type);
  }

  async close(): Promise<void> {
    for (const client of this.#wss.clients) client.terminate();
    this.#wss.close();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? "/", "http://fake");
    let text = "";
    for await (const chunk of request) text += String(chunk);
    let body: unknown;
    try {
      body = text === "" ? undefined : JSON.parse(text);
    } catch {
      body = text;
    }
    this.requests.push({ method: request.method ?? "", path: url.pathname, body });
    const reply = (status: number, json: unknown) => {
      response.writeHead(status, { "content-type": "application/json" });
      response.end(JSON.stringify(json));
    };
    const fail = (code: ErrorCode, message: string, details?: unknown) => reply(ERROR_STATUS[code], errorBody(code, message, details));

    if (request.method === "POST" && url.pathname === "/api/v1/agent/enroll") {
      if (this.enrollReply) {
        const canned = this.enrollReply;
        this.enrollReply = undefined;
        return reply(canned.status, canned.body);
      }
      const parsed = EnrollBody.safeParse(body);
      if (!parsed.success) return fail("invalid_body", `invalid body: ${parsed.error.issues[0]?.message ?? "invalid"}`);
      if (!this.#tokens.has(parsed.data.token)) return fail("unauthorized", "enrollment token is invalid, expired or used up");
      const existing = this.nodes.get(parsed.data.nodeId);
      if (existing && existing.publicKey !== parsed.data.publicKey) return fail("conflict", `node id '${parsed.data.nodeId}' is taken by another key`);
      const node = existing ?? { nodeId: parsed.data.nodeId, publicKey: parsed.data.publicKey, state: this.#enrollState };
      this.nodes.set(node.nodeId, node);
      return reply(201, { org: this.org, nodeId: node.nodeId, state: node.state });
    }

    if (request.method === "POST" && url.pathname === "/api/v1/agent/challenge") {
      const canned = this.challengeReplies.shift();
      if (canned) return reply(canned.status, canned.body);
      const parsed = ChallengeBody.safeParse(body);
      if (!parsed.success) return fail("invalid_body", "invalid body");
      const node = this.nodes.get(parsed.data.nodeId);
      if (parsed.data.org !== this.org || !node) return fail("not_found", "no such node");
      if (node.state !== "active" && node.state !== "approved") return fail("forbidden", `node is ${node.state}`, { state: node.state });
      const nonce = randomBytes(24).toString("base64url");
      this.#nonces.set(nonce, node.nodeId);
      this.issuedNonces.push(nonce);
      return reply(200, { nonce, expiresAt: new Date(Date.now() + 60_000).toISOString() });
    }

    return fail("not_found", "no such route");
  }

  #upgrade(request: IncomingMessage, socket: Socket, head: Buffer): void {
    const url = new URL(request.url ?? "/", "http://fake");
    const refuse = (why: string) => {
      this.refusedConnects.push(why);
      const text = JSON.stringify(errorBody("unauthorized", why));
      socket.end(`HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`);
    };
    if (url.pathname !== "/api/v1/agent/connect") return refuse("no such route");
    const org = url.searchParams.get("org") ?? "";
    const nodeId = url.searchParams.get("node") ?? "";
    const nonce = url.searchParams.get("nonce") ?? "";
    const signature = fromBase64Url(url.searchParams.get("sig") ?? "");
    const node = this.nodes.get(nodeId);
    // Single use: a replayed nonce is refused even with a valid signature.
    if (this.#nonces.get(nonce) !== nodeId) return refuse("unknown or used nonce");
    this.#nonces.delete(nonce);
    if (org !== this.org || !node || !signature) return refuse("bad connect parameters");
    const publicKey = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: node.publicKey }, format: "jwk" });
    if (!verify(null, connectSigningInput(org, nodeId, nonce), publicKey, signature)) return refuse("bad signature");
    this.acceptedNonces.push(nonce);

    this.#wss.handleUpgrade(request, socket, head, (ws) => {
      const received: unknown[] = [];
      const closed = new Promise<{ code: number; reason: string }>((resolve) => {
        ws.on("close", (code, reason) => resolve({ code, reason: reason.toString("utf8") }));
      });
      const session: AgentSession = { nodeId, nonce, socket: ws, received, closed };
      this.sessions.push(session);
      ws.on("message", (data) => {
        const text = String(data);
        // The runtime answers pings without waking the object; so does this fake.
        if (text === PING_FRAME && !this.silent) ws.send(PONG_FRAME);
        let message: unknown;
        try {
          message = JSON.parse(text);
        } catch {
          message = text;
        }
        received.push(message);
        if (isRecord(message) && message.type === "job.report") {
          // Like the control plane: a report is stored (idempotently, by id) and acked only if it is valid.
          const report = ReportMessage.safeParse(message);
          if (!report.success) {
            this.invalidReports.push({ message, problem: report.error.issues[0]?.message ?? "invalid" });
            return;
          }
          if (!this.reports.has(report.data.id)) this.reports.set(report.data.id, report.data);
        }
        if (this.autoAck && isRecord(message) && typeof message.id === "string" && message.type !== "ack") {
          ws.send(JSON.stringify({ type: "ack", v: 1, ids: [message.id] }));
        }
      });
      ws.send(JSON.stringify({ type: "welcome", v: 1, org, nodeId, heartbeatSeconds: this.heartbeatSeconds, serverTime: new Date().toISOString() }));
    });
  }
}

export function errorBody(code: ErrorCode, message: string, details?: unknown): ErrorBody {
  return { error: { code, message, ...(details === undefined ? {} : { details }) } };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Polls until `probe` returns something other than undefined (or false), or fails after `timeoutMs`. */
export async function until<T>(probe: () => T | undefined | false, what: string, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * The wire tests' common setup: a fresh fake control plane per test, behind a stable name, and a list of
 * cleanups run in reverse after each test, before the plane closes.
 */
export function useFakeControlPlane(): { plane: FakeControlPlane; cleanups: (() => Promise<void> | void)[] } {
  let current: FakeControlPlane | undefined;
  const cleanups: (() => Promise<void> | void)[] = [];
  beforeEach(async () => {
    current = await FakeControlPlane.start();
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    await current?.close();
  });
  const plane = new Proxy({} as FakeControlPlane, {
    get(_target, key) {
      if (!current) throw new Error("the fake control plane exists only while a test runs");
      const value: unknown = Reflect.get(current, key);
      return typeof value === "function" ? value.bind(current) : value;
    },
    set(_target, key, value) {
      return Reflect.set(current as FakeControlPlane, key, value);
    },
  });
  return { plane, cleanups };
}

/** The action ids a message from the agent acks: an `ack`'s ids, or the acks a return carries. */
export function acksIn(message: unknown): unknown[] {
  if (!isRecord(message)) return [];
  const ids = message.type === "ack" ? message.ids : message.type === "return" ? message.acks : undefined;
  return Array.isArray(ids) ? ids : [];
}
