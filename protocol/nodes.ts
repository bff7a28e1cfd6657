import { z } from "zod";
import type { JsonObject, JsonValue } from "./json.ts";

/** Node identity, enrollment and directory types shared by the API, the agent and the CLI. */

export const NODE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;
export const NodeId = z
  .string()
  .max(128, "node ids are at most 128 characters")
  .regex(NODE_ID_PATTERN, "node ids start with a letter or digit and use only letters, digits, '_' and '-'");

/** Turns a host name into a valid node id: `web-1.example.com` → `web-1_example_com`. */
export function sanitizeNodeId(hostname: string): string {
  const cleaned = hostname.replace(/[^A-Za-z0-9_-]/g, "_").replace(/^[^A-Za-z0-9]+/, "").slice(0, 128);
  return cleaned === "" ? "node" : cleaned;
}

export const LABEL_KEY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/;
export const LabelKey = z.string().regex(LABEL_KEY_PATTERN, "label keys use letters, digits and . _ / - (max 63)");
export const LabelValue = z.string().max(128);
export const Labels = z.record(LabelKey, LabelValue);
export type Labels = z.infer<typeof Labels>;

export const ENROLLMENT_STATES = ["pending", "approved", "active", "rejected", "revoked"] as const;
export const EnrollmentState = z.enum(ENROLLMENT_STATES);
export type EnrollmentState = z.infer<typeof EnrollmentState>;

/** Allowed transitions; rejected and revoked are final. */
export const ENROLLMENT_TRANSITIONS: Record<EnrollmentState, readonly EnrollmentState[]> = {
  pending: ["approved", "rejected"],
  approved: ["active", "revoked"],
  active: ["revoked"],
  rejected: [],
  revoked: [],
};

/**
 * Facts an agent reports. Known keys are typed; custom facts from the agent's
 * config sit under `custom`. Unknown top-level keys are refused (strict).
 */
export const FactsSchema = z
  .object({
    os: z.string().max(64),
    osRelease: z.string().max(128),
    arch: z.string().max(32),
    kernel: z.string().max(256),
    hostname: z.string().max(255),
    cpuCount: z.number().int().min(0),
    cpuModel: z.string().max(256),
    memoryBytes: z.number().int().min(0),
    disk: z.array(z.object({ mount: z.string().max(512), totalBytes: z.number().min(0), freeBytes: z.number().min(0) }).strict()).max(64),
    ipAddresses: z.array(z.string().max(64)).max(128),
    agentVersion: z.string().max(64),
    nodeVersion: z.string().max(64),
    custom: z.record(z.string().max(128), z.json()).default({}),
  })
  .strict();
/** The schema, typed with the RPC-friendly JSON alias for `custom`. */
export const Facts = FactsSchema as unknown as z.ZodType<Facts, z.input<typeof FactsSchema>>;
export type Facts = Omit<z.infer<typeof FactsSchema>, "custom"> & { custom: JsonObject };

/** Ed25519 public key, raw 32 bytes, base64url without padding. */
export const PublicKey = z.string().regex(/^[A-Za-z0-9_-]{43}$/, "public key must be a raw Ed25519 key in base64url");

// ---- REST bodies ----

export const CreateEnrollmentTokenBody = z
  .object({
    /** How many enrollments the token allows (default 1). */
    uses: z.number().int().min(1).max(100_000).default(1),
    /** Lifetime in seconds (default one hour). */
    ttlSeconds: z.number().int().min(60).max(365 * 86400).default(3600),
    autoApprove: z.boolean().default(false),
    /** Labels every node enrolled with this token starts with. */
    labels: Labels.default({}),
  })
  .strict();
export type CreateEnrollmentTokenBody = z.infer<typeof CreateEnrollmentTokenBody>;

export interface EnrollmentTokenRecord {
  id: string;
  uses: number;
  usesLeft: number;
  autoApprove: boolean;
  labels: Labels;
  createdAt: string;
  createdBy: string;
  expiresAt: string;
  revokedAt: string | null;
}

/** `POST /api/v1/agent/enroll` — authenticated by the enrollment token in the body. */
export const EnrollBody = z
  .object({
    v: z.literal(1),
    token: z.string().max(256),
    nodeId: NodeId,
    publicKey: PublicKey,
    facts: Facts,
  })
  .strict();
export type EnrollBody = z.infer<typeof EnrollBody>;

export interface EnrollResponse {
  org: string;
  nodeId: string;
  state: EnrollmentState;
}

/** `POST /api/v1/agent/challenge` → a single-use nonce the agent signs to connect. */
export const ChallengeBody = z.object({ v: z.literal(1), org: z.string().max(64), nodeId: NodeId }).strict();
export type ChallengeBody = z.infer<typeof ChallengeBody>;

export interface ChallengeResponse {
  nonce: string;
  expiresAt: string;
}

/**
 * The bytes an agent signs to connect. `GET /api/v1/agent/connect?org=&node=&nonce=&sig=`
 * with `Upgrade: websocket`; `sig` is the Ed25519 signature, base64url.
 */
export function connectSigningInput(org: string, nodeId: string, nonce: string): Uint8Array {
  return new TextEncoder().encode(`zectre/connect/v1\n${org}\n${nodeId}\n${nonce}`);
}

export const EnrollmentAction = z
  .object({ reason: z.string().max(500).optional() })
  .strict();
export type EnrollmentAction = z.infer<typeof EnrollmentAction>;

export const SetLabelsBody = z
  .object({
    /** Labels to set; a null value removes the label. */
    labels: z.record(LabelKey, LabelValue.nullable()),
  })
  .strict();
export type SetLabelsBody = z.infer<typeof SetLabelsBody>;

/** One row of the org's node directory (`GET /api/v1/nodes`). */
export interface NodeSummary {
  id: string;
  state: EnrollmentState;
  online: boolean;
  lastSeen: string | null;
  labels: Labels;
  os: string | null;
  arch: string | null;
  hostname: string | null;
  agentVersion: string | null;
  enrolledAt: string;
  stateReason: string | null;
  /** Set when the node is direct: the proxy fetches its tasks at this address instead of through the tunnel. */
  directAddress: string | null;
}

/** `GET /api/v1/nodes/:id` */
export interface NodeDetail extends NodeSummary {
  facts: Facts | null;
  settings: JsonObject;
  connectedAt: string | null;
}

// ---- settings ----

export const SETTING_KEY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export const SettingKey = z.string().regex(SETTING_KEY_PATTERN, "setting keys use letters, digits and . _ - (max 128)");

/** Where a setting applies: the whole org, nodes with a label, or one node. Node beats label beats org. */
export const SettingScope = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("org") }).strict(),
  z.object({ kind: z.literal("label"), key: LabelKey, value: LabelValue }).strict(),
  z.object({ kind: z.literal("node"), nodeId: NodeId }).strict(),
]);
export type SettingScope = z.infer<typeof SettingScope>;

const PutSettingSchema = z.object({ scope: SettingScope, key: SettingKey, value: z.json() }).strict();
/** The compact form of a scope in query strings, tables and storage: `org`, `label:env=prod`, `node:web-1`. */
export function settingScopeText(scope: SettingScope): string {
  switch (scope.kind) {
    case "org":
      return "org";
    case "label":
      return `label:${scope.key}=${scope.value}`;
    case "node":
      return `node:${scope.nodeId}`;
  }
}

/** Inverse of settingScopeText; null when the text is not a valid scope. */
export function parseSettingScopeText(text: string): SettingScope | null {
  if (text === "org") return { kind: "org" };
  if (text.startsWith("node:")) {
    const nodeId = text.slice(5);
    return NodeId.safeParse(nodeId).success ? { kind: "node", nodeId } : null;
  }
  const label = /^label:([^=]+)=(.*)$/.exec(text);
  if (!label) return null;
  const parsed = SettingScope.safeParse({ kind: "label", key: label[1], value: label[2] });
  return parsed.success ? parsed.data : null;
}

export const PutSettingBody = PutSettingSchema as unknown as z.ZodType<PutSettingBody, z.input<typeof PutSettingSchema>>;
export type PutSettingBody = Omit<z.infer<typeof PutSettingSchema>, "value"> & { value: JsonValue };

export const DeleteSettingBody = z.object({ scope: SettingScope, key: SettingKey }).strict();
export type DeleteSettingBody = z.infer<typeof DeleteSettingBody>;

export interface SettingRecord {
  scope: SettingScope;
  key: string;
  value: JsonValue;
  updatedAt: string;
  updatedBy: string;
}

