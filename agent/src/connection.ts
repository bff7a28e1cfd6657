import { EventEmitter } from "node:events";
import type { IncomingMessage } from "node:http";
import WebSocket, { type ClientOptions, type RawData } from "ws";
import { z } from "zod";
import {
  ActionBody,
  type ActionMessage,
  canonicalJson,
  CLOSE,
  FactsMessage,
  MAX_FRAME_BYTES,
  PING_FRAME,
  PONG_FRAME,
  ServerMessage,
  WIRE_VERSION,
  type WelcomeMessage,
} from "../../protocol/agent-wire.ts";
import { toBase64Url } from "../../protocol/base64url.ts";
import { isErrorBody } from "../../protocol/errors.ts";
import { connectSigningInput, type Facts } from "../../protocol/nodes.ts";
import { Backoff, type BackoffOptions } from "./backoff.ts";
import { oneLine } from "./errors.ts";
import { HttpError, NetworkError, postJson } from "./http.ts";
import type { Signer } from "./keys.ts";
import type { Logger } from "./log.ts";
import { messageOf } from "./state/files.ts";
import type { DedupLedger } from "./state/ledger.ts";
import type { LogOutbox } from "./state/log-outbox.ts";
import type { Outbox, OutboxMessage } from "./state/outbox.ts";
import { PendingAcks } from "./pending-acks.ts";
import type { SettingsStore } from "./state/settings.ts";
import { agentVersion } from "./version.ts";

/**
 * The agent's one connection to its NodeObject: challenge, signed connect,
 * heartbeats, actions in, facts and outbox messages out, and reconnects with
 * backoff for as long as the node is not rejected or revoked.
 *
 * Every wait ends in the socket's `close` event, so each session has exactly one
 * place where its outcome (retry, or give up for good) is decided.
 */

export interface ConnectionIdentity {
  /** The control plane's base URL (http or https), without a trailing slash. */
  readonly url: string;
  readonly org: string;
  readonly nodeId: string;
}

export interface ActionMeta {
  readonly id: string;
  readonly sentAt: string;
}

type ActionKind = ActionBody["kind"];
export type ActionHandler<K extends ActionKind = ActionKind> = (action: Extract<ActionBody, { kind: K }>, meta: ActionMeta) => void | Promise<void>;
/** One handler per action kind. A handler that returns normally gets the action acked; one that throws does not. */
export type ActionHandlers = { readonly [K in ActionKind]?: ActionHandler<K> };

export type WebSocketFactory = (url: string, options: ClientOptions) => WebSocket;

export interface AgentConnectionOptions {
  readonly identity: ConnectionIdentity;
  readonly signer: Signer;
  readonly settings: SettingsStore;
  readonly outbox: Outbox;
  /** Task log batches: resent after the outbox on every welcome and acked like it, but bounded (logs may be dropped, nothing else). */
  readonly logOutbox?: Pick<LogOutbox, "pending" | "ack">;
  /** Ids of actions already applied, so a resent action is acked without being applied twice. */
  readonly appliedActions: DedupLedger;
  /** Collects the host's facts; called after each welcome and on every refresh. */
  readonly facts: () => Facts;
  readonly logger: Logger;
  readonly backoff?: BackoffOptions;
  /** A connection up at least this long resets the backoff (default 30 s). */
  readonly stableMs?: number;
  /** How often facts are re-collected; they are sent only when they changed (default 60 s). */
  readonly factsIntervalMs?: number;
  /** Overrides the server's `heartbeatSeconds` (tests only: the server's value is whole seconds). */
  readonly heartbeatMs?: number;
  /** How long the socket may stay open without a welcome (default 15 s). */
  readonly welcomeTimeoutMs?: number;
  readonly httpTimeoutMs?: number;
  readonly fetch?: typeof fetch;
  readonly createWebSocket?: WebSocketFactory;
  /** Handlers for action kinds; `settings.update` has a built-in one that writes the snapshot. */
  readonly actions?: ActionHandlers;
  /** Fault injection for tests: every outbox message (returns, reports) is sent twice. */
  readonly duplicateSends?: boolean;
  /** How long an action's ack waits for a return to ride on (default 50 ms; 0 sends each ack at once). */
  readonly ackHoldMs?: number;
}

/** Why `run()` ended: stopped on request, or the control plane refused the node for good. */
export type ConnectionEnd = { readonly reason: "stopped" } | { readonly reason: "rejected" | "revoked"; readonly message: string };

export type ActionOutcome = "applied" | "duplicate" | "unknown" | "invalid" | "failed";

export type ConnectionState = "idle" | "connecting" | "connected" | "waiting" | "stopped";

export interface ConnectionEvents {
  connecting: [{ attempt: number }];
  open: [];
  welcome: [WelcomeMessage];
  /** After a welcome, once the facts went out and both outboxes were resent: a fresh picture may follow (the task inventory). */
  ready: [];
  action: [{ id: string; kind: string | undefined; outcome: ActionOutcome }];
  /** Ids the server acked, after they left the outbox. */
  acked: [string[]];
  "facts-sent": [Facts];
  disconnected: [{ code: number; reason: string }];
  retry: [{ attempt: number; delayMs: number; reason: string }];
  /** The node is enrolled but not approved yet; the connection keeps retrying. */
  pending: [];
  /** A binary frame: tunnel traffic (every JSON message is a text frame). */
  binary: [Buffer];
}

export const DEFAULT_STABLE_MS = 30_000;
export const DEFAULT_FACTS_INTERVAL_MS = 60_000;
const DEFAULT_WELCOME_TIMEOUT_MS = 15_000;
/** After a heartbeat interval times this with nothing received, the socket is presumed dead. */
const SILENCE_FACTOR = 3;
/** How long a clean close may take before the socket is dropped. */
const CLOSE_GRACE_MS = 2_000;
/** Long enough for test.ping and friends to finish, short next to the job's 5 s re-send. */
export const DEFAULT_ACK_HOLD_MS = 50;

const ChallengeResponse = z.object({ nonce: z.string().min(1), expiresAt: z.string() });
const RefusedState = z.object({ state: z.enum(["pending", "rejected", "revoked"]) });

/** `expected` retries (waiting for approval) are logged at info, not as failures. */
type SessionOutcome = { kind: "retry"; reason: string; expected?: boolean } | { kind: "fatal"; end: ConnectionEnd };

export class AgentConnection extends EventEmitter<ConnectionEvents> {
  readonly #options: AgentConnectionOptions;
  readonly #log: Logger;
  readonly #backoff: Backoff;
  readonly #handlers = new Map<string, ActionHandler>();
  readonly #createWebSocket: WebSocketFactory;
  readonly #stopController = new AbortController();

  #state: ConnectionState = "idle";
  #socket: WebSocket | undefined;
  #welcomed = false;
  #running: Promise<ConnectionEnd> | undefined;
  #wake: (() => void) | undefined;
  #factsTimer: NodeJS.Timeout | undefined;
  #lastFactsSent: string | undefined;
  /** Actions are handled one at a time, in arrival order, so a resend always finds its original recorded. */
  #actionChain: Promise<void> = Promise.resolve();
  readonly #pendingAcks: PendingAcks;

  constructor(options: AgentConnectionOptions) {
    super();
    this.#options = options;
    this.#log = options.logger;
    this.#backoff = new Backoff(options.backoff);
    this.#createWebSocket = options.createWebSocket ?? ((url, clientOptions) => new WebSocket(url, clientOptions));
    this.#pendingAcks = new PendingAcks(options.ackHoldMs ?? DEFAULT_ACK_HOLD_MS, (socket, ids) => {
      if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "ack", v: WIRE_VERSION, ids }));
    });
    this.handle("settings.update", (action) => this.#applySettings(action));
    for (const [kind, handler] of Object.entries(options.actions ?? {})) this.#handlers.set(kind, handler as ActionHandler);
  }

  /** Sets (or replaces) the handler of one action kind; for components built after the connection. */
  handle<K extends ActionKind>(kind: K, handler: ActionHandler<K>): void {
    // Dispatch looks the handler up by the parsed action's own kind, so it only ever gets its kind.
    this.#handlers.set(kind, handler as unknown as ActionHandler);
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** True between a welcome and the socket's close: messages sent now reach the NodeObject. */
  get connected(): boolean {
    return this.#welcomed && this.#socket?.readyState === WebSocket.OPEN;
  }

  /** Connects and keeps reconnecting until `stop()`, or until the node is rejected or revoked. */
  run(): Promise<ConnectionEnd> {
    this.#running ??= this.#loop();
    return this.#running;
  }

  /** Closes the socket with 1000 and resolves once `run()` has ended. */
  async stop(): Promise<void> {
    if (this.#state === "stopped") return;
    if (!this.#stopController.signal.aborted) {
      this.#stopController.abort();
      this.#wake?.();
      const socket = this.#socket;
      if (socket?.readyState === WebSocket.OPEN) {
        socket.close(CLOSE.normal, "agent stopping");
        // The close handshake needs the server's answer; a dead peer must not hold the exit hostage.
        setTimeout(() => socket.terminate(), CLOSE_GRACE_MS).unref();
      } else if (socket?.readyState === WebSocket.CONNECTING) {
        socket.terminate();
      }
    }
    if (this.#running) await this.#running;
    else this.#state = "stopped";
  }

  /**
   * Stores a message durably, then sends it if connected; it is resent after
   * every welcome until the server acks its id. Use for anything that must
   * reach the control plane even across a crash (job returns).
   */
  enqueue(message: OutboxMessage): string {
    const id = this.#options.outbox.enqueue(message);
    if (this.connected) this.#sendOutboxMessage(message);
    return id;
  }

  /** Sends a message now if connected (true) or drops it (false): for messages a reconnect makes stale. */
  send(message: object): boolean {
    if (!this.connected) return false;
    this.#sendJson(message);
    return true;
  }

  /** Sends a binary (tunnel) frame now if connected; false otherwise. */
  sendBinary(frame: Uint8Array): boolean {
    if (!this.connected) return false;
    this.#socket?.send(frame);
    return true;
  }

  async #loop(): Promise<ConnectionEnd> {
    this.#startFactsTimer();
    try {
      while (!this.#stopping) {
        const outcome = await this.#session();
        if (outcome.kind === "fatal") return outcome.end;
        if (this.#stopping) break;
        const attempt = this.#backoff.attempt;
        const delayMs = this.#backoff.next();
        this.#state = "waiting";
        if (outcome.expected === true) this.#log.info("waiting to retry", { reason: outcome.reason, attempt, delayMs });
        else this.#log.warn("connection failed; retrying", { reason: outcome.reason, attempt, delayMs });
        this.emit("retry", { attempt, delayMs, reason: outcome.reason });
        await this.#sleep(delayMs);
      }
      return { reason: "stopped" };
    } finally {
      this.#state = "stopped";
      clearInterval(this.#factsTimer);
    }
  }

  get #stopping(): boolean {
    return this.#stopController.signal.aborted;
  }

  /** One challenge, one signed connect, one socket lifetime. */
  async #session(): Promise<SessionOutcome> {
    const { url, org, nodeId } = this.#options.identity;
    this.#state = "connecting";
    this.emit("connecting", { attempt: this.#backoff.attempt });

    // A fresh nonce for every connect: the server accepts each one once.
    let nonce: string;
    try {
      const challenge = await postJson(`${url}/api/v1/agent/challenge`, { v: 1, org, nodeId }, ChallengeResponse, {
        ...(this.#options.fetch ? { fetch: this.#options.fetch } : {}),
        ...(this.#options.httpTimeoutMs !== undefined ? { timeoutMs: this.#options.httpTimeoutMs } : {}),
        signal: this.#stopController.signal,
      });
      nonce = challenge.nonce;
    } catch (error) {
      return this.#refusal(error, "challenge");
    }
    if (this.#stopping) return { kind: "retry", reason: "stopping" };

    const signature = toBase64Url(this.#options.signer(connectSigningInput(org, nodeId, nonce)));
    const query = new URLSearchParams({ org, node: nodeId, nonce, sig: signature });
    const socketUrl = `${url.replace(/^http/, "ws")}/api/v1/agent/connect?${query}`;
    let socket: WebSocket;
    try {
      socket = this.#createWebSocket(socketUrl, {
        maxPayload: MAX_FRAME_BYTES,
        handshakeTimeout: this.#options.httpTimeoutMs ?? 15_000,
        headers: { "user-agent": `zectre-agent/${agentVersion()}` },
      });
    } catch (error) {
      return { kind: "retry", reason: `cannot open the WebSocket: ${messageOf(error)}` };
    }
    return new Promise((resolve) => this.#attach(socket, resolve));
  }

  /** Turns a failed challenge or upgrade into retry-or-give-up; only 403 with a final state gives up. */
  #refusal(error: unknown, step: string): SessionOutcome {
    if (error instanceof HttpError) {
      const refused = error.status === 403 ? RefusedState.safeParse(error.details) : undefined;
      if (refused?.success) {
        const state = refused.data.state;
        if (state === "pending") {
          this.emit("pending");
          return { kind: "retry", reason: "enrollment pending approval", expected: true };
        }
        const message = `the control plane ${state} this node: ${error.message}`;
        this.#log.error(`node is ${state}; giving up`, { step, code: error.code, message: error.message });
        return { kind: "fatal", end: { reason: state, message } };
      }
      return { kind: "retry", reason: `${step} failed: ${error.message} (${error.code}, HTTP ${error.status})` };
    }
    if (error instanceof NetworkError) return { kind: "retry", reason: `${step} failed: ${error.message}` };
    return { kind: "retry", reason: `${step} failed: ${messageOf(error)}` };
  }

  #attach(socket: WebSocket, resolve: (outcome: SessionOutcome) => void): void {
    this.#socket = socket;
    this.#welcomed = false;
    let openedAt: number | undefined;
    /** Set by whichever handler first learns why the session is ending; read in `close`. */
    let outcome: SessionOutcome | undefined;
    let welcomeTimer: NodeJS.Timeout | undefined;
    let pingTimer: NodeJS.Timeout | undefined;
    let silenceTimer: NodeJS.Timeout | undefined;
    let silenceMs = 0;

    const heard = () => {
      if (silenceMs === 0) return;
      clearTimeout(silenceTimer);
      silenceTimer = setTimeout(() => {
        outcome ??= { kind: "retry", reason: `nothing received for ${silenceMs}ms` };
        socket.terminate();
      }, silenceMs);
    };

    socket.on("open", () => {
      openedAt = Date.now();
      this.emit("open");
      welcomeTimer = setTimeout(() => {
        outcome ??= { kind: "retry", reason: "no welcome from the server" };
        socket.terminate();
      }, this.#options.welcomeTimeoutMs ?? DEFAULT_WELCOME_TIMEOUT_MS);
    });

    socket.on("unexpected-response", (_request, response: IncomingMessage) => {
      void readBody(response).then((text) => {
        const json = safeJson(text);
        const error = isErrorBody(json)
          ? new HttpError(response.statusCode ?? 0, json.error.code, oneLine(json.error.message), json.error.details)
          : new HttpError(response.statusCode ?? 0, `http_${response.statusCode}`, "the upgrade was refused", undefined);
        outcome ??= this.#refusal(error, "connect");
        socket.terminate();
      });
    });

    socket.on("error", (error) => {
      outcome ??= { kind: "retry", reason: `socket error: ${messageOf(error)}` };
    });

    socket.on("ping", heard);

    socket.on("message", (data: RawData, isBinary: boolean) => {
      heard();
      if (isBinary) {
        this.emit("binary", rawBuffer(data));
        return;
      }
      const text = rawText(data);
      if (text === PONG_FRAME) return;
      const message = this.#parse(text);
      if (!message) return;
      try {
        this.#dispatch(message, socket, (intervalMs) => {
          clearTimeout(welcomeTimer);
          silenceMs = intervalMs * SILENCE_FACTOR;
          heard();
          clearInterval(pingTimer);
          pingTimer = setInterval(() => {
            if (socket.readyState === WebSocket.OPEN) socket.send(PING_FRAME);
          }, intervalMs);
        });
      } catch (error) {
        // A failing disk or a bug in one handler must not take the whole agent down with an uncaught throw.
        this.#log.error("could not handle a message", { type: message.type, error: messageOf(error) });
      }
    });

    socket.on("close", (code: number, reasonBuffer: Buffer) => {
      clearTimeout(welcomeTimer);
      clearInterval(pingTimer);
      clearTimeout(silenceTimer);
      if (this.#socket === socket) this.#socket = undefined;
      this.#pendingAcks.drop(socket);
      this.#welcomed = false;
      const reason = oneLine(reasonBuffer.toString("utf8"));
      if (openedAt !== undefined) {
        this.emit("disconnected", { code, reason });
        const upMs = Date.now() - openedAt;
        if (upMs >= (this.#options.stableMs ?? DEFAULT_STABLE_MS)) this.#backoff.reset();
        this.#log.info("disconnected", { code, reason, upMs });
      }
      resolve(this.#closeOutcome(code, reason, outcome));
    });
  }

  /** Handles one parsed server message; `startHeartbeat` is called with the interval once welcomed. */
  #dispatch(message: ServerMessage, socket: WebSocket, startHeartbeat: (intervalMs: number) => void): void {
    switch (message.type) {
      case "welcome":
        startHeartbeat(this.#options.heartbeatMs ?? message.heartbeatSeconds * 1000);
        this.#welcome(message);
        break;
      case "action":
        // The catch keeps one unexpected failure from stalling every later action.
        this.#actionChain = this.#actionChain
          .then(() => this.#handleAction(message, socket))
          .catch((error: unknown) => this.#log.error("action handling crashed", { id: message.id, error: messageOf(error) }));
        break;
      case "ack": {
        const removed = this.#options.outbox.ack(message.ids) + (this.#options.logOutbox?.ack(message.ids) ?? 0);
        this.#log.debug("server acked", { ids: message.ids, removed });
        this.emit("acked", message.ids);
        break;
      }
      case "error":
        this.#log.warn("server reported an error", { code: message.code, message: message.message });
        break;
    }
  }

  #closeOutcome(code: number, reason: string, earlier: SessionOutcome | undefined): SessionOutcome {
    if (earlier) return earlier;
    if (code === CLOSE.revoked) {
      const message = `the control plane revoked this node${reason ? `: ${reason}` : ""}`;
      this.#log.error("node is revoked; giving up", { code, reason });
      return { kind: "fatal", end: { reason: "revoked", message } };
    }
    if (code === CLOSE.replaced) {
      // Another agent with this identity connected; if it is a stale copy, backoff keeps the two from thrashing.
      return { kind: "retry", reason: "replaced by another connection of this node" };
    }
    if (code === CLOSE.policy || code === CLOSE.tooBig) {
      this.#log.error("the server closed the socket over a message it refused", { code, reason });
    }
    return { kind: "retry", reason: `socket closed (${code}${reason ? ` ${reason}` : ""})` };
  }

  #parse(text: string): ServerMessage | undefined {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      this.#log.warn("ignored a frame that is not JSON", { bytes: text.length });
      return undefined;
    }
    const parsed = ServerMessage.safeParse(json);
    if (!parsed.success) {
      // A newer server may send types this agent does not know yet; wire changes are additive.
      const type = typeof json === "object" && json !== null && "type" in json ? String(json.type) : undefined;
      this.#log.warn("ignored a message this agent does not understand", { type, issue: parsed.error.issues[0]?.message });
      return undefined;
    }
    return parsed.data;
  }

  #welcome(message: WelcomeMessage): void {
    const { org, nodeId } = this.#options.identity;
    if (message.org !== org || message.nodeId !== nodeId) {
      this.#log.warn("welcome names another node; continuing as this one", { welcomeOrg: message.org, welcomeNode: message.nodeId });
    }
    this.#welcomed = true;
    this.#state = "connected";
    this.#log.info("connected", { heartbeatSeconds: message.heartbeatSeconds, outbox: this.#options.outbox.size });
    this.emit("welcome", message);
    this.#lastFactsSent = undefined;
    this.#sendFacts();
    for (const pending of this.#options.outbox.pending()) this.#sendOutboxMessage(pending);
    for (const batch of this.#options.logOutbox?.pending() ?? []) this.#sendJson(batch);
    this.emit("ready");
  }

  async #handleAction(message: ActionMessage, socket: WebSocket): Promise<void> {
    const { id, sentAt } = message;
    const kind = kindOf(message.action);
    const report = (outcome: ActionOutcome) => this.emit("action", { id, kind, outcome });
    const ack = () => this.#pendingAcks.add(socket, id);

    if (this.#options.appliedActions.seen(id, 0)) {
      this.#log.info("action already applied; acking again", { id, kind });
      ack();
      report("duplicate");
      return;
    }
    const parsed = ActionBody.safeParse(message.action);
    if (!parsed.success) {
      // Acked all the same: unacked, the server would resend it forever and this agent would never understand it.
      const known = kind !== undefined && this.#handlers.has(kind);
      if (known) this.#log.error("ignored a malformed action", { id, kind, issue: parsed.error.issues[0]?.message });
      else this.#log.warn("ignored an action of a kind this agent does not know", { id, kind });
      ack();
      report(known ? "invalid" : "unknown");
      return;
    }
    const handler = this.#handlers.get(parsed.data.kind);
    try {
      if (!handler) throw new Error(`no handler for ${parsed.data.kind}`);
      await handler(parsed.data, { id, sentAt });
      // Recorded before the ack: once the server stops resending, the record must already be there.
      this.#options.appliedActions.record(id, 0);
    } catch (error) {
      // Not acked, so the server resends it after the next reconnect.
      this.#log.error("action failed", { id, kind, error: messageOf(error) });
      report("failed");
      return;
    }
    ack();
    report("applied");
  }

  #applySettings(action: Extract<ActionBody, { kind: "settings.update" }>): void {
    const written = this.#options.settings.apply(action);
    this.#log.info(written ? "settings updated" : "settings unchanged", { version: action.version, keys: Object.keys(action.settings).length });
  }

  #startFactsTimer(): void {
    this.#factsTimer = setInterval(() => {
      if (this.connected) this.#sendFacts();
    }, this.#options.factsIntervalMs ?? DEFAULT_FACTS_INTERVAL_MS);
  }

  /** Sends the facts unless they equal the last ones sent on this connection. */
  #sendFacts(): void {
    let facts: Facts;
    let message: z.infer<typeof FactsMessage>;
    try {
      facts = this.#options.facts();
      // No nodeId: the socket is the node's identity, and a payload can only get it wrong.
      message = FactsMessage.parse({ type: "facts", v: WIRE_VERSION, facts });
    } catch (error) {
      this.#log.error("could not collect facts", { error: messageOf(error).split("\n")[0] });
      return;
    }
    const key = canonicalJson(facts);
    if (key === this.#lastFactsSent) return;
    this.#sendJson(message);
    this.#lastFactsSent = key;
    this.emit("facts-sent", facts);
  }

  /** A return takes the acks waiting on this socket along. */
  #sendOutboxMessage(message: OutboxMessage): void {
    const acks = message.type === "return" ? this.#pendingAcks.take(this.#socket) : undefined;
    const frame = acks ? { ...message, acks } : message;
    this.#sendJson(frame);
    if (this.#options.duplicateSends) this.#sendJson(frame);
  }

  #sendJson(message: object): void {
    const socket = this.#socket;
    if (socket?.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }
}

function kindOf(action: unknown): string | undefined {
  return typeof action === "object" && action !== null && "kind" in action && typeof action.kind === "string" ? action.kind : undefined;
}

function rawBuffer(data: RawData): Buffer {
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.isBuffer(data) ? data : Buffer.from(data);
}

function rawText(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString("utf8");
  if (data instanceof ArrayBuffer) return Buffer.from(data).toString("utf8");
  return data.toString("utf8");
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Reads at most 64 KiB: enough for an error body, not enough for a hostile server to exhaust memory. */
function readBody(response: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    let text = "";
    response.setEncoding("utf8");
    response.on("data", (chunk: string) => {
      text += chunk;
      if (text.length > 65_536) response.destroy();
    });
    response.on("end", () => resolve(text));
    response.on("close", () => resolve(text));
    response.on("error", () => resolve(text));
  });
}
