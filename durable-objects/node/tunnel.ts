import {
  decodeFrame,
  endToEndHeaders,
  isFrameError,
  MAX_STREAM_ID,
  type OpenPayload,
  parseTunnelRequestUrl,
} from "../../protocol/tunnel.ts";
import { log } from "../../workers/lib/log.ts";
import { type StreamBytes, type TunnelStream, tunnelError } from "./tunnel-common.ts";
import { HttpTunnelStream } from "./tunnel-http.ts";
import { WsTunnelStream } from "./tunnel-ws.ts";

export interface TunnelContext {
  /** The agent's open socket, if any. */
  socket: WebSocket | null;
  /** Whether this node object sent that task of that app to its agent. */
  hasTask(taskId: string, app: string): boolean;
}

/**
 * The node object's side of the tunnel: turns the proxy's internal requests into
 * streams of frames on the agent's socket, and routes the agent's binary frames
 * back to them. Streams live in memory only: a request in flight keeps the object
 * awake, and a restart ends every stream as the agent's socket does.
 */
export class NodeTunnel {
  readonly #streams = new Map<number, TunnelStream>();
  readonly #onStreamEnd: (kind: StreamKind, bytes: StreamBytes) => void;
  #nextId = 1;

  /** `onStreamEnd` hears once per finished stream what it carried (the node object's metrics); never per chunk. */
  constructor(onStreamEnd: (kind: StreamKind, bytes: StreamBytes) => void = () => {}) {
    this.#onStreamEnd = onStreamEnd;
  }

  get openStreams(): number {
    return this.#streams.size;
  }

  async fetch(request: Request, context: TunnelContext): Promise<Response> {
    const target = parseTunnelRequestUrl(new URL(request.url));
    if (!target) return tunnelError("protocol", "malformed tunnel request");
    if (!context.hasTask(target.taskId, target.app)) {
      return tunnelError("unknown_task", `task ${target.taskId} of app ${target.app} was never placed on this node`);
    }
    const socket = context.socket;
    if (!socket) return tunnelError("offline", "the task's node has no agent connected");
    const upgrade = request.headers.get("upgrade")?.toLowerCase() === "websocket";
    const open: OpenPayload = {
      method: request.method,
      path: target.path,
      headers: endToEndHeaders(request.headers),
      taskId: target.taskId,
      port: target.port,
      ...(upgrade ? { upgrade: "websocket" as const } : {}),
    };
    const id = this.#allocate();
    const done = () => {
      const stream = this.#streams.get(id);
      this.#streams.delete(id);
      if (stream) this.#onStreamEnd(upgrade ? "websocket" : "http", stream.bytes);
    };
    if (upgrade) {
      const stream = new WsTunnelStream(id, socket, done);
      this.#streams.set(id, stream);
      return stream.start(open, target.timeoutMs);
    }
    const stream = new HttpTunnelStream(id, socket, done);
    this.#streams.set(id, stream);
    return stream.start(open, request.body, target.timeoutMs);
  }

  /**
   * A binary frame from the agent; a malformed one is answered with a typed error (returned for the caller to send).
   * Frames of streams already finished are dropped (they raced a reset).
   */
  onFrame(socket: WebSocket, data: ArrayBuffer): string | null {
    const frame = decodeFrame(data);
    if (isFrameError(frame)) {
      log("warn", "node", "dropped a malformed tunnel frame", { error: frame.error });
      return `malformed tunnel frame: ${frame.error}`;
    }
    const stream = this.#streams.get(frame.streamId);
    if (stream && stream.socket === socket) stream.onFrame(frame);
    return null;
  }

  /** Every stream on that socket fails: responses in flight abort rather than end short. */
  socketClosed(socket: WebSocket, reason = "the agent disconnected"): void {
    for (const stream of [...this.#streams.values()]) if (stream.socket === socket) stream.abort(reason);
  }

  #allocate(): number {
    do {
      this.#nextId = this.#nextId >= MAX_STREAM_ID ? 1 : this.#nextId + 1;
    } while (this.#streams.has(this.#nextId));
    return this.#nextId;
  }
}

export type StreamKind = "http" | "websocket";

export function isTunnelRequest(request: Request): boolean {
  return parseTunnelRequestUrl(new URL(request.url)) !== null;
}
