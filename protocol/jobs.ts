import { z } from "zod";
import type { JsonObject, JsonValue } from "./json.ts";
import { NodeId } from "./nodes.ts";

/**
 * Jobs, Zester semantics (../shared/DESIGN.md "Jobs"): states, returns, the
 * dispatch and cancel actions sent through a node's outbox, and the return
 * message an agent sends back.
 */

export const JOB_STATUSES = ["claimed", "running", "complete", "failed", "partial", "timeout", "canceled"] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];
export const FINAL_STATUSES: readonly JobStatus[] = ["complete", "failed", "partial", "timeout", "canceled"];
export const ACTIVE_STATUSES: readonly JobStatus[] = ["claimed", "running"];

/** Per target: dispatched (stored and sent), acked (the agent accepted it), returned (a return is stored). */
export type TargetState = "dispatched" | "acked" | "returned";

/** Jids sort by time: `YYYYMMDDhhmmssSSS` followed by six random digits. */
export const JID_PATTERN = /^\d{23}$/;
export const Jid = z.string().regex(JID_PATTERN, "a jid is 23 digits");

export function newJid(now: number = Date.now()): string {
  const d = new Date(now);
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  const stamp = `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}${pad(d.getUTCMilliseconds(), 3)}`;
  const random = new Uint32Array(1);
  crypto.getRandomValues(random);
  return `${stamp}${pad((random[0] as number) % 1_000_000, 6)}`;
}

export const FUNCTION_NAME_PATTERN = /^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$/;
export const FunctionName = z.string().regex(FUNCTION_NAME_PATTERN, "functions look like module.function, e.g. test.ping");

export const DEFAULT_JOB_TIMEOUT_SECONDS = 60;
export const MAX_JOB_TIMEOUT_SECONDS = 24 * 3600;

/**
 * `POST /api/v1/jobs`. `args` holds keyword arguments; positional ones go under `_`
 * (`zectre run '*' test.echo hello` sends `{"_": ["hello"]}`).
 */
const CreateJobSchema = z
  .object({
    target: z.string().min(1).max(4096).optional(),
    targets: z.array(NodeId).min(1).max(100_000).optional(),
    function: FunctionName,
    args: z.record(z.string(), z.json()).default({}),
    timeout: z.number().int().min(1).max(MAX_JOB_TIMEOUT_SECONDS).default(DEFAULT_JOB_TIMEOUT_SECONDS),
    test: z.boolean().default(false),
    metadata: z.record(z.string().max(64), z.string().max(1024)).default({}),
  })
  .strict()
  .refine((b) => (b.target === undefined) !== (b.targets === undefined), { message: "give exactly one of target or targets" });
export const CreateJobBody = CreateJobSchema as unknown as z.ZodType<CreateJobBody, z.input<typeof CreateJobSchema>>;
export type CreateJobBody = Omit<z.infer<typeof CreateJobSchema>, "args"> & { args: JsonObject };

export interface CreateJobResponse {
  jid: string;
  targets: string[];
  status: JobStatus;
}

/** What a node ran and how it went. `synthetic` returns stand in for unreachable targets. */
export interface JobReturn {
  success: boolean;
  retcode: number | null;
  result: JsonValue;
  error: string | null;
  durationMs: number;
  startedAt: string | null;
  synthetic: boolean;
}

export interface JobTarget {
  nodeId: string;
  state: TargetState;
  onlineAtDispatch: boolean;
  dispatchedAt: string;
  ackedAt: string | null;
  resent: boolean;
  returnedAt: string | null;
  return: JobReturn | null;
}

export interface JobCounts {
  targets: number;
  returned: number;
  succeeded: number;
  failed: number;
  unreachable: number;
}

export interface JobSummary {
  jid: string;
  function: string;
  target: string;
  status: JobStatus;
  user: string;
  createdAt: string;
  updatedAt: string;
  counts: JobCounts;
}

export interface JobRecord extends JobSummary {
  args: JsonObject;
  timeout: number;
  test: boolean;
  metadata: Record<string, string>;
  finishedAt: string | null;
  targets: JobTarget[];
}

export type JobEventType =
  | "job.created"
  | "target.dispatched"
  | "target.acked"
  | "target.resent"
  | "target.returned"
  | "target.unreachable"
  | "job.cancel_requested"
  | "job.finished";

/** One entry of a job's append-only event log; the live stream sends these as SSE `data:` lines. */
export interface JobEvent {
  seq: number;
  ts: string;
  type: JobEventType;
  nodeId: string | null;
  data: JsonObject;
}

// ---- wire: actions to the agent (through the node's outbox) and the agent's return ----

export interface JobDispatch {
  kind: "job.dispatch";
  jid: string;
  /** Dispatch generation; the agent runs a jid once per epoch (it records jid → epoch before running). */
  epoch: number;
  function: string;
  args: JsonObject;
  timeout: number;
  test: boolean;
}

export interface JobCancel {
  kind: "job.cancel";
  jid: string;
}

export const JobDispatchSchema = z
  .object({
    kind: z.literal("job.dispatch"),
    jid: Jid,
    epoch: z.number().int().min(1),
    function: FunctionName,
    args: z.record(z.string(), z.json()),
    timeout: z.number().int().min(1),
    test: z.boolean(),
  })
  .strict();

export const JobCancelSchema = z.object({ kind: z.literal("job.cancel"), jid: Jid }).strict();

/** Output beyond this is cut, with a marker, so one chatty command cannot break a frame. */
export const MAX_OUTPUT_BYTES = 1024 * 1024;
export const TRUNCATION_MARKER = "\n[output truncated at 1 MiB]";

/** What a function's run produced, as the agent reports it (in a return or a schedule report). */
const ReturnBodySchema = z
  .object({
    success: z.boolean(),
    retcode: z.number().int().nullable(),
    result: z.json(),
    error: z.string().max(64 * 1024).nullable(),
    durationMs: z.number().min(0),
    startedAt: z.string().max(64).nullable(),
  })
  .strict();

/**
 * Agent → control plane. `id` is the agent's outbox id: the control plane acks it
 * (`{"type":"ack","ids":[id]}`) once the job object stored the return, and the
 * agent resends it after every reconnect until then.
 */
export const ReturnMessage = z
  .object({
    type: z.literal("return"),
    v: z.literal(1),
    nodeId: NodeId.optional(),
    id: z.string().min(1).max(128),
    jid: Jid,
    epoch: z.number().int().min(1),
    return: ReturnBodySchema,
    /** Actions this frame also acks: a fast job's ack rides on its return, one frame instead of two. */
    acks: z.array(z.string().min(1).max(128)).min(1).max(1000).optional(),
  })
  .strict();

/** Final status, computed once (design "Jobs"): see the table test in test/node/job-status.test.ts. */
export function finalStatus(reason: "all_returned" | "deadline" | "canceled", counts: JobCounts): JobStatus {
  if (reason === "canceled") return "canceled";
  if (reason === "deadline") return counts.returned > 0 ? "partial" : "timeout";
  return counts.failed === 0 && counts.unreachable === 0 ? "complete" : "failed";
}

/** CLI exit codes: 0 all succeeded, 2 some failed, 3 some unreachable or missing, 4 both. */
export function exitCodeFor(counts: JobCounts): 0 | 2 | 3 | 4 {
  const missing = counts.targets - counts.returned;
  const failed = counts.failed > 0;
  const unreachable = counts.unreachable > 0 || missing > 0;
  if (failed && unreachable) return 4;
  if (unreachable) return 3;
  if (failed) return 2;
  return 0;
}

// ---- schedules: jobs an agent ran by itself ----

/**
 * Agent → control plane: a scheduled function the agent ran itself (also while
 * offline), reported when `return_job` is set. Sent through the agent's outbox; the
 * control plane stores it as a finished job with `metadata.source = "schedule"` and
 * acks `id`. Resending the same `id` never makes a second job (the jid derives from it).
 */
export const ReportMessage = z
  .object({
    type: z.literal("job.report"),
    v: z.literal(1),
    nodeId: NodeId.optional(),
    id: z.string().min(1).max(128),
    function: FunctionName,
    args: z.record(z.string(), z.json()),
    /** The schedule's name, e.g. `metadata: {schedule: "uptime"}`; `source` is set by the server. */
    metadata: z.record(z.string().max(64), z.string().max(1024)),
    return: ReturnBodySchema,
  })
  .strict();

/** Settings key under which schedules are declared (merged like any setting: node > label > org). */
export const SCHEDULES_SETTING = "schedules";

/** One schedule, as declared in the `schedules` setting: `{"<name>": Schedule}`. */
export const Schedule = z
  .object({
    function: FunctionName,
    args: z.record(z.string(), z.json()).default({}),
    /** Seconds between runs, or a duration like `90s`, `15m`, `1h`. Exactly one of interval or cron. */
    interval: z.union([z.number().int().min(1), z.string().regex(/^\d+[smhd]?$/)]).optional(),
    /** Five-field cron (minute hour day-of-month month day-of-week), in UTC. */
    cron: z.string().max(128).optional(),
    /** Up to this many seconds of random delay per run, so a fleet does not fire at once. */
    splay: z.number().int().min(0).max(86_400).default(0),
    run_on_start: z.boolean().default(false),
    enabled: z.boolean().default(true),
    return_job: z.boolean().default(false),
    timeout: z.number().int().min(1).max(MAX_JOB_TIMEOUT_SECONDS).default(DEFAULT_JOB_TIMEOUT_SECONDS),
  })
  .strict()
  .refine((s) => (s.interval === undefined) !== (s.cron === undefined), { message: "give exactly one of interval or cron" });

/** A deterministic jid for a report, so a resent report finds its job instead of making another. */
export async function reportJid(nodeId: string, reportId: string, startedAtMs: number): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`${nodeId}\n${reportId}`)));
  const suffix = ((((digest[0] as number) << 16) | ((digest[1] as number) << 8) | (digest[2] as number)) % 1_000_000).toString().padStart(6, "0");
  return newJid(startedAtMs).slice(0, 17) + suffix;
}
