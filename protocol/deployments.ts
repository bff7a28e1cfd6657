import { z } from "zod";
import type { JsonObject } from "./json.ts";
import { NodeId } from "./nodes.ts";

/**
 * Deployments, the PaaS half: apps, immutable deployments, tasks placed on nodes,
 * and the wire messages between a node object and its agent's task supervisor.
 */

// ---- names and ids ----

/** App names appear in preview hostnames (`<app>.<org>.<proxy domain>`), so they are DNS labels. */
export const APP_NAME_PATTERN = /^[a-z][a-z0-9-]{0,30}[a-z0-9]$/;
export const AppName = z.string().regex(APP_NAME_PATTERN, "app names are 2-32 lowercase letters, digits and dashes, starting with a letter");

/** Deployment ids also appear in hostnames: `d`, 8 base-36 characters of time (so they sort), 4 random. */
export const DEPLOYMENT_ID_PATTERN = /^d[0-9a-z]{12}$/;
export const DeploymentId = z.string().regex(DEPLOYMENT_ID_PATTERN, "deployment ids look like dmwtta1wu3k9x");

export const TASK_ID_PATTERN = /^t[0-9a-z]{12}$/;
export const TaskId = z.string().regex(TASK_ID_PATTERN, "task ids look like tmwtta1wu3k9x");

function sortableId(prefix: string, now: number): string {
  const time = now.toString(36).padStart(8, "0").slice(-8);
  const random = crypto.getRandomValues(new Uint8Array(4));
  const tail = Array.from(random, (b) => (b % 36).toString(36)).join("");
  return `${prefix}${time}${tail}`;
}

export function newDeploymentId(now: number = Date.now()): string {
  return sortableId("d", now);
}

export function newTaskId(now: number = Date.now()): string {
  return sortableId("t", now);
}

// ---- artifacts ----

/** Artifacts are addressed by the lowercase hex sha256 of their bytes (a gzip-compressed tar). */
export const DIGEST_PATTERN = /^[0-9a-f]{64}$/;
export const Digest = z.string().regex(DIGEST_PATTERN, "a digest is 64 lowercase hex characters (sha256)");

/** `app` holds the code; `deps` holds installed dependencies, reused while the lockfile is unchanged. */
export const ArtifactLayer = z.enum(["app", "deps"]);
export type ArtifactLayer = z.infer<typeof ArtifactLayer>;

export const ArtifactRef = z.object({ digest: Digest, size: z.number().int().min(0), layer: ArtifactLayer }).strict();
export type ArtifactRef = z.infer<typeof ArtifactRef>;

// ---- deployments ----

export const HealthCheck = z.discriminatedUnion("type", [
  z.object({ type: z.literal("http"), path: z.string().startsWith("/").max(512).default("/") }).strict(),
  z.object({ type: z.literal("tcp") }).strict(),
]);
export type HealthCheck = z.infer<typeof HealthCheck>;

export const Resources = z
  .object({
    /** CPU cores reserved per task (fractions allowed). */
    cpu: z.number().min(0.01).max(256).default(0.1),
    memoryMb: z.number().int().min(1).max(1_048_576).default(128),
  })
  .strict();
export type Resources = z.infer<typeof Resources>;

export const Runtime = z.enum(["process", "docker"]);
export type Runtime = z.infer<typeof Runtime>;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const EnvName = z.string().regex(ENV_NAME, "environment variable names are letters, digits and _").max(128);
/** Set by the supervisor; a deployment may not override them. */
export const RESERVED_ENV = ["PORT", "HOST", "ZECTRE_TASK_ID", "ZECTRE_APP", "ZECTRE_DEPLOYMENT"] as const;

export const EnvMap = z.record(EnvName, z.string().max(32 * 1024)).refine(
  (env) => !Object.keys(env).some((k) => (RESERVED_ENV as readonly string[]).includes(k)),
  { message: `these variables are set by Zectre: ${RESERVED_ENV.join(", ")}` },
);

export const MAX_REPLICAS = 100;
/** How long a deployment that may scale down waits without a request, unless its config says otherwise. */
export const DEFAULT_IDLE_TIMEOUT_SECONDS = 300;
export const MAX_IDLE_TIMEOUT_SECONDS = 7 * 86_400;

/** `POST /api/v1/apps/{app}/deployments`: everything a deployment is, fixed at creation. */
export const CreateDeploymentBody = z
  .object({
    artifacts: z.array(ArtifactRef).min(1).max(2).refine((a) => a.filter((r) => r.layer === "app").length === 1, {
      message: "exactly one app layer (and at most one deps layer)",
    }),
    /** Run with `sh -c` in the unpacked app directory. */
    command: z.string().min(1).max(4096),
    replicas: z.number().int().min(0).max(MAX_REPLICAS).default(1),
    healthCheck: HealthCheck.default({ type: "http", path: "/" }),
    resources: Resources.default({ cpu: 0.1, memoryMb: 128 }),
    /** Target expressions every chosen node must match, e.g. `G@role:web`. */
    constraints: z.array(z.string().min(1).max(1024)).max(16).default([]),
    /** Plain (non-secret) variables of this deployment; the app's env set/unset values are merged in at start. */
    env: EnvMap.default({}),
    runtime: Runtime.default("process"),
    /**
     * The port the app listens on when it cannot take one from $PORT. Null (the default): each task gets a free
     * loopback port as $PORT. Fixed: every task uses it, so at most one task of the deployment runs per node.
     */
    port: z.number().int().min(1024).max(65535).nullable().default(null),
    /** Promote as soon as it is healthy (the first deployment of an app is always promoted). */
    promote: z.boolean().default(false),
    /**
     * Tasks kept while idle: after `idleTimeoutSeconds` without a request through the proxy the deployment runs only
     * this many, and the next request brings `replicas` back (0: scale to zero; that request is held until a task is
     * healthy). Left out, the deployment always runs `replicas`.
     */
    minReplicas: z.number().int().min(0).max(MAX_REPLICAS).optional(),
    idleTimeoutSeconds: z.number().int().min(1).max(MAX_IDLE_TIMEOUT_SECONDS).optional(),
  })
  .strict()
  .refine((body) => body.minReplicas === undefined || body.minReplicas <= body.replicas, {
    message: "minReplicas cannot be more than replicas",
    path: ["minReplicas"],
  });
export type CreateDeploymentBody = z.infer<typeof CreateDeploymentBody>;

/** `idle`: scaled to zero after its idle timeout; the next request wakes it. */
export const DEPLOYMENT_STATUSES = ["pending", "deploying", "healthy", "degraded", "failed", "stopped", "idle"] as const;
export type DeploymentStatus = (typeof DEPLOYMENT_STATUSES)[number];

/** What a task is doing, as the agent reports it (`assigned` and `lost` are the control plane's). */
export const TASK_STATES = ["assigned", "starting", "healthy", "unhealthy", "crashed", "stopping", "stopped", "lost"] as const;
export const AgentTaskState = z.enum(["starting", "healthy", "unhealthy", "crashed", "stopping", "stopped"]);
export type TaskState = (typeof TASK_STATES)[number];

export interface TaskRecord {
  taskId: string;
  deploymentId: string;
  nodeId: string;
  state: TaskState;
  /** Desired: `run` until the scheduler decides otherwise. */
  desired: "run" | "stop";
  hostPort: number | null;
  restarts: number;
  message: string | null;
  updatedAt: string;
}

export interface DeploymentRecord {
  id: string;
  app: string;
  createdAt: string;
  createdBy: string;
  status: DeploymentStatus;
  promoted: boolean;
  /** Replicas wanted now (scale changes this; the rest of the spec never changes). */
  replicas: number;
  spec: Omit<CreateDeploymentBody, "replicas" | "promote">;
  tasks: TaskRecord[];
  /** Since when it runs only `spec.minReplicas` for lack of requests (null: awake); absent when it never scales down. */
  idleSince?: string | null;
}

export interface AppSummary {
  name: string;
  createdAt: string;
  createdBy: string;
  /** The promoted deployment: what the app's main URL serves. */
  promoted: string | null;
  latest: string | null;
}

// ---- wire: node object → agent (actions through the outbox) ----

export const TaskStartSchema = z
  .object({
    kind: z.literal("task.start"),
    taskId: TaskId,
    app: AppName,
    deploymentId: DeploymentId,
    artifacts: z.array(ArtifactRef).min(1).max(2),
    command: z.string().min(1).max(4096),
    /** Merged deployment env and app env (secrets decrypted). */
    env: z.record(z.string(), z.string()),
    healthCheck: HealthCheck,
    resources: Resources,
    runtime: Runtime,
    /** The deployment's fixed port, or null for a free one chosen by the agent. */
    port: z.number().int().min(1024).max(65535).nullable().default(null),
  })
  .strict();
export type TaskStart = z.infer<typeof TaskStartSchema>;

export const TaskStopSchema = z
  .object({ kind: z.literal("task.stop"), taskId: TaskId, graceSeconds: z.number().int().min(0).max(600) })
  .strict();
export type TaskStop = z.infer<typeof TaskStopSchema>;

// ---- wire: agent → node object ----

/** A task's state changed. Sent through the agent's outbox; acked once the app object stored it. */
export const TaskStatusMessage = z
  .object({
    type: z.literal("task.status"),
    v: z.literal(1),
    nodeId: NodeId.optional(),
    id: z.string().min(1).max(128),
    taskId: TaskId,
    app: AppName,
    deploymentId: DeploymentId,
    state: AgentTaskState,
    /** The loopback port the task listens on (127.0.0.1 only). */
    hostPort: z.number().int().min(1).max(65535).nullable(),
    restarts: z.number().int().min(0),
    exitCode: z.number().int().nullable(),
    message: z.string().max(4096).nullable(),
    at: z.string().max(64),
  })
  .strict();
export type TaskStatusMessage = z.infer<typeof TaskStatusMessage>;

/** After every welcome: every task the agent has, so the control plane can stop the unwanted ones. */
export const TaskInventoryMessage = z
  .object({
    type: z.literal("task.inventory"),
    v: z.literal(1),
    nodeId: NodeId.optional(),
    tasks: z
      .array(
        z
          .object({
            taskId: TaskId,
            app: AppName,
            deploymentId: DeploymentId,
            state: AgentTaskState,
            hostPort: z.number().int().min(1).max(65535).nullable(),
          })
          .strict(),
      )
      .max(1000),
  })
  .strict();
export type TaskInventoryMessage = z.infer<typeof TaskInventoryMessage>;

export const LogLine = z
  .object({
    taskId: TaskId,
    app: AppName,
    deploymentId: DeploymentId,
    stream: z.enum(["stdout", "stderr"]),
    ts: z.string().max(64),
    line: z.string().max(16 * 1024),
  })
  .strict();
export type LogLine = z.infer<typeof LogLine>;

export const MAX_LOG_BATCH = 500;

/** A batch of task output lines. Sent through the agent's outbox; acked once stored. */
export const TaskLogsMessage = z
  .object({
    type: z.literal("task.logs"),
    v: z.literal(1),
    nodeId: NodeId.optional(),
    id: z.string().min(1).max(128),
    lines: z.array(LogLine).min(1).max(MAX_LOG_BATCH),
  })
  .strict();
export type TaskLogsMessage = z.infer<typeof TaskLogsMessage>;

/** A stored log line, as `GET /apps/{app}/logs` returns it. */
export interface StoredLogLine extends LogLine {
  seq: number;
  nodeId: string;
}

// ---- the app's event log (`GET /apps/{app}/events`, what `zectre deploy` follows) ----

export type AppEventType =
  | "app.created"
  | "deployment.created"
  | "deployment.status"
  | "deployment.promoting"
  | "deployment.promoted"
  | "deployment.scaled"
  | "deployment.idle"
  | "deployment.woken"
  | "task.assigned"
  | "task.state"
  | "task.stopping"
  | "task.lost"
  | "placement.failed";

export interface AppEvent {
  seq: number;
  ts: string;
  type: AppEventType;
  deploymentId: string | null;
  taskId: string | null;
  data: JsonObject;
}
