import { z } from "zod";
import type { JsonObject } from "./json.ts";
import { DEPLOY_EVENT_TYPES } from "./webhooks.ts";

/**
 * The org event stream (`GET /api/v1/events`, a WebSocket) and the audit log
 * (`GET /api/v1/audit`): what the dashboard and `zectre events|audit` read.
 */

export const ORG_EVENT_TYPES = [
  "node.online",
  "node.offline",
  "job.created",
  "job.return",
  "job.finished",
  ...DEPLOY_EVENT_TYPES,
  "task.state",
] as const;
export type OrgEventType = (typeof ORG_EVENT_TYPES)[number];

/** An event as a producer hands it over; the org object gives it its id. */
export interface NewOrgEvent {
  ts: string;
  type: OrgEventType;
  data: JsonObject;
}

/** `id` increases per org and is never reused, so "everything after id N" is well defined. */
export interface OrgEvent extends NewOrgEvent {
  id: number;
}

/** How many events an org keeps, and for how long at most. */
export const EVENTS_KEEP_COUNT = 10_000;
export const EVENTS_KEEP_MS = 24 * 3600 * 1000;
/** A browser has this long to send its auth message before the socket closes. */
export const EVENTS_AUTH_TIMEOUT_MS = 10_000;

/** Close codes of the event socket (4000-4999 are the application's own). */
export const EVENTS_CLOSE = {
  /** Missing, malformed, unknown, expired or revoked token, or no auth message in time. */
  unauthorized: 4001,
  /** The token is valid but lacks the `read` scope. */
  forbidden: 4003,
  /** A message that is not the one auth message. */
  badMessage: 1008,
} as const;

/** The only message a client sends: the browser's way to authenticate (tokens never go in URLs). */
export const EventsAuthMessage = z.object({ type: z.literal("auth"), token: z.string().min(1).max(512) }).strict();
export type EventsAuthMessage = z.infer<typeof EventsAuthMessage>;

/** Server → client frames. */
export type EventsServerMessage = { type: "ready"; last: number } | { type: "event"; event: OrgEvent };

/** `?since=` of the events socket: a non-negative event id. */
export function parseSinceId(raw: string | undefined): number | null {
  if (raw === undefined || raw === "") return 0;
  return /^\d{1,15}$/.test(raw) ? Number(raw) : null;
}

// ---- audit ----

export interface AuditEntry {
  id: number;
  at: string;
  /** `token:<id>(<name>)`, `operator`, `node:<id>` or `enrollment:<token id>`. */
  actor: string;
  tokenId: string | null;
  tokenName: string | null;
  /** `METHOD /route/:pattern` for API requests, e.g. `POST /apps/:app/deployments`; a dotted name for changes made by agents. */
  action: string;
  /** The ids the change named (path parameters, or the id it created). */
  target: string;
  details: Record<string, string>;
  ip: string | null;
  requestId: string | null;
  /** The HTTP status the request got; null for changes that were not API requests. */
  status: number | null;
}

/** What the audit middleware hands the org object for one request. */
export type AuditRequestRecord = Omit<AuditEntry, "id" | "at">;

export const AUDIT_LIMIT_DEFAULT = 100;
export const AUDIT_LIMIT_MAX = 1000;
