import { z } from "zod";
import type { JsonObject } from "./json.ts";
import { type JobCancel, JobCancelSchema, type JobDispatch, JobDispatchSchema, ReportMessage, ReturnMessage } from "./jobs.ts";
import {
  type TaskStart,
  TaskStartSchema,
  type TaskStop,
  TaskStopSchema,
  TaskInventoryMessage,
  TaskLogsMessage,
  TaskStatusMessage,
} from "./deployments.ts";
import { Facts, NodeId } from "./nodes.ts";
import { type StatesUpdate, StatesUpdateSchema } from "./states.ts";

/**
 * Messages on the agent's WebSocket. Every message is a JSON text frame with a
 * `type` and a protocol version `v`; changes are additive. Both sides parse with
 * these schemas and answer anything else with a typed error or a close code.
 */

export const WIRE_VERSION = 1;
/** Frames over this size close the socket with 1009. */
export const MAX_FRAME_BYTES = 1024 * 1024;

/** Heartbeats are answered by the runtime's auto-response, so idle nodes can hibernate. */
export const PING_FRAME = '{"type":"ping"}';
export const PONG_FRAME = '{"type":"pong"}';

export const CLOSE = {
  normal: 1000,
  policy: 1008,
  tooBig: 1009,
  replaced: 4000,
  heartbeatTimeout: 4001,
  revoked: 4003,
} as const;

// ---- agent → control plane ----

/** `nodeId` is optional; if present it must name the socket's own node, or the message is dropped. */
const fromAgent = { v: z.literal(WIRE_VERSION), nodeId: NodeId.optional() };

export const FactsMessage = z.object({ type: z.literal("facts"), ...fromAgent, facts: Facts }).strict();
export const AckMessage = z
  .object({ type: z.literal("ack"), ...fromAgent, ids: z.array(z.string().min(1).max(128)).min(1).max(1000) })
  .strict();

export const AgentMessage = z.discriminatedUnion("type", [
  FactsMessage,
  AckMessage,
  ReturnMessage,
  ReportMessage,
  TaskStatusMessage,
  TaskInventoryMessage,
  TaskLogsMessage,
]);
export type AgentMessage = z.infer<typeof AgentMessage>;

// ---- control plane → agent ----

export const SettingsUpdate = z
  .object({
    kind: z.literal("settings.update"),
    /** Content hash of `settings`, so the agent can skip a snapshot it already has. */
    version: z.string(),
    settings: z.record(z.string(), z.json()),
  })
  .strict();
/** Declared by hand: the inferred recursive JSON type is too deep for the RPC stub types. */
export interface SettingsUpdate {
  kind: "settings.update";
  version: string;
  settings: JsonObject;
}

/** Every action kind, typed by hand for the RPC-facing code (see SettingsUpdate). */
export type OutboxAction = SettingsUpdate | JobDispatch | JobCancel | StatesUpdate | TaskStart | TaskStop;

/** Actions are persisted in the node's outbox and resent until the agent acks their id. */
export const ActionBody = z.discriminatedUnion("kind", [
  SettingsUpdate,
  JobDispatchSchema,
  JobCancelSchema,
  StatesUpdateSchema,
  TaskStartSchema,
  TaskStopSchema,
]);
export type ActionBody = z.infer<typeof ActionBody>;

export const ActionMessage = z
  .object({ type: z.literal("action"), v: z.literal(WIRE_VERSION), id: z.string(), sentAt: z.string(), action: z.json() })
  .strict();
export type ActionMessage = z.infer<typeof ActionMessage>;

export const WelcomeMessage = z
  .object({
    type: z.literal("welcome"),
    v: z.literal(WIRE_VERSION),
    org: z.string(),
    nodeId: NodeId,
    heartbeatSeconds: z.number().int().positive(),
    serverTime: z.string(),
  })
  .strict();
export type WelcomeMessage = z.infer<typeof WelcomeMessage>;

export const WIRE_ERROR_CODES = [
  "invalid_json",
  "invalid_message",
  "unknown_type",
  "identity_mismatch",
  "frame_too_large",
  "unsupported_version",
] as const;
export type WireErrorCode = (typeof WIRE_ERROR_CODES)[number];

export const ErrorMessage = z
  .object({ type: z.literal("error"), v: z.literal(WIRE_VERSION), code: z.enum(WIRE_ERROR_CODES), message: z.string() })
  .strict();
export type ErrorMessage = z.infer<typeof ErrorMessage>;

/** Acknowledges agent messages that carry an `id` (queued in the agent's outbox) once they are stored. */
export const ServerAckMessage = z
  .object({ type: z.literal("ack"), v: z.literal(WIRE_VERSION), ids: z.array(z.string()).min(1) })
  .strict();

export const ServerMessage = z.discriminatedUnion("type", [WelcomeMessage, ActionMessage, ErrorMessage, ServerAckMessage]);
export type ServerMessage = z.infer<typeof ServerMessage>;

/** Canonical JSON (sorted keys) so equal settings hash equally on both sides. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}
