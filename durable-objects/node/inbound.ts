import { AgentMessage, MAX_FRAME_BYTES, type WireErrorCode } from "../../protocol/agent-wire.ts";

export type Inbound =
  | { ok: true; message: AgentMessage }
  | { ok: false; code: WireErrorCode; message: string; close?: number };

const KNOWN_TYPES: ReadonlySet<string> = new Set(AgentMessage.options.map((option) => option.shape.type.value));

/** Parses one frame from an agent; everything that is not an allowlisted message becomes a typed error. */
export function parseInbound(frame: string | ArrayBuffer, socketNodeId: string): Inbound {
  if (typeof frame === "string" ? textTooLarge(frame) : frame.byteLength > MAX_FRAME_BYTES) {
    return { ok: false, code: "frame_too_large", message: `frames are limited to ${MAX_FRAME_BYTES} bytes`, close: 1009 };
  }
  if (typeof frame !== "string") return { ok: false, code: "invalid_message", message: "binary frames are not part of the protocol" };
  let value: unknown;
  try {
    value = JSON.parse(frame);
  } catch {
    return { ok: false, code: "invalid_json", message: "frame is not valid JSON" };
  }
  const type = typeof value === "object" && value !== null ? (value as { type?: unknown }).type : undefined;
  if (typeof type !== "string" || !KNOWN_TYPES.has(type)) {
    return { ok: false, code: "unknown_type", message: `unknown message type '${String(type)}'` };
  }
  const parsed = AgentMessage.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? `${issue.path.map(String).join(".")}: ` : "";
    return { ok: false, code: "invalid_message", message: `invalid '${type}' message: ${where}${issue?.message ?? "invalid"}` };
  }
  if (parsed.data.nodeId !== undefined && parsed.data.nodeId !== socketNodeId) {
    return { ok: false, code: "identity_mismatch", message: "message names another node; dropped" };
  }
  return { ok: true, message: parsed.data };
}

const encoder = new TextEncoder();

/** UTF-8 takes at most 3 bytes per UTF-16 unit, so short frames (nearly all) need no encoding to be measured. */
function textTooLarge(text: string): boolean {
  return text.length * 3 > MAX_FRAME_BYTES && encoder.encode(text).byteLength > MAX_FRAME_BYTES;
}
