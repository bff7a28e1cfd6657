import {
  FRAME,
  MAX_WS_MESSAGE_BYTES,
  type OpenPayload,
  openFrame,
  parseJsonPayload,
  parseWsClose,
  parseWsMessage,
  ResetPayload,
  ResponsePayload,
  textOf,
  type TunnelFrame,
  wsCloseFrame,
  wsMessageFrame,
} from "../../protocol/tunnel.ts";
import { sendFrame, sendReset, type StreamBytes, type TunnelStream, tunnelError } from "./tunnel-common.ts";

/** Close codes a peer may not send in a close frame. */
const RESERVED_CLOSE_CODES: ReadonlySet<number> = new Set([1004, 1005, 1006, 1015]);

/**
 * A proxied WebSocket: once the agent's connection to the app is open (RESPONSE
 * 101), the client's socket is accepted here and messages are relayed as
 * WS_MESSAGE frames both ways. Not hibernatable (the relay needs this object in
 * memory anyway); messages are not flow-controlled, each is capped in size.
 */
export class WsTunnelStream implements TunnelStream {
  readonly socket: WebSocket;
  readonly bytes: StreamBytes = { toAgent: 0, fromAgent: 0 };
  readonly #id: number;
  readonly #done: () => void;
  #head: ((response: Response) => void) | null = null;
  #headTimer: ReturnType<typeof setTimeout> | null = null;
  #client: WebSocket | null = null;
  #finished = false;

  constructor(id: number, socket: WebSocket, done: () => void) {
    this.#id = id;
    this.socket = socket;
    this.#done = done;
  }

  start(open: OpenPayload, timeoutMs: number): Promise<Response> {
    const head = new Promise<Response>((resolve) => (this.#head = resolve));
    this.#headTimer = setTimeout(() => {
      sendReset(this.socket, this.#id, "timeout", `no upgrade within ${timeoutMs} ms`);
      this.#answer(tunnelError("timeout", `the app did not accept the WebSocket within ${Math.round(timeoutMs / 1000)} s`));
      this.#finish();
    }, timeoutMs);
    if (!sendFrame(this.socket, openFrame(this.#id, open))) {
      this.#answer(tunnelError("offline", "the task's node has no agent connected"));
      this.#finish();
    }
    return head;
  }

  onFrame(frame: TunnelFrame): void {
    switch (frame.type) {
      case FRAME.response:
        return this.#onResponse(frame.payload);
      case FRAME.wsMessage: {
        const message = parseWsMessage(frame.payload);
        if (!message || !this.#client) return this.#protocolError("malformed WS_MESSAGE or one before the upgrade");
        this.#client.send(message.binary ? message.data.slice() : textOf(message.data));
        this.bytes.fromAgent += message.data.byteLength;
        return;
      }
      case FRAME.wsClose: {
        const close = parseWsClose(frame.payload);
        this.#closeClient(close?.code ?? 1000, close?.reason ?? "");
        return this.#finish();
      }
      case FRAME.reset: {
        const reset = parseJsonPayload(ResetPayload, frame.payload);
        return this.#fail(reset?.code === "refused" || reset?.code === "connect_failed" ? reset.code : "gone", reset?.message ?? "reset by the agent");
      }
      case FRAME.end:
      case FRAME.data:
      case FRAME.credit:
        // A refused upgrade may come with a body; it is not passed on.
        return;
      default:
        return this.#protocolError(`unexpected frame type ${frame.type} on a WebSocket stream`);
    }
  }

  abort(reason: string): void {
    this.#fail("gone", reason);
  }

  #onResponse(payload: Uint8Array): void {
    const response = parseJsonPayload(ResponsePayload, payload);
    if (!response || this.#head === null) return this.#protocolError("malformed or repeated RESPONSE");
    if (response.status !== 101) {
      // The app answered the upgrade with a plain response: passed on without a body.
      this.#answer(new Response(null, { status: response.status, headers: response.headers }));
      return this.#finish();
    }
    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    server.accept();
    // Blob is the runtime's default for binary messages; frames are built from bytes.
    server.binaryType = "arraybuffer";
    this.#client = server;
    server.addEventListener("message", (event) => {
      const data = typeof event.data === "string" ? event.data : new Uint8Array(event.data);
      const size = typeof data === "string" ? data.length * 3 : data.byteLength;
      if (size > MAX_WS_MESSAGE_BYTES) {
        this.#closeClient(1009, "message too big for the tunnel");
        sendFrame(this.socket, wsCloseFrame(this.#id, 1009, "message too big"));
        return this.#finish();
      }
      if (sendFrame(this.socket, wsMessageFrame(this.#id, data))) this.bytes.toAgent += typeof data === "string" ? new TextEncoder().encode(data).byteLength : data.byteLength;
    });
    server.addEventListener("close", (event) => {
      sendFrame(this.socket, wsCloseFrame(this.#id, RESERVED_CLOSE_CODES.has(event.code) ? 1000 : event.code, event.reason));
      this.#finish();
    });
    server.addEventListener("error", () => {
      sendFrame(this.socket, wsCloseFrame(this.#id, 1011, "client socket error"));
      this.#finish();
    });
    const protocol = response.headers.find(([name]) => name === "sec-websocket-protocol")?.[1];
    this.#answer(new Response(null, { status: 101, webSocket: client, ...(protocol ? { headers: { "sec-websocket-protocol": protocol } } : {}) }));
  }

  #protocolError(message: string): void {
    sendReset(this.socket, this.#id, "protocol", message);
    this.#fail("protocol", message);
  }

  #fail(code: "refused" | "connect_failed" | "gone" | "protocol", message: string): void {
    if (this.#head !== null) this.#answer(tunnelError(code, message));
    this.#closeClient(1011, code === "gone" ? "the app's node disconnected" : message.slice(0, 100));
    this.#finish();
  }

  #closeClient(code: number, reason: string): void {
    try {
      this.#client?.close(RESERVED_CLOSE_CODES.has(code) ? 1000 : code, reason.slice(0, 120));
    } catch {
      // Already closed.
    }
  }

  #answer(response: Response): void {
    clearTimeout(this.#headTimer);
    const resolve = this.#head;
    this.#head = null;
    resolve?.(response);
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    clearTimeout(this.#headTimer);
    this.#done();
  }
}
