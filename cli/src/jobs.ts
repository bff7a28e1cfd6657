import type { JsonObject, JsonValue } from "../../protocol/json.ts";
import { exitCodeFor, FINAL_STATUSES, type JobCounts, type JobEvent, type JobEventType, type JobReturn, type JobStatus } from "../../protocol/jobs.ts";
import { type ApiClient, ApiError, UnreachableError } from "./client.ts";
import { CliError, oneLine, UsageError } from "./errors.ts";
import type { Io } from "./io.ts";
import { type Colors, formatValue, type Output } from "./output.ts";
import { readSse } from "./sse.ts";

/**
 * What `zectre run` and `zectre job watch` share: turning words into a job's args,
 * following a job's event stream (with reconnects), and printing returns as they arrive.
 */

// ---- arguments ----

/** A keyword argument is one word `key=value` with a snake_case key, as function parameters are named. */
const KWARG = /^([a-z_][a-z0-9_]*)=(.*)$/s;

/**
 * `key=value` words become keyword arguments (the value parsed as JSON when it is
 * valid JSON, else kept as text); other words are positional, under `_`. For
 * `cmd.run` the positional words are the command: joined with spaces into `cmd`,
 * and a word with whitespace in it (a quoted command such as `'A=1 make'`) is
 * always part of the command, never a keyword argument.
 */
export function buildJobArgs(fn: string, words: readonly string[], commandPath: readonly string[]): JsonObject {
  const isCmd = fn === "cmd.run";
  const kwargs = new Map<string, JsonValue>();
  const positional: string[] = [];
  for (const word of words) {
    const match = isCmd && /\s/.test(word) ? null : KWARG.exec(word);
    if (!match) {
      positional.push(word);
      continue;
    }
    const key = match[1] as string;
    if (key === "_") throw new UsageError("'_' holds the positional arguments; it cannot be given as key=value", commandPath);
    if (kwargs.has(key)) throw new UsageError(`keyword argument '${key}' is given twice`, commandPath);
    kwargs.set(key, parseArgValue(match[2] as string));
  }
  if (positional.length > 0) {
    if (isCmd) {
      if (kwargs.has("cmd")) throw new UsageError("give the command either as words or as cmd=..., not both", commandPath);
      kwargs.set("cmd", positional.join(" "));
    } else {
      kwargs.set("_", positional);
    }
  }
  // fromEntries defines own properties, so even a key such as `__proto__` stays data.
  return Object.fromEntries(kwargs);
}

/** `5` → 5, `true` → true, `[1,2]` → [1, 2], `"x"` → "x"; anything that is not JSON stays text. */
export function parseArgValue(text: string): JsonValue {
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === "number" && !Number.isFinite(value)) return text;
    return value as JsonValue;
  } catch {
    return text;
  }
}

// ---- printing ----

/** `120ms` below a second, `1.5s` above; `-` when unknown. */
export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms) || ms < 0) return "-";
  if (ms < 1000) return `${Math.round(ms)}ms`;
  return `${(ms / 1000).toFixed(1)}s`;
}

function textLines(text: string): string[] {
  return text.replace(/\r?\n$/, "").split(/\r?\n/);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The lines under `node-id:`, before indenting: strings as they are; cmd.run's stdout,
 * then stderr, then `retcode: N` when it is not 0 (and the error only when the command
 * has no exit code: it was killed or never started); other values as indented JSON;
 * and the error of a failed return.
 */
export function formatReturnLines(fn: string, ret: JobReturn): string[] {
  const lines: string[] = [];
  const result = ret.result;
  if (fn === "cmd.run" && isRecord(result) && (typeof result["stdout"] === "string" || typeof result["stderr"] === "string")) {
    for (const stream of ["stdout", "stderr"] as const) {
      const text = result[stream];
      if (typeof text === "string" && text !== "") lines.push(...textLines(text));
    }
    const retcode = ret.retcode ?? (typeof result["retcode"] === "number" ? result["retcode"] : null);
    if (retcode !== null && retcode !== 0) lines.push(`retcode: ${retcode}`);
    // An exit code says why the command failed; the error matters when there is none (killed, canceled, timed out).
    if (retcode !== null) return lines;
  } else if (typeof result === "string") {
    if (result !== "") lines.push(...textLines(result));
  } else if (!(result === null && ret.error !== null)) {
    lines.push(...formatValue(result).split("\n"));
    if (fn === "cmd.run" && ret.retcode !== null && ret.retcode !== 0) lines.push(`retcode: ${ret.retcode}`);
  }
  if (ret.error !== null) {
    const [first = "", ...rest] = textLines(ret.error);
    lines.push(`error: ${first}`, ...rest);
  }
  return lines;
}

export function indent(lines: readonly string[], by = "    "): string {
  return lines.map((line) => (line === "" ? "" : `${by}${line}`)).join("\n");
}

function isJobReturn(value: unknown): value is JobReturn {
  return isRecord(value) && typeof value["success"] === "boolean" && "result" in value && (value["error"] === null || typeof value["error"] === "string");
}

function isCounts(value: unknown): value is JobCounts {
  return isRecord(value) && ["targets", "returned", "succeeded", "failed", "unreachable"].every((key) => typeof value[key] === "number");
}

/** `3 targets: 2 succeeded, 1 failed, 0 unreachable, 0 missing (jid …) in 1.2s`. */
export function summaryLine(counts: JobCounts, jid: string, elapsedMs: number, status: JobStatus | undefined): string {
  const missing = Math.max(0, counts.targets - counts.returned);
  const noun = counts.targets === 1 ? "target" : "targets";
  const tail = status !== undefined && status !== "complete" && status !== "failed" ? `; job ${status}` : "";
  return (
    `${counts.targets} ${noun}: ${counts.succeeded} succeeded, ${counts.failed} failed, ${counts.unreachable} unreachable, ` +
    `${missing} missing (jid ${jid}) in ${(Math.max(0, elapsedMs) / 1000).toFixed(1)}s${tail}`
  );
}

// ---- following a job ----

const EVENT_TYPES: readonly JobEventType[] = [
  "job.created",
  "target.dispatched",
  "target.acked",
  "target.resent",
  "target.returned",
  "target.unreachable",
  "job.cancel_requested",
  "job.finished",
];

/** How many times in a row a broken stream is reopened (with `since`) before giving up. */
export const MAX_RECONNECTS = 5;
const RECONNECT_DELAYS_MS = [250, 500, 1000, 2000, 2000];

export interface FollowOptions {
  readonly client: ApiClient;
  readonly io: Io;
  readonly out: Output;
  readonly jid: string;
  /** The job's targets when known up front (`run` has them from the create answer). */
  readonly targets?: readonly string[];
  /** The job's function when known up front; otherwise the `job.created` event tells it. */
  readonly fn?: string;
  /** When the CLI started waiting; the summary's time falls back to it. */
  readonly startedAt: number;
}

/** What an event-stream message says, checked just enough to print it safely. */
function parseEvent(data: string, jid: string): JobEvent | undefined {
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    throw new CliError(`the event stream of job ${jid} sent data that is not JSON: ${oneLine(data).slice(0, 80)}`);
  }
  if (!isRecord(value) || typeof value["seq"] !== "number" || typeof value["type"] !== "string") {
    throw new CliError(`the event stream of job ${jid} sent something that is not a job event: ${oneLine(data).slice(0, 80)}`);
  }
  // Unknown types are skipped: wire changes are additive.
  if (!(EVENT_TYPES as readonly string[]).includes(value["type"])) return undefined;
  return {
    seq: value["seq"],
    ts: typeof value["ts"] === "string" ? value["ts"] : "",
    type: value["type"] as JobEventType,
    nodeId: typeof value["nodeId"] === "string" ? value["nodeId"] : null,
    data: isRecord(value["data"]) ? (value["data"] as JsonObject) : {},
  };
}

class Interrupted extends Error {}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new Interrupted());
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(new Interrupted());
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** Prints returns as text while events arrive, and tallies what the summary needs. */
class Tally {
  readonly targets = new Set<string>();
  readonly answered = new Set<string>();
  readonly local: JobCounts = { targets: 0, returned: 0, succeeded: 0, failed: 0, unreachable: 0 };
  fn: string | undefined;
  createdTs: number | undefined;
  readonly #write: ((text: string) => void) | undefined;
  readonly #colors: Colors;

  constructor(write: ((text: string) => void) | undefined, colors: Colors, targets: readonly string[]) {
    this.#write = write;
    this.#colors = colors;
    for (const target of targets) this.targets.add(target);
  }

  see(event: JobEvent): void {
    const c = this.#colors;
    if (event.type === "job.created") {
      if (typeof event.data["function"] === "string") this.fn ??= event.data["function"];
      const at = Date.parse(event.ts);
      if (!Number.isNaN(at)) this.createdTs = at;
      const targets = event.data["targets"];
      if (Array.isArray(targets)) for (const target of targets) if (typeof target === "string") this.targets.add(target);
      return;
    }
    const node = event.nodeId;
    if (node === null) return;
    if (event.type === "target.dispatched") {
      this.targets.add(node);
      return;
    }
    if (event.type !== "target.returned" && event.type !== "target.unreachable") return;
    this.targets.add(node);
    const ret = event.data["return"];
    const synthetic = event.type === "target.unreachable" || (isJobReturn(ret) && ret.synthetic);
    this.#count(node, synthetic, isJobReturn(ret) && ret.success);
    if (!this.#write) return;
    const name = oneLine(node);
    if (synthetic) {
      this.#write(`${c.bold(name)}: ${c.yellow("UNREACHABLE")}\n`);
      return;
    }
    const lines = isJobReturn(ret) ? formatReturnLines(this.fn ?? "", ret) : formatValue(ret ?? null).split("\n");
    const label = isJobReturn(ret) && !ret.success ? c.red(`${name}:`) : c.green(`${name}:`);
    this.#write(lines.length === 0 ? `${label}\n` : `${label}\n${indent(lines)}\n`);
  }

  /** A real return replaces an earlier synthetic one for the same node (design "Jobs"). */
  #count(node: string, synthetic: boolean, success: boolean): void {
    const previous = this.answered.has(node);
    if (previous) {
      if (synthetic) return;
      this.local.unreachable = Math.max(0, this.local.unreachable - 1);
    } else {
      this.answered.add(node);
      this.local.returned++;
    }
    if (synthetic) this.local.unreachable++;
    else if (success) this.local.succeeded++;
    else this.local.failed++;
  }

  missing(): string[] {
    return [...this.targets].filter((node) => !this.answered.has(node));
  }
}

/**
 * Follows a job to its end and returns the exit code (exitCodeFor its counts). In
 * text, returns are printed as they arrive; in json/yaml, the final record is
 * printed once the job has finished. The summary line goes to stderr either way.
 * A stream that breaks before `job.finished` is reopened from the last seq seen;
 * Ctrl-C stops following (the job keeps running) and exits 1.
 */
export async function followJob(options: FollowOptions): Promise<number> {
  const { client, io, out, jid } = options;
  const text = out.format === "text";
  const tally = new Tally(text ? (chunk) => io.stdout.write(chunk) : undefined, out.colors, options.targets ?? []);
  tally.fn = options.fn;
  const controller = new AbortController();
  let interrupted = false;
  const stopListening = io.onInterrupt?.(() => {
    interrupted = true;
    controller.abort();
  });

  try {
    const finished = await streamUntilFinished(client, jid, controller.signal, (event) => tally.see(event));
    const status = typeof finished.data["status"] === "string" ? (finished.data["status"] as JobStatus) : undefined;
    const counts = isCounts(finished.data["counts"]) ? finished.data["counts"] : { ...tally.local, targets: tally.targets.size };
    if (text) {
      for (const node of tally.missing()) io.stdout.write(`${out.colors.bold(oneLine(node))}: ${out.colors.red("MISSING")}\n`);
    } else {
      const final = await client.getJob(jid);
      out.result(final, () => "");
    }
    const finishedAt = Date.parse(finished.ts);
    const elapsed = tally.createdTs !== undefined && !Number.isNaN(finishedAt) ? finishedAt - tally.createdTs : Date.now() - options.startedAt;
    io.stderr.write(`${summaryLine(counts, jid, elapsed, status !== undefined && FINAL_STATUSES.includes(status) ? status : undefined)}\n`);
    return exitCodeFor(counts);
  } catch (error) {
    if (interrupted || error instanceof Interrupted) {
      io.stderr.write(
        `\nzectre: stopped following job ${jid}; it keeps running.\n` +
          `  watch it:  zectre job watch ${jid}\n` +
          `  stop it:   zectre job kill ${jid}\n`,
      );
      return 1;
    }
    throw error;
  } finally {
    stopListening?.();
  }
}

async function streamUntilFinished(client: ApiClient, jid: string, signal: AbortSignal, onEvent: (event: JobEvent) => void): Promise<JobEvent> {
  let since: number | undefined;
  let failures = 0;
  for (;;) {
    let reason: string;
    try {
      const body = await client.jobEvents(jid, since, signal);
      for await (const message of readSse(body)) {
        if (message.data === "") continue;
        const event = parseEvent(message.data, jid);
        if (!event) continue;
        // After a reconnect the server starts after `since`; this also drops any repeat.
        if (since !== undefined && event.seq <= since) continue;
        since = event.seq;
        failures = 0;
        onEvent(event);
        if (event.type === "job.finished") return event;
      }
      reason = "the server closed the stream before the job finished";
    } catch (error) {
      if (signal.aborted) throw new Interrupted();
      if (!retryable(error)) throw error;
      reason = describeBreak(error);
    }
    failures++;
    if (failures > MAX_RECONNECTS) {
      throw new CliError(`lost the event stream of job ${jid} (${reason}) and ${MAX_RECONNECTS} reconnects failed; follow it with 'zectre job watch ${jid}'`);
    }
    await sleep(RECONNECT_DELAYS_MS[failures - 1] ?? 2000, signal);
  }
}

/**
 * Worth reopening the stream for: the connection failing or dropping, and server-side
 * trouble (5xx, 408, 429). Refusals (unknown job, bad token, no scope) and answers
 * that are not an event stream will not change on a retry.
 */
export function retryable(error: unknown): boolean {
  if (error instanceof ApiError) return error.status >= 500 || error.status === 408 || error.status === 429;
  if (error instanceof UnreachableError) return true;
  // fetch reports a body cut off mid-stream as a TypeError ("terminated").
  return !(error instanceof CliError);
}

export function describeBreak(error: unknown): string {
  if (error instanceof ApiError) return error.describe();
  if (error instanceof TypeError && error.cause instanceof Error) return `${oneLine(error.message)}: ${oneLine(error.cause.message)}`;
  return error instanceof Error ? oneLine(error.message) : String(error);
}
