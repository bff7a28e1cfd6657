import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import {
  decodeFrame,
  encodeFrame,
  FRAME,
  isFrameError,
  OpenPayload,
  parseJsonPayload,
  responseFrame,
  type TunnelFrame,
} from "../../protocol/tunnel.ts";
import { challenge, connectRaw, enroll, enrollmentToken, makeAgent } from "./agent-helpers.ts";
import { nodeStub } from "../../durable-objects/env.ts";

/** A test agent that speaks the tunnel: its binary frames are decoded, its JSON messages kept apart. */
export interface TunnelAgent {
  ws: WebSocket;
  nodeId: string;
  messages: Array<Record<string, unknown>>;
  frames: TunnelFrame[];
  closed: Promise<void>;
  /** The next frame (optionally of a type and stream) at or after index `from`. */
  frame(type: number, streamId?: number, from?: number): Promise<TunnelFrame>;
  send(frame: Uint8Array): void;
}

export async function tunnelAgent(adminToken: string, org: string, nodeId: string): Promise<TunnelAgent> {
  const agent = await makeAgent(nodeId);
  const enrolled = await enroll(agent, await enrollmentToken(adminToken, { autoApprove: true }));
  if (enrolled.status !== 201) throw new Error(`enroll: ${JSON.stringify(enrolled.body)}`);
  const ch = await challenge(org, nodeId);
  const res = await connectRaw(org, nodeId, ch.body.nonce, await agent.sign(org, ch.body.nonce));
  const ws = res.webSocket;
  if (res.status !== 101 || !ws) throw new Error(`connect: ${res.status}`);
  ws.accept();
  ws.binaryType = "arraybuffer";
  const messages: Array<Record<string, unknown>> = [];
  const frames: TunnelFrame[] = [];
  ws.addEventListener("message", (event) => {
    if (typeof event.data === "string") messages.push(JSON.parse(event.data) as Record<string, unknown>);
    else {
      const frame = decodeFrame(new Uint8Array(event.data));
      if (!isFrameError(frame)) frames.push({ ...frame, payload: frame.payload.slice() });
    }
  });
  const closed = new Promise<void>((resolve) => ws.addEventListener("close", () => resolve()));
  for (let i = 0; i < 200 && !messages.some((m) => m.type === "welcome"); i++) await new Promise((r) => setTimeout(r, 10));
  return {
    ws,
    nodeId,
    messages,
    frames,
    closed,
    async frame(type, streamId, from = 0) {
      for (let i = 0; i < 300; i++) {
        const found = frames.slice(from).find((f) => f.type === type && (streamId === undefined || f.streamId === streamId));
        if (found) return found;
        await new Promise((r) => setTimeout(r, 10));
      }
      throw new Error(`no frame of type ${type}; got types ${frames.map((f) => f.type).join(",")}`);
    },
    send(frame) {
      ws.send(frame);
    },
  };
}

export function nodeObject(org: string, nodeId: string) {
  return nodeStub(env, org, nodeId);
}

/** Makes the node object know a task, as startTask would (without sending an action). */
export async function knowTask(org: string, nodeId: string, taskId: string, app: string): Promise<void> {
  await runInDurableObject(nodeObject(org, nodeId), (_instance, state) => {
    state.storage.sql.exec("INSERT INTO tasks (task_id, app) VALUES (?, ?) ON CONFLICT (task_id) DO NOTHING", taskId, app);
  });
}

export function openOf(frame: TunnelFrame): OpenPayload {
  const open = parseJsonPayload(OpenPayload, frame.payload);
  if (!open) throw new Error("malformed OPEN");
  return open;
}

/** Answers an OPEN like a tiny app: status, headers, then the body in one DATA and END. */
export function answer(agent: TunnelAgent, streamId: number, status: number, body: string, headers: Array<[string, string]> = []): void {
  agent.send(responseFrame(streamId, { status, headers }));
  if (body !== "") agent.send(encodeFrame(FRAME.data, streamId, new TextEncoder().encode(body)));
  agent.send(encodeFrame(FRAME.end, streamId));
}
