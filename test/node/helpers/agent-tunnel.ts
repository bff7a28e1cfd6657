import { Logger } from "../../../agent/src/log.ts";
import { AgentTunnel, type TunnelOptions } from "../../../agent/src/tunnel/tunnel.ts";
import { decodeFrame, isFrameError, type TunnelFrame } from "../../../protocol/tunnel.ts";

/** An agent tunnel with a quiet logger whose frames to the node object are decoded into `frames` (payloads copied). */
export function collectingTunnel(options: Omit<TunnelOptions, "send" | "logger">): { tunnel: AgentTunnel; frames: TunnelFrame[] } {
  const frames: TunnelFrame[] = [];
  const tunnel = new AgentTunnel({
    ...options,
    send: (frame) => {
      const decoded = decodeFrame(frame);
      if (!isFrameError(decoded)) frames.push({ ...decoded, payload: decoded.payload.slice() });
      return true;
    },
    logger: new Logger({ sink: () => {} }),
  });
  return { tunnel, frames };
}
