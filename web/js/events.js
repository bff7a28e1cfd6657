// @ts-check
/**
 * The org's one live event stream (`GET /api/v1/events`, WebSocket). The token goes in the first message,
 * never the URL; after a drop it reconnects with the last id seen so nothing still kept is missed.
 */

/** @typedef {{ id: number, ts: string, type: string, data: Record<string, unknown> }} OrgEvent */
/** @typedef {"connecting" | "live" | "offline"} SocketState */

const BAD_TOKEN = 4001;
/** The token is valid but may not read events: retrying cannot help either. */
const FORBIDDEN = 4003;
const MAX_BACKOFF_MS = 30_000;

export class EventsSocket {
  /**
   * @param {string} token
   * @param {{ onEvent: (event: OrgEvent) => void, onState: (state: SocketState) => void, onBadToken: (code: number) => void }} handlers
   */
  constructor(token, handlers) {
    this.token = token;
    this.handlers = handlers;
    /** @type {number | null} */
    this.lastId = null;
    this.failures = 0;
    this.stopped = false;
    /** @type {WebSocket | null} */
    this.socket = null;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.retryTimer = null;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.socket?.close(1000, "signed out");
    this.socket = null;
  }

  connect() {
    this.handlers.onState("connecting");
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const since = this.lastId === null ? "" : `?since=${this.lastId}`;
    const socket = new WebSocket(`${scheme}//${location.host}/api/v1/events${since}`);
    this.socket = socket;
    socket.addEventListener("open", () => socket.send(JSON.stringify({ type: "auth", token: this.token })));
    socket.addEventListener("message", (message) => this.receive(message.data));
    socket.addEventListener("close", (close) => this.closed(socket, close.code));
  }

  /** @param {unknown} raw */
  receive(raw) {
    if (typeof raw !== "string") return;
    /** @type {{ type?: unknown, last?: unknown, event?: OrgEvent }} */
    let message;
    try {
      message = JSON.parse(raw);
    } catch {
      return;
    }
    if (message.type === "ready") {
      this.failures = 0;
      // A first connection starts from now; a reconnect keeps its place and receives the backlog after it.
      if (this.lastId === null && typeof message.last === "number") this.lastId = message.last;
      this.handlers.onState("live");
    } else if (message.type === "event" && message.event && typeof message.event.id === "number") {
      if (this.lastId !== null && message.event.id <= this.lastId) return;
      this.lastId = message.event.id;
      this.handlers.onEvent(message.event);
    }
  }

  /**
   * @param {WebSocket} socket
   * @param {number} code
   */
  closed(socket, code) {
    if (socket !== this.socket || this.stopped) return;
    this.socket = null;
    if (code === BAD_TOKEN || code === FORBIDDEN) {
      this.handlers.onBadToken(code);
      return;
    }
    this.handlers.onState("offline");
    this.failures++;
    // Full jitter: many dashboards dropped at once do not come back in step.
    const delay = Math.random() * Math.min(MAX_BACKOFF_MS, 500 * 2 ** this.failures);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
}
