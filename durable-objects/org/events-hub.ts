import type { OrgEvent, EventsServerMessage } from "../../protocol/events.ts";
import type { EventStore } from "./events.ts";

/** Header the API Worker sets on the upgrade it forwards, once it has authenticated the caller. */
export const EVENTS_IDENTITY_HEADER = "x-zectre-events-identity";

/** Kept on each socket so it survives hibernation: which token opened it. */
export interface SubscriberAttachment {
  tokenId: string;
  tokenName: string;
}

const SUBSCRIBER_TAG = "events";
const tokenTag = (tokenId: string) => `token:${tokenId}`;

function send(ws: WebSocket, message: EventsServerMessage): void {
  try {
    ws.send(JSON.stringify(message));
  } catch {
    // A socket closing under us gets its close handler; nothing to do here.
  }
}

function parseIdentity(header: string | null): SubscriberAttachment | null {
  if (!header) return null;
  try {
    const value = JSON.parse(header) as Partial<SubscriberAttachment>;
    return typeof value.tokenId === "string" && typeof value.tokenName === "string" ? { tokenId: value.tokenId, tokenName: value.tokenName } : null;
  } catch {
    return null;
  }
}

/**
 * Live subscribers of the org's events, on hibernatable WebSockets: the object may
 * be evicted between events and the sockets stay open. Only the API Worker reaches
 * the object's fetch, and it forwards an upgrade only after authenticating the token.
 */
export class EventsHub {
  private readonly ctx: DurableObjectState;
  private readonly store: EventStore;

  constructor(ctx: DurableObjectState, store: EventStore) {
    this.ctx = ctx;
    this.store = store;
  }

  /** `ready`, then the backlog after `since`, then (from broadcast) live events; no await between, so nothing slips in. */
  accept(request: Request): Response {
    const identity = parseIdentity(request.headers.get(EVENTS_IDENTITY_HEADER));
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket" || !identity) {
      return Response.json({ error: { code: "bad_request", message: "expected an authenticated WebSocket upgrade" } }, { status: 400 });
    }
    const since = new URL(request.url).searchParams.get("since");
    const { 0: client, 1: server } = new WebSocketPair();
    this.ctx.acceptWebSocket(server, [SUBSCRIBER_TAG, tokenTag(identity.tokenId)]);
    server.serializeAttachment(identity satisfies SubscriberAttachment);
    send(server, { type: "ready", last: this.store.lastId() });
    if (since !== null) for (const event of this.store.after(Number(since) || 0)) send(server, { type: "event", event });
    return new Response(null, { status: 101, webSocket: client });
  }

  broadcast(events: readonly OrgEvent[]): void {
    if (events.length === 0) return;
    for (const ws of this.ctx.getWebSockets(SUBSCRIBER_TAG)) {
      for (const event of events) send(ws, { type: "event", event });
    }
  }

  /** A revoked token's subscriptions end at once, as its next request would fail. */
  closeToken(tokenId: string, code: number, reason: string): void {
    for (const ws of this.ctx.getWebSockets(tokenTag(tokenId))) {
      try {
        ws.close(code, reason);
      } catch {
        // already closing
      }
    }
  }

  /** Subscribers send nothing after auth (the Worker consumed it); the other end closing is answered in kind. */
  closed(ws: WebSocket, code: number, reason: string): void {
    try {
      ws.close(code === 1005 || code === 1006 ? 1000 : code, reason);
    } catch {
      // already closed
    }
  }
}
