import { EventEmitter } from "node:events";
import type { JobDispatch } from "../../../protocol/jobs.ts";
import type { JsonObject, JsonValue } from "../../../protocol/json.ts";
import type { Facts } from "../../../protocol/nodes.ts";
import type { AgentConnection } from "../connection.ts";
import type { Logger } from "../log.ts";
import type { DedupLedger } from "../state/ledger.ts";
import type { SettingsSnapshot } from "../state/settings.ts";
import { builtinFunctions } from "./functions/index.ts";
import { DEFAULT_QUEUE_CAPACITY, QueueFullError, SerialQueue } from "./queue.ts";
import { errorText, fitToFrame, type JobReturnBody, type ReturnEnvelope, returnId, toJson } from "./returns.ts";
import { abortReason, type FunctionContext, type FunctionInfo, FunctionOutcome, type JobFunction, JobAbort } from "./types.ts";

/**
 * The agent's job runtime. A `job.dispatch` is recorded in the ledger (durably)
 * and started without being awaited, so the action is acked as soon as it is
 * accepted; its return goes to the outbox when it finishes, whatever the state
 * of the connection. Mutating functions pass one at a time through a bounded
 * FIFO; read-only ones run at once. Cancel, the job's timeout and agent stop
 * all abort the job's execution context, queued or running.
 */

export const DEFAULT_KILL_GRACE_MS = 2_000;
/** setTimeout fires at once beyond this (about 24.8 days); the wire allows any timeout, so clamp. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface JobRunnerOptions {
  /** `jid → epoch`, recorded before a job runs; a dispatch already seen is not run again. */
  readonly ledger: DedupLedger;
  /** Stores a return durably and sends it when connected: `AgentConnection.enqueue`. */
  readonly enqueue: (message: ReturnEnvelope) => unknown;
  readonly logger: Logger;
  readonly facts: () => Facts;
  /** The current settings snapshot: `SettingsStore.currentSettings`. */
  readonly settings: () => SettingsSnapshot | null;
  /** Default: every built-in function. */
  readonly functions?: readonly JobFunction[];
  /** How many mutating jobs may wait behind the running one (default 16); beyond that a job fails with `agent busy`. */
  readonly queueCapacity?: number;
  /** SIGTERM → SIGKILL delay for a command's process group (default 2 s). */
  readonly killGraceMs?: number;
  /** How long an aborted function may take to wind down before its return is sent without it (default kill grace + 1 s). */
  readonly abortGraceMs?: number;
}

export interface JobStarted {
  readonly jid: string;
  readonly epoch: number;
  readonly function: string;
}

export interface JobRunnerEvents {
  started: [JobStarted];
  /** The return, after it went to the outbox. */
  finished: [ReturnEnvelope];
}

export type AcceptOutcome = "started" | "duplicate";

interface Outcome {
  success: boolean;
  retcode: number | null;
  result: JsonValue;
  error: string | null;
}

interface Execution {
  readonly dispatch: JobDispatch;
  readonly controller: AbortController;
  readonly acceptedAt: Date;
  readonly startedMs: number;
  readonly timer: NodeJS.Timeout;
  done: Promise<void>;
}

export class JobRunner extends EventEmitter<JobRunnerEvents> {
  readonly #options: JobRunnerOptions;
  readonly #log: Logger;
  readonly #functions = new Map<string, JobFunction>();
  readonly #infos: readonly FunctionInfo[];
  readonly #queue: SerialQueue;
  readonly #killGraceMs: number;
  readonly #abortGraceMs: number;
  /** Executions by jid (a re-dispatch with a higher epoch may overlap the one before). */
  readonly #executions = new Map<string, Set<Execution>>();
  #stopped = false;

  constructor(options: JobRunnerOptions) {
    super();
    this.#options = options;
    this.#log = options.logger;
    for (const fn of options.functions ?? builtinFunctions()) {
      if (this.#functions.has(fn.name)) throw new Error(`function ${fn.name} is registered twice`);
      this.#functions.set(fn.name, fn);
    }
    this.#infos = [...this.#functions.values()].map(({ name, doc, mutates }) => ({ name, doc, mutates }));
    this.#queue = new SerialQueue(options.queueCapacity ?? DEFAULT_QUEUE_CAPACITY);
    this.#killGraceMs = options.killGraceMs ?? DEFAULT_KILL_GRACE_MS;
    this.#abortGraceMs = options.abortGraceMs ?? this.#killGraceMs + 1_000;
  }

  /** Handles `job.dispatch` and `job.cancel` on this connection. */
  attach(connection: Pick<AgentConnection, "handle">): void {
    connection.handle("job.dispatch", (action) => {
      this.accept(action);
    });
    connection.handle("job.cancel", (action) => {
      this.cancel(action.jid);
    });
  }

  /** The functions this runner offers. */
  get functions(): readonly FunctionInfo[] {
    return this.#infos;
  }

  /** Jids with an execution that has not returned yet. */
  get active(): string[] {
    return [...this.#executions.keys()];
  }

  /** Mutating jobs waiting for the queue's slot. */
  get queued(): number {
    return this.#queue.waiting;
  }

  /**
   * Records the dispatch and starts it (without waiting for it), or recognizes a
   * repeat. Throws only when the ledger cannot be written or the runner stopped:
   * then the action must not be acked, so the server sends it again.
   */
  accept(dispatch: JobDispatch): AcceptOutcome {
    if (this.#stopped) throw new Error("the agent is stopping; not accepting jobs");
    const { jid, epoch } = dispatch;
    if (this.#options.ledger.seen(jid, epoch)) {
      this.#log.info("job already accepted; not running it again", { jid, epoch, function: dispatch.function });
      return "duplicate";
    }
    // Durable before anything runs: after a crash, a resend of this dispatch is dropped, not run twice.
    this.#options.ledger.record(jid, epoch);
    const execution = this.#track(dispatch);
    // Started on the next turn, so the action's ack is queued first and a fast job's return carries it.
    execution.done = new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.#execute(execution));
    return "started";
  }

  /**
   * Runs a function for the agent itself (a schedule), with a dispatched job's
   * semantics: the mutating queue, `timeoutSeconds` (counted from the call) and
   * abort on `stop()` (or `cancel(id)`). Nothing is recorded in the ledger or
   * sent: the outcome is returned, and never rejects. `id` names the execution
   * (the function context's `jid`, and `cancel`'s key); it must not look like a jid.
   */
  async runLocal(fn: string, args: JsonObject, timeoutSeconds: number, id: string): Promise<JobReturnBody> {
    if (this.#stopped) {
      return { success: false, retcode: null, result: null, error: JobAbort.stopped().message, durationMs: 0, startedAt: new Date().toISOString() };
    }
    const execution = this.#track({ kind: "job.dispatch", jid: id, epoch: 0, function: fn, args, timeout: timeoutSeconds, test: false });
    const body = this.#outcome(execution).then((outcome) => {
      this.#forget(execution);
      return outcome;
    });
    execution.done = body.then(() => undefined);
    return body;
  }

  /** Aborts every execution of `jid`, queued or running; returns how many. Unknown or finished jids are a no-op. */
  cancel(jid: string): number {
    let aborted = 0;
    for (const execution of this.#executions.get(jid) ?? []) {
      if (execution.controller.signal.aborted) continue;
      execution.controller.abort(JobAbort.canceled());
      aborted++;
    }
    this.#log.info(aborted > 0 ? "job canceled" : "cancel for a job that is not running; ignored", { jid, executions: aborted });
    return aborted;
  }

  /** Resolves once no job is running or queued. */
  async idle(): Promise<void> {
    while (this.#executions.size > 0) {
      await Promise.all([...this.#executions.values()].flatMap((set) => [...set].map((execution) => execution.done)));
    }
  }

  /** Refuses new jobs, aborts the running and queued ones (error `agent stopped`) and waits until their returns are stored. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const set of this.#executions.values()) {
      for (const execution of set) if (!execution.controller.signal.aborted) execution.controller.abort(JobAbort.stopped());
    }
    await this.idle();
  }

  /** Starts the execution's clock and registers it, so cancel, stop and idle see it. */
  #track(dispatch: JobDispatch): Execution {
    const controller = new AbortController();
    const execution: Execution = {
      dispatch,
      controller,
      acceptedAt: new Date(),
      startedMs: performance.now(),
      // The timeout counts from acceptance, time spent queued included, like the job's deadline.
      timer: setTimeout(() => controller.abort(JobAbort.timeout(dispatch.timeout)), Math.min(dispatch.timeout * 1000, MAX_TIMER_MS)),
      done: Promise.resolve(),
    };
    let set = this.#executions.get(dispatch.jid);
    if (!set) this.#executions.set(dispatch.jid, (set = new Set()));
    set.add(execution);
    return execution;
  }

  #forget(execution: Execution): void {
    const set = this.#executions.get(execution.dispatch.jid);
    set?.delete(execution);
    if (set?.size === 0) this.#executions.delete(execution.dispatch.jid);
  }

  /** Performs the execution and times it; never rejects. */
  async #outcome(execution: Execution): Promise<JobReturnBody> {
    let outcome: Outcome;
    try {
      outcome = await this.#perform(execution);
    } catch (error) {
      // #perform turns every failure into an outcome; this is the last line of defense.
      outcome = { success: false, retcode: null, result: null, error: errorText(error) };
    }
    clearTimeout(execution.timer);
    const durationMs = Math.round(performance.now() - execution.startedMs);
    return { ...outcome, durationMs, startedAt: execution.acceptedAt.toISOString() };
  }

  async #execute(execution: Execution): Promise<void> {
    const { jid, epoch, function: name } = execution.dispatch;
    this.#log.info("job started", { jid, epoch, function: name, test: execution.dispatch.test });
    this.emit("started", { jid, epoch, function: name });
    const body = await this.#outcome(execution);
    const { durationMs } = body;
    const message = fitToFrame({ type: "return", v: 1, id: returnId(jid, epoch), jid, epoch, return: body } satisfies ReturnEnvelope);
    try {
      this.#options.enqueue(message);
    } catch (error) {
      this.#log.error("could not store a job return", { jid, epoch, error: errorText(error) });
    }
    this.#forget(execution);
    const { success, retcode, error } = message.return;
    this.#log.info("job finished", { jid, epoch, function: name, success, retcode, durationMs, ...(error === null ? {} : { error }) });
    this.emit("finished", message);
  }

  async #perform(execution: Execution): Promise<Outcome> {
    const { dispatch, controller } = execution;
    const { signal } = controller;
    const fn = this.#functions.get(dispatch.function);
    if (!fn) return { success: false, retcode: null, result: null, error: `function '${dispatch.function}' is not available` };
    if (signal.aborted) return aborted(signal, null);

    if (dispatch.test && fn.mutates && !fn.dryRuns) {
      // A dry run: nothing executes, so nothing queues either.
      try {
        return { success: true, retcode: 0, result: { test: true, would: fn.describe?.(dispatch.args) ?? `run ${fn.name}` }, error: null };
      } catch (error) {
        return failed(error);
      }
    }

    let release: (() => void) | undefined;
    if (fn.mutates) {
      try {
        release = await this.#queue.acquire(signal);
      } catch (error) {
        if (error instanceof QueueFullError) return { success: false, retcode: null, result: null, error: error.message };
        return aborted(signal, null);
      }
    }
    try {
      if (signal.aborted) return aborted(signal, null);
      return await this.#run(fn, execution);
    } finally {
      release?.();
    }
  }

  /** Runs the function; once aborted it gets the grace period to clean up (kill its processes) before the return goes out anyway. */
  #run(fn: JobFunction, execution: Execution): Promise<Outcome> {
    const { dispatch, controller } = execution;
    const { signal } = controller;
    const context: FunctionContext = {
      jid: dispatch.jid,
      signal,
      facts: this.#options.facts,
      settings: this.#options.settings,
      functions: () => this.#infos,
      killGraceMs: this.#killGraceMs,
      test: dispatch.test,
    };
    return new Promise<Outcome>((resolve) => {
      let graceTimer: NodeJS.Timeout | undefined;
      const onAbort = () => {
        graceTimer = setTimeout(() => {
          this.#log.warn("job function did not stop after abort; returning without it", { jid: dispatch.jid, function: fn.name });
          resolve(aborted(signal, null));
        }, this.#abortGraceMs);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      const finish = (settled: () => Outcome) => {
        clearTimeout(graceTimer);
        signal.removeEventListener("abort", onAbort);
        resolve(settled());
      };
      let work: Promise<unknown>;
      try {
        work = Promise.resolve(fn.run(dispatch.args, context));
      } catch (error) {
        work = Promise.reject(error);
      }
      work.then(
        (value) => finish(() => (signal.aborted ? aborted(signal, value instanceof FunctionOutcome ? value.result : null) : succeeded(value))),
        (error: unknown) => finish(() => (signal.aborted ? aborted(signal, null) : failed(error))),
      );
    });
  }
}

function succeeded(value: unknown): Outcome {
  try {
    if (value instanceof FunctionOutcome) {
      return { success: value.success, retcode: value.retcode, result: toJson(value.result), error: value.error === null ? null : errorText(value.error) };
    }
    return { success: true, retcode: 0, result: toJson(value), error: null };
  } catch (error) {
    return failed(error);
  }
}

/** A function that threw: it ran and failed (retcode 1), unless it was aborted (no retcode). */
function failed(error: unknown): Outcome {
  if (error instanceof JobAbort) return { success: false, retcode: null, result: null, error: error.message };
  return { success: false, retcode: 1, result: null, error: errorText(error) };
}

/** Canceled, timed out or stopped: no retcode; whatever partial result the function left is kept. */
function aborted(signal: AbortSignal, partial: JsonValue): Outcome {
  let result: JsonValue = null;
  try {
    result = toJson(partial);
  } catch {
    // A partial result that is not JSON is simply dropped.
  }
  return { success: false, retcode: null, result, error: abortReason(signal).message };
}
