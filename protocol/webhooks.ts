import { z } from "zod";
import { toBase64Url } from "./base64url.ts";

/**
 * Webhooks: subscriptions to control-plane events, delivered as signed HTTP POSTs.
 * Shared by the API, the WebhookObject and the CLI.
 */

// ---- events ----

/** What an app's deployments publish: to webhooks and to the org event stream alike. */
export const DEPLOY_EVENT_TYPES = [
  "deploy.created",
  "deploy.healthy",
  "deploy.failed",
  "deploy.promoted",
  "deploy.rolled_back",
  "deploy.scaled",
  "deploy.idle",
  "deploy.woken",
] as const;

/**
 * Every event type that is published. A subscription pattern must match at least one,
 * so a typo such as `jobs.*` is refused instead of silently never firing.
 * New events are added here when something starts publishing them.
 */
export const EVENT_TYPES = ["job.finished", ...DEPLOY_EVENT_TYPES, "webhook.test"] as const;

/** Dotted lowercase names: `job.finished`, `deploy.rolled_back`. */
export const EVENT_TYPE_PATTERN = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$/;

/** Segments are names or a lone `*`. */
const EVENT_GLOB_PATTERN = /^(\*|[a-z][a-z0-9_]*)(\.(\*|[a-z][a-z0-9_]*))*$/;

export const MAX_PATTERNS = 20;

/**
 * Whether `type` matches the glob `pattern`. A `*` segment matches exactly one segment,
 * except as the last one, where it matches the rest: `*` matches everything,
 * `job.*` matches `job.finished`, `*.failed` matches `deploy.failed`.
 */
export function eventMatches(pattern: string, type: string): boolean {
  const want = pattern.split(".");
  const have = type.split(".");
  for (let i = 0; i < want.length; i++) {
    const segment = want[i] as string;
    const last = i === want.length - 1;
    if (segment === "*" && last) return have.length > i;
    if (i >= have.length || (segment !== "*" && segment !== have[i])) return false;
  }
  return want.length === have.length;
}

export function matchesAny(patterns: readonly string[], type: string): boolean {
  return patterns.some((pattern) => eventMatches(pattern, type));
}

/** The problem with one pattern, or null when it is usable. */
export function eventPatternProblem(pattern: string): string | null {
  if (!EVENT_GLOB_PATTERN.test(pattern)) {
    return `event pattern '${pattern}' is not valid: use dotted lowercase names and '*' segments, e.g. job.*, deploy.promoted, *`;
  }
  if (!EVENT_TYPES.some((type) => eventMatches(pattern, type))) {
    return `event pattern '${pattern}' matches no event; events are ${EVENT_TYPES.join(", ")}`;
  }
  return null;
}

// ---- target URLs ----

export const MAX_URL_LENGTH = 2048;

/**
 * The problem with a webhook URL, or null. Deliveries leave from the control plane,
 * so unless `allowPrivate` (local development) a URL may not name loopback, private,
 * link-local or otherwise internal addresses: that would let a tenant probe the
 * network the control plane runs in (SSRF). Names are checked as written; a public
 * name that resolves to a private address is stopped by the platform, which cannot
 * reach private networks from Workers.
 */
export function webhookUrlProblem(raw: string, allowPrivate: boolean): string | null {
  if (raw.length > MAX_URL_LENGTH) return `the URL is longer than ${MAX_URL_LENGTH} characters`;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return `'${raw}' is not a URL`;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return `webhook URLs are http or https, not ${url.protocol.slice(0, -1)}`;
  if (url.username !== "" || url.password !== "") return "webhook URLs may not carry credentials; put a token in the path or query instead";
  if (url.hash !== "") return "webhook URLs may not have a #fragment";
  if (!allowPrivate && isInternalHost(url.hostname)) {
    return `${url.hostname} is a loopback, private or link-local address; webhooks go to public hosts only`;
  }
  return null;
}

const INTERNAL_SUFFIXES = [".localhost", ".local", ".internal", ".home.arpa"];

/** `hostname` as the WHATWG URL parser leaves it: lowercase, IPv4 normalized to dotted decimal, IPv6 in brackets. */
export function isInternalHost(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/\.$/, "");
  // A single label (`intranet`) is resolved by local search domains, never publicly.
  if (host === "localhost" || (!host.includes(".") && !host.startsWith("["))) return true;
  if (INTERNAL_SUFFIXES.some((suffix) => host.endsWith(suffix))) return true;
  if (host.startsWith("[")) return isInternalIpv6(host.slice(1, -1));
  const v4 = parseIpv4(host);
  return v4 !== null && isInternalIpv4(v4);
}

function parseIpv4(host: string): number[] | null {
  const match = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  if (!match) return null;
  const octets = match.slice(1).map(Number);
  return octets.every((o) => o <= 255) ? octets : null;
}

function isInternalIpv4([a = 0, b = 0, c = 0]: readonly number[]): boolean {
  return (
    a === 0 || // "this network"
    a === 10 ||
    a === 127 ||
    (a === 100 && b >= 64 && b <= 127) || // carrier-grade NAT
    (a === 169 && b === 254) || // link-local, cloud metadata
    (a === 172 && b >= 16 && b <= 31) ||
    (a === 192 && b === 168) ||
    (a === 192 && b === 0 && c === 0) || // IETF protocol assignments
    (a === 198 && (b === 18 || b === 19)) || // benchmarking
    a >= 224 // multicast, reserved, broadcast
  );
}

function isInternalIpv6(address: string): boolean {
  const lower = address.toLowerCase();
  if (lower === "::" || lower === "::1") return true;
  // IPv4-mapped (::ffff:a.b.c.d, which the URL parser writes as ::ffff:xxxx:xxxx) and NAT64 carry an IPv4 address.
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(lower);
  if (mapped) {
    const high = Number.parseInt(mapped[1] as string, 16);
    const low = Number.parseInt(mapped[2] as string, 16);
    return isInternalIpv4([high >> 8, high & 255, low >> 8, low & 255]);
  }
  const first = Number.parseInt(lower.split(":")[0] || "0", 16);
  return (
    (first & 0xfe00) === 0xfc00 || // unique local fc00::/7
    (first & 0xffc0) === 0xfe80 || // link-local fe80::/10
    (first & 0xff00) === 0xff00 // multicast
  );
}

// ---- ids and secrets ----

export const WEBHOOK_ID_PATTERN = /^wh_[a-z0-9]{12}$/;
export const DELIVERY_ID_PATTERN = /^whd_[a-z0-9]{16}$/;
export const SIGNING_SECRET_PREFIX = "whsec_";

function randomAlphanumeric(length: number): string {
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  return Array.from(bytes, (b) => (b % 36).toString(36)).join("");
}

export function newWebhookId(): string {
  return `wh_${randomAlphanumeric(12)}`;
}

export function newDeliveryId(): string {
  return `whd_${randomAlphanumeric(16)}`;
}

export function newEventId(): string {
  return `evt_${randomAlphanumeric(16)}`;
}

/** 32 random bytes: as strong as the HMAC-SHA256 key it becomes. */
export function newSigningSecret(): string {
  return `${SIGNING_SECRET_PREFIX}${toBase64Url(crypto.getRandomValues(new Uint8Array(32)))}`;
}

// ---- signatures ----

export const SIGNATURE_VERSION = "v1";

/**
 * `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`. The key is the whole secret string
 * (prefix included) as UTF-8, so a receiver can use it as it was shown. The timestamp is
 * signed too, so a receiver can refuse old deliveries replayed later.
 */
export async function signPayload(secret: string, timestamp: number, body: string): Promise<string> {
  const encoder = new TextEncoder();
  const key = await crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, encoder.encode(`${timestamp}.${body}`)));
  return `${SIGNATURE_VERSION}=${Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** Header names of a delivery. */
export const DELIVERY_HEADERS = {
  webhook: "zectre-webhook-id",
  event: "zectre-event",
  delivery: "zectre-delivery",
  timestamp: "zectre-timestamp",
  signature: "zectre-signature",
} as const;

// ---- API bodies and records ----

export const CreateWebhookBody = z
  .object({
    url: z.string().min(1).max(MAX_URL_LENGTH),
    events: z.array(z.string().max(128)).min(1, "give at least one event pattern").max(MAX_PATTERNS),
  })
  .strict()
  .superRefine((body, ctx) => {
    // Private hosts depend on the deployment's settings, so the route checks those; the shape is checked here.
    const urlProblem = webhookUrlProblem(body.url, true);
    if (urlProblem) ctx.addIssue({ code: "custom", path: ["url"], message: urlProblem });
    body.events.forEach((pattern, i) => {
      const problem = eventPatternProblem(pattern);
      if (problem) ctx.addIssue({ code: "custom", path: ["events", i], message: problem });
    });
  });
export type CreateWebhookBody = z.infer<typeof CreateWebhookBody>;

/** A subscription as the API shows it; the signing secret is never part of it. */
export interface WebhookRecord {
  id: string;
  url: string;
  events: string[];
  createdAt: string;
  createdBy: string;
  enabled: boolean;
}

/** `POST /api/v1/webhooks`: the only answer that carries the signing secret. */
export interface CreatedWebhook {
  webhook: WebhookRecord;
  secret: string;
}

/** What is POSTed to the receiver, byte for byte the same on every attempt of a delivery. */
export interface WebhookPayload {
  /** The event's id: one event sent to two webhooks has one id and two deliveries. */
  id: string;
  type: string;
  org: string;
  createdAt: string;
  data: Record<string, unknown>;
}

export const DELIVERY_STATUSES = ["pending", "delivered", "failed", "canceled"] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

export interface DeliveryAttempt {
  /** 1 for the first attempt. */
  n: number;
  at: string;
  durationMs: number;
  /** The receiver's HTTP status, or null when no answer came (see `error`). */
  statusCode: number | null;
  error: string | null;
}

export interface WebhookDeliveryRecord {
  id: string;
  webhookId: string;
  eventId: string;
  event: string;
  url: string;
  status: DeliveryStatus;
  createdAt: string;
  /** When the next attempt is due; null once delivered, failed or canceled. */
  nextAttemptAt: string | null;
  attempts: DeliveryAttempt[];
}

// ---- delivery policy ----

export const MAX_ATTEMPTS = 6;
export const DEFAULT_RETRY_BASE_SECONDS = 10;
export const RETRY_FACTOR = 4;
export const ATTEMPT_TIMEOUT_MS = 10_000;
/** Deliveries kept per org, newest first; older ones are dropped with their attempts. */
export const KEPT_DELIVERIES = 1000;

/**
 * Milliseconds to wait after failed attempt `n` (1-based): base × 4^(n-1), scaled by a
 * random factor in [0.8, 1.2) so that many deliveries failing together do not retry in lockstep.
 */
export function retryDelayMs(n: number, baseSeconds: number, random: number = Math.random()): number {
  return Math.round(baseSeconds * 1000 * RETRY_FACTOR ** (n - 1) * (0.8 + 0.4 * random));
}
