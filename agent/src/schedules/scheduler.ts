import { randomBytes } from "node:crypto";
import type { z } from "zod";
import { canonicalJson } from "../../../protocol/agent-wire.ts";
import { SCHEDULES_SETTING, Schedule } from "../../../protocol/jobs.ts";
import type { JsonObject } from "../../../protocol/json.ts";
import { fitToFrame, type JobReturnBody } from "../jobs/returns.ts";
import type { JobRunner } from "../jobs/runner.ts";
import type { Logger } from "../log.ts";
import { messageOf } from "../state/files.ts";
import type { SettingsSnapshot, SettingsStore } from "../state/settings.ts";
import { type CronSpec, nextRun, parseCron } from "./cron.ts";

/**
 * Schedules declared in the `schedules` setting, run by the agent itself: from
 * the last-known-good settings snapshot at boot (so also while the control plane
 * is unreachable) and re-read on every settings change. Runs go through the
 * JobRunner (mutating queue, timeout, abort on stop); a run whose schedule has
 * `return_job` is reported as a `job.report` through the durable outbox.
 */

/** One parsed schedule definition (defaults applied). */
export type ScheduleDef = z.infer<typeof Schedule>;

/** A `job.report` (protocol `ReportMessage`), as it goes into the outbox. */
export type ReportEnvelope = {
  type: "job.report";
  v: 1;
  id: string;
  function: string;
  args: JsonObject;
  metadata: Record<string, string>;
  return: JobReturnBody;
};

/** Timers and time, injectable so tests need not wait minutes. */
export interface SchedulerClock {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: SchedulerClock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => {
    const timer = setTimeout(callback, ms);
    // A pending schedule alone does not keep the process alive; the connection does.
    timer.unref();
    return timer;
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface SchedulerOptions {
  readonly runner: Pick<JobRunner, "runLocal">;
  /** Durable send: `AgentConnection.enqueue`. */
  readonly enqueue: (message: ReportEnvelope) => unknown;
  readonly logger: Logger;
  readonly clock?: SchedulerClock;
  /** In [0, 1), for splay (default Math.random). */
  readonly random?: () => number;
}

/** Why a run happened: its timer, `run_on_start`, or a direct `runNow`. */
export type RunTrigger = "timer" | "start" | "manual";

/** Schedule names become report ids and metadata values; keep them short and plain. */
const NAME_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/;
/** setTimeout fires at once beyond this; longer waits are re-armed. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const UNIT_SECONDS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86_400 };

interface Entry {
  readonly name: string;
  readonly def: ScheduleDef;
  /** The parsed definition, canonical: a change of it reschedules. */
  readonly key: string;
  readonly intervalMs: number | undefined;
  readonly cron: CronSpec | undefined;
  /** The next run's nominal time (without splay); interval runs advance from it, so splay does not drift. */
  due: number;
  timer: unknown;
}

/** Seconds of an `interval`: a number, or `90s`, `15m`, `1h`, `1d` (no unit = seconds). */
export function intervalSeconds(interval: number | string): number {
  if (typeof interval === "number") return interval;
  const match = /^(\d+)([smhd]?)$/.exec(interval);
  if (!match) throw new Error(`interval '${interval}' is not a number of seconds or a duration like 90s, 15m, 1h, 1d`);
  const seconds = Number(match[1]) * (UNIT_SECONDS[match[2] || "s"] as number);
  if (seconds < 1) throw new Error(`interval '${interval}' must be at least one second`);
  return seconds;
}

export class Scheduler {
  readonly #options: SchedulerOptions;
  readonly #log: Logger;
  readonly #clock: SchedulerClock;
  readonly #random: () => number;
  readonly #entries = new Map<string, Entry>();
  /** Runs in flight, by schedule name; kept across redefinitions so a changed schedule does not overlap its old run. */
  readonly #running = new Map<string, Promise<void>>();
  #stopped = false;
  #runSeq = 0;

  constructor(options: SchedulerOptions) {
    this.#options = options;
    this.#log = options.logger;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
  }

  /** Loads the store's current snapshot and follows its changes; returns the unsubscribe function. */
  attach(store: Pick<SettingsStore, "currentSettings" | "onChange">): () => void {
    this.load(store.currentSettings());
    return store.onChange((snapshot) => this.load(snapshot));
  }

  /** Names of the schedules that are armed (valid and enabled). */
  get scheduled(): string[] {
    return [...this.#entries.keys()];
  }

  /** When `name` runs next (epoch ms, splay included), if it is armed. */
  nextRunAt(name: string): number | undefined {
    return this.#entries.get(name)?.due;
  }

  /** Names with a run in flight. */
  get running(): string[] {
    return [...this.#running.keys()];
  }

  /** Reconciles the armed schedules with a settings snapshot: new ones start, changed ones restart, removed ones stop. */
  load(snapshot: SettingsSnapshot | null): void {
    if (this.#stopped) return;
    const wanted = this.#parse(snapshot);
    for (const [name, entry] of this.#entries) {
      if (wanted.get(name)?.key === entry.key) continue;
      this.#clock.clearTimeout(entry.timer);
      this.#entries.delete(name);
      this.#log.info(wanted.has(name) ? "schedule changed" : "schedule removed", { schedule: name });
    }
    for (const [name, entry] of wanted) {
      if (this.#entries.has(name)) continue;
      this.#entries.set(name, entry);
      this.#arm(entry, this.#clock.now());
      this.#log.info("schedule loaded", { schedule: name, function: entry.def.function, nextRun: new Date(entry.due).toISOString() });
      if (entry.def.run_on_start) this.#start(entry, "start");
    }
  }

  /** Runs a schedule now (outside its timing); false when unknown, stopped or still running. */
  runNow(name: string): boolean {
    const entry = this.#entries.get(name);
    return entry !== undefined && this.#start(entry, "manual");
  }

  /** Resolves once no schedule run is in flight. */
  async idle(): Promise<void> {
    while (this.#running.size > 0) await Promise.all(this.#running.values());
  }

  /** Disarms every schedule and waits for the runs in flight (the runner's stop aborts them). */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const entry of this.#entries.values()) this.#clock.clearTimeout(entry.timer);
    this.#entries.clear();
    await this.idle();
  }

  #parse(snapshot: SettingsSnapshot | null): Map<string, Entry> {
    const entries = new Map<string, Entry>();
    const raw = snapshot?.settings[SCHEDULES_SETTING];
    if (raw === undefined || raw === null) return entries;
    if (typeof raw !== "object" || Array.isArray(raw)) {
      this.#log.warn("ignored the schedules setting: it is not an object of schedules by name", { setting: SCHEDULES_SETTING });
      return entries;
    }
    for (const [name, value] of Object.entries(raw)) {
      const invalid = (problem: string) => this.#log.warn("ignored an invalid schedule", { schedule: name, problem });
      if (!NAME_PATTERN.test(name)) {
        invalid("a schedule name is 1-64 letters, digits, '_', '.', ':' or '-'");
        continue;
      }
      const parsed = Schedule.safeParse(value);
      if (!parsed.success) {
        invalid(parsed.error.issues.map((issue) => (issue.path.length > 0 ? `${issue.path.join(".")}: ${issue.message}` : issue.message)).join("; "));
        continue;
      }
      const def = parsed.data;
      if (!def.enabled) {
        this.#log.info("schedule is disabled", { schedule: name });
        continue;
      }
      let intervalMs: number | undefined;
      let cron: CronSpec | undefined;
      try {
        if (def.interval !== undefined) intervalMs = intervalSeconds(def.interval) * 1000;
        if (def.cron !== undefined) {
          cron = parseCron(def.cron);
          // Fails now, not at arming time, for a date that never comes (`0 0 30 2 *`).
          nextRun(cron, new Date(this.#clock.now()));
        }
      } catch (error) {
        invalid(messageOf(error));
        continue;
      }
      entries.set(name, { name, def, key: canonicalJson(def), intervalMs, cron, due: 0, timer: undefined });
    }
    return entries;
  }

  /** Sets the entry's next run after `from` (nominal time), plus splay, and starts its timer. */
  #arm(entry: Entry, from: number): void {
    let nominal: number;
    if (entry.intervalMs !== undefined) {
      nominal = from + entry.intervalMs;
    } else {
      nominal = nextRun(entry.cron as CronSpec, new Date(from)).getTime();
    }
    const splayMs = Math.floor(this.#random() * (entry.def.splay * 1000 + 1));
    entry.due = nominal + splayMs;
    this.#wait(entry, nominal);
  }

  #wait(entry: Entry, nominal: number): void {
    const delay = Math.max(0, entry.due - this.#clock.now());
    entry.timer = this.#clock.setTimeout(() => this.#fire(entry, nominal), Math.min(delay, MAX_TIMER_MS));
  }

  #fire(entry: Entry, nominal: number): void {
    if (this.#entries.get(entry.name) !== entry) return;
    const now = this.#clock.now();
    if (now < entry.due) {
      // A wait longer than one timer can hold.
      this.#wait(entry, nominal);
      return;
    }
    // After a long sleep (suspended host, clock jump), runs that were missed are not caught up: one now, then on schedule.
    this.#arm(entry, Math.max(nominal, now - (entry.intervalMs ?? 0)));
    this.#start(entry, "timer");
  }

  /** Starts one run unless the previous one still goes; true if it started. */
  #start(entry: Entry, trigger: RunTrigger): boolean {
    const { name, def } = entry;
    if (this.#stopped) return false;
    if (this.#running.has(name)) {
      this.#log.warn("schedule still running; skipped this run", { schedule: name, function: def.function, trigger });
      return false;
    }
    const startedMs = this.#clock.now();
    const id = `schedule.${name}.${startedMs}.${++this.#runSeq}.${randomBytes(4).toString("hex")}`;
    const run = this.#options.runner
      .runLocal(def.function, def.args as JsonObject, def.timeout, id)
      .then((body) => this.#finish(entry, id, body))
      .catch((error: unknown) => this.#log.error("schedule run crashed", { schedule: name, error: messageOf(error) }))
      .finally(() => this.#running.delete(name));
    this.#running.set(name, run);
    return true;
  }

  #finish(entry: Entry, id: string, body: JobReturnBody): void {
    const { name, def } = entry;
    const { success, retcode, durationMs, error } = body;
    this.#log.info("schedule ran", { schedule: name, function: def.function, success, retcode, durationMs, ...(error === null ? {} : { error }) });
    if (!def.return_job) return;
    const report = fitToFrame<ReportEnvelope>({
      type: "job.report",
      v: 1,
      id,
      function: def.function,
      args: def.args as JsonObject,
      metadata: { schedule: name },
      return: body,
    });
    try {
      this.#options.enqueue(report);
    } catch (problem) {
      this.#log.error("could not store a schedule report", { schedule: name, id, error: messageOf(problem) });
    }
  }
}
