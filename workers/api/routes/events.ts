import { Hono } from "hono";
import { orgStub } from "../../../durable-objects/env.ts";
import { EVENTS_IDENTITY_HEADER, type SubscriberAttachment } from "../../../durable-objects/org/events-hub.ts";
import type { Identity } from "../../../protocol/api.ts";
import { EVENTS_AUTH_TIMEOUT_MS, EVENTS_CLOSE, EventsAuthMessage, parseSinceId } from "../../../protocol/events.ts";
import { parseToken, scopeAllows } from "../../../protocol/tokens.ts";
import { authenticate, requireScope } from "../auth.ts";
import type { ApiContext, ApiEnv } from "../env.ts";
import { ApiError } from "../errors.ts";

/** Opens the subscriber socket on the org object; the identity travels in a header only the Worker can set. */
async function openOnOrg(env: ApiEnv, identity: Identity, since: number | null): Promise<Response> {
  const query = since === null ? "" : `?since=${since}`;
  const attachment: SubscriberAttachment = { tokenId: identity.tokenId, tokenName: identity.tokenName };
  return orgStub(env, identity.org).fetch(`https://org/events${query}`, {
    headers: { upgrade: "websocket", [EVENTS_IDENTITY_HEADER]: JSON.stringify(attachment) },
  });
}

type AuthOutcome = { ok: true; identity: Identity } | { ok: false; code: number; reason: string };

async function authenticateMessage(env: ApiEnv, data: unknown): Promise<AuthOutcome> {
  let message: unknown;
  try {
    message = typeof data === "string" ? JSON.parse(data) : null;
  } catch {
    message = null;
  }
  const parsed = EventsAuthMessage.safeParse(message);
  if (!parsed.success) return { ok: false, code: EVENTS_CLOSE.unauthorized, reason: 'the first message must be {"type":"auth","token":"zt_..."}' };
  const token = parseToken(parsed.data.token);
  if (!token) return { ok: false, code: EVENTS_CLOSE.unauthorized, reason: "malformed API token" };
  const result = await orgStub(env, token.org).authenticate(token.id, token.secret);
  if (!result.ok) return { ok: false, code: EVENTS_CLOSE.unauthorized, reason: result.message };
  if (!scopeAllows(result.identity.scope, "read")) return { ok: false, code: EVENTS_CLOSE.forbidden, reason: "the token lacks the 'read' scope" };
  return { ok: true, identity: result.identity };
}

/** Codes 1005/1006 only report what happened; they cannot be sent. */
function sendableCode(code: number): number {
  return code === 1005 || code === 1006 || code === 1015 ? 1000 : code;
}

function closeQuietly(ws: WebSocket, code: number, reason: string): void {
  try {
    ws.close(sendableCode(code), reason.slice(0, 120));
  } catch {
    // already closed
  }
}

/** Forwards the org object's frames to the browser (browsers send nothing after auth); either side closing closes the other with the same code. */
function pipe(client: WebSocket, upstream: WebSocket): void {
  upstream.addEventListener("message", (event) => {
    try {
      client.send(event.data);
    } catch {
      closeQuietly(upstream, 1000, "client gone");
    }
  });
  upstream.addEventListener("close", (event) => closeQuietly(client, event.code, event.reason));
  upstream.addEventListener("error", () => closeQuietly(client, 1011, "event stream failed"));
  client.addEventListener("close", (event) => closeQuietly(upstream, event.code, event.reason));
}

/** Authenticates the first message, then pipes the browser's socket to the org object's. */
async function connectAfterAuth(env: ApiEnv, server: WebSocket, data: unknown, since: number | null): Promise<void> {
  const outcome = await authenticateMessage(env, data);
  if (!outcome.ok) return closeQuietly(server, outcome.code, outcome.reason);
  const upstream = (await openOnOrg(env, outcome.identity, since)).webSocket;
  if (!upstream) return closeQuietly(server, 1011, "the event stream is unavailable");
  upstream.accept();
  // The browser may have left while the token was checked.
  if (server.readyState !== WebSocket.OPEN) return closeQuietly(upstream, 1000, "client gone");
  pipe(server, upstream);
}

/**
 * Browsers cannot set headers and must not put tokens in URLs, so they authenticate
 * with the first message. The org is only known from that token, after the upgrade,
 * so this Worker holds the browser's socket and relays it to the org object's
 * (hibernatable) subscriber socket. Until the auth message arrives nothing is sent.
 */
function acceptWithMessageAuth(env: ApiEnv, since: number | null): Response {
  const { 0: client, 1: server } = new WebSocketPair();
  server.accept();
  let waiting = true;
  const timer = setTimeout(() => {
    if (waiting) closeQuietly(server, EVENTS_CLOSE.unauthorized, "no auth message within 10 s");
  }, EVENTS_AUTH_TIMEOUT_MS);
  server.addEventListener("message", (event) => {
    // Only the first message is read; later ones (before the relay is up) are dropped.
    if (!waiting) return;
    waiting = false;
    clearTimeout(timer);
    void connectAfterAuth(env, server, event.data, since);
  });
  server.addEventListener("close", () => clearTimeout(timer));
  return new Response(null, { status: 101, webSocket: client });
}

function sinceOf(raw: string | undefined): number | null {
  if (raw === undefined) return null;
  const since = parseSinceId(raw);
  if (since === null) throw new ApiError("bad_request", "since must be an event id (a non-negative integer)");
  return since;
}

/** `GET /events`: the org's live event stream (WebSocket), authenticated by header (CLI) or first message (browsers). */
export const eventRoutes = new Hono<ApiContext>().get(
  "/events",
  async (c, next) => {
    if (c.req.header("upgrade")?.toLowerCase() !== "websocket") {
      throw new ApiError("bad_request", "/api/v1/events is a WebSocket: connect with 'Upgrade: websocket'");
    }
    const since = sinceOf(c.req.query("since"));
    if (c.req.header("authorization") === undefined) return acceptWithMessageAuth(c.env, since);
    await next();
  },
  authenticate(),
  requireScope("read"),
  async (c) => openOnOrg(c.env, c.get("identity"), sinceOf(c.req.query("since"))),
);
