import {
  decodeFrame,
  FRAME,
  isFrameError,
  OpenPayload,
  parseJsonPayload,
  resetFrame,
  type TunnelFrame,
} from "../../../protocol/tunnel.ts";
import type { Logger } from "../log.ts";
import { AgentHttpStream } from "./http-stream.ts";
import { AgentWsStream } from "./ws-stream.ts";

/**
 * The agent's side of the tunnel: the node object opens streams on the agent's
 * WebSocket, and each becomes a request to <task host>:<port> of one of this
 * agent's tasks (127.0.0.1 unless tasks bind elsewhere; never another host,
 * never a port no task runs on), with bodies
 * and WebSocket messages relayed both ways under the same credit rules.
 */

export interface TunnelOptions {
  /** Sends one binary frame on the agent's socket; false when it is not connected. */
  readonly send: (frame: Uint8Array) => boolean;
  /** Whether `port` is the host port of task `taskId`, and that task runs on this agent. */
  readonly allows: (taskId: string, port: number) => boolean;
  readonly logger: Logger;
  /** Where this agent's tasks listen, as the agent reaches them (default 127.0.0.1). */
  readonly taskHost?: string;
}

export interface AgentStream {
  onFrame(frame: TunnelFrame): void;
  /** The socket to the node object is gone: the local side is torn down. */
  destroy(): void;
}

/** What a stream needs from its tunnel. */
export interface StreamContext {
  readonly id: number;
  readonly send: (frame: Uint8Array) => boolean;
  readonly logger: Logger;
  /** Called once the stream is over, so later frames for its id are dropped. */
  readonly done: () => void;
  /** The host every stream connects to: this agent's own tasks' address, never one from the frame. */
  readonly taskHost: string;
}

export class AgentTunnel {
  readonly #options: TunnelOptions;
  readonly #streams = new Map<number, AgentStream>();

  constructor(options: TunnelOptions) {
    this.#options = options;
  }

  get openStreams(): number {
    return this.#streams.size;
  }

  /** One binary message from the node object. */
  handleFrame(data: Uint8Array): void {
    const frame = decodeFrame(data);
    if (isFrameError(frame)) {
      this.#options.logger.warn("dropped a malformed tunnel frame", { error: frame.error });
      return;
    }
    if (frame.type === FRAME.open) return this.#open(frame);
    // Frames for a stream that is already over raced its end: nothing to do.
    this.#streams.get(frame.streamId)?.onFrame(frame);
  }

  /** The connection dropped: every stream ends (the node object fails its side the same way). */
  closeAll(): void {
    for (const stream of [...this.#streams.values()]) stream.destroy();
    this.#streams.clear();
  }

  #open(frame: TunnelFrame): void {
    const id = frame.streamId;
    const refuse = (code: "refused" | "protocol", message: string) => {
      this.#options.logger.warn("refused a tunnel request", { streamId: id, code, message });
      this.#options.send(resetFrame(id, code, message));
    };
    if (this.#streams.has(id)) return refuse("protocol", `stream ${id} is already open`);
    const open = parseJsonPayload(OpenPayload, frame.payload);
    if (!open) return refuse("protocol", "malformed OPEN");
    if (!this.#options.allows(open.taskId, open.port)) {
      return refuse("refused", `port ${open.port} is not the port of a task this agent runs as ${open.taskId}`);
    }
    const context: StreamContext = {
      id,
      send: this.#options.send,
      logger: this.#options.logger,
      done: () => this.#streams.delete(id),
      taskHost: this.#options.taskHost ?? "127.0.0.1",
    };
    const stream = open.upgrade === "websocket" ? new AgentWsStream(context, open) : new AgentHttpStream(context, open);
    this.#streams.set(id, stream);
  }
}
