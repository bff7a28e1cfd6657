import type { IncomingMessage } from "node:http";
import WebSocket, { type RawData } from "ws";
import {
  encodeFrame,
  FRAME,
  MAX_WS_MESSAGE_BYTES,
  type OpenPayload,
  parseWsClose,
  parseWsMessage,
  resetFrame,
  responseFrame,
  textOf,
  type TunnelFrame,
  wsCloseFrame,
  wsMessageFrame,
} from "../../../protocol/tunnel.ts";
import { messageOf } from "../state/files.ts";
import type { AgentStream, StreamContext } from "./tunnel.ts";

/** The client's handshake fields that belong to its own hop; the agent's ws client makes its own. */
const HANDSHAKE_FIELDS: ReadonlySet<string> = new Set(["sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol", "host"]);
/** Close codes that may not be sent in a close frame. */
const RESERVED_CLOSE_CODES: ReadonlySet<number> = new Set([1004, 1005, 1006, 1015]);

/** A tunnelled WebSocket: a `ws` client to ws://<task host>:<port><path>, relaying messages both ways. */
export class AgentWsStream implements AgentStream {
  readonly #ctx: StreamContext;
  readonly #socket: WebSocket;
  #over = false;

  constructor(ctx: StreamContext, open: OpenPayload) {
    this.#ctx = ctx;
    const protocols = open.headers.find(([name]) => name === "sec-websocket-protocol")?.[1].split(",").map((p) => p.trim()).filter((p) => p !== "");
    const headers = Object.fromEntries(open.headers.filter(([name]) => !HANDSHAKE_FIELDS.has(name)));
    const host = open.headers.find(([name]) => name === "host")?.[1];
    const taskHost = ctx.taskHost.includes(":") ? `[${ctx.taskHost}]` : ctx.taskHost;
    this.#socket = new WebSocket(`ws://${taskHost}:${open.port}${open.path}`, protocols ?? [], {
      headers: { ...headers, ...(host ? { host } : {}) },
      maxPayload: MAX_WS_MESSAGE_BYTES,
      followRedirects: false,
    });
    this.#socket.on("open", () => {
      const agreed = this.#socket.protocol;
      ctx.send(responseFrame(ctx.id, { status: 101, headers: agreed ? [["sec-websocket-protocol", agreed]] : [] }));
    });
    this.#socket.on("unexpected-response", (_request, response: IncomingMessage) => {
      // The app answered the upgrade with a plain response: that status goes back, without a body.
      ctx.send(responseFrame(ctx.id, { status: response.statusCode ?? 502, headers: [] }));
      ctx.send(encodeFrame(FRAME.end, ctx.id));
      response.resume();
      this.#finish();
      this.#socket.terminate();
    });
    this.#socket.on("message", (data: RawData, isBinary: boolean) => {
      const bytes = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      ctx.send(wsMessageFrame(ctx.id, isBinary ? bytes : bytes.toString("utf8")));
    });
    this.#socket.on("close", (code: number, reason: Buffer) => {
      if (this.#over) return;
      ctx.send(wsCloseFrame(ctx.id, RESERVED_CLOSE_CODES.has(code) ? 1000 : code, reason.toString("utf8")));
      this.#finish();
    });
    this.#socket.on("error", (error) => {
      if (this.#over) return;
      if (this.#socket.readyState === WebSocket.CONNECTING || this.#socket.readyState === WebSocket.CLOSED) {
        ctx.send(resetFrame(ctx.id, "connect_failed", `could not open a WebSocket to the task on port ${open.port}: ${messageOf(error)}`));
      } else {
        ctx.send(wsCloseFrame(ctx.id, 1011, "the app's socket failed"));
      }
      this.#finish();
    });
  }

  onFrame(frame: TunnelFrame): void {
    switch (frame.type) {
      case FRAME.wsMessage: {
        const message = parseWsMessage(frame.payload);
        if (message && this.#socket.readyState === WebSocket.OPEN) {
          this.#socket.send(message.binary ? Buffer.from(message.data) : textOf(message.data), { binary: message.binary });
        }
        return;
      }
      case FRAME.wsClose: {
        const close = parseWsClose(frame.payload);
        this.#finish();
        try {
          this.#socket.close(close && !RESERVED_CLOSE_CODES.has(close.code) ? close.code : 1000, close?.reason ?? "");
        } catch {
          // Not open yet, or a code ws will not send: the socket just goes.
          this.#socket.terminate();
        }
        return;
      }
      case FRAME.reset:
        this.destroy();
        return;
      default:
        return;
    }
  }

  destroy(): void {
    this.#finish();
    this.#socket.terminate();
  }

  #finish(): void {
    if (this.#over) return;
    this.#over = true;
    this.#ctx.done();
  }
}
