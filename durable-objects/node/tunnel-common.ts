import { resetFrame, TUNNEL_ERROR_HEADER, TUNNEL_ERRORS, type TunnelErrorCode, type TunnelFrame } from "../../protocol/tunnel.ts";

/** One proxied request or WebSocket over the agent's socket. */
export interface TunnelStream {
  readonly socket: WebSocket;
  /** Body or message bytes carried so far each way, for the tunnel's metrics. */
  readonly bytes: StreamBytes;
  onFrame(frame: TunnelFrame): void;
  /** The agent's socket is gone: the stream fails without telling the agent. */
  abort(reason: string): void;
}

/** An answer the tunnel made itself, typed by the header so the proxy can retry or pick its page. */
export function tunnelError(code: TunnelErrorCode, message: string): Response {
  return Response.json(
    { error: { code: code === "timeout" ? "timeout" : "unavailable", message } },
    { status: TUNNEL_ERRORS[code], headers: { [TUNNEL_ERROR_HEADER]: code } },
  );
}

/** Sends a frame unless the socket is already closed (its close handler cleans up). */
export function sendFrame(socket: WebSocket, frame: Uint8Array): boolean {
  if (socket.readyState !== WebSocket.OPEN) return false;
  try {
    socket.send(frame);
    return true;
  } catch {
    return false;
  }
}

export function sendReset(socket: WebSocket, id: number, code: Parameters<typeof resetFrame>[1], message: string): void {
  sendFrame(socket, resetFrame(id, code, message));
}

/** Payload bytes a stream carried (frame headers and heads not included). */
export interface StreamBytes {
  toAgent: number;
  fromAgent: number;
}
