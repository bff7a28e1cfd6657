import type { JsonObject, JsonValue } from "../../../protocol/json.ts";
import type { Facts } from "../../../protocol/nodes.ts";
import type { SettingsSnapshot } from "../state/settings.ts";

/**
 * What a job function is and what it is given. One module per function family
 * (`functions/*.ts`) exports a list of these; the runner looks them up by name.
 */

/** The name, one-line doc and kind of a function, as `sys.list_functions` shows it. */
export interface FunctionInfo {
  readonly name: string;
  readonly doc: string;
  /** Mutating functions change the host: they run one at a time through the queue and not at all in a dry run. */
  readonly mutates: boolean;
}

export interface FunctionContext {
  readonly jid: string;
  /** Aborted on cancel, on the job's timeout and when the agent stops; `signal.reason` is a `JobAbort`. */
  readonly signal: AbortSignal;
  /** This host's facts, collected now. */
  readonly facts: () => Facts;
  /** The last-known-good settings snapshot, or null before the first one arrived. */
  readonly settings: () => SettingsSnapshot | null;
  /** Every function this agent offers. */
  readonly functions: () => readonly FunctionInfo[];
  /** How long a process group gets between SIGTERM and SIGKILL. */
  readonly killGraceMs: number;
  /** The dispatch asked for a dry run; only functions with `dryRuns` see it set, the runner answers for the rest. */
  readonly test: boolean;
}

/**
 * An explicit outcome, for functions whose failure still carries a result
 * (`cmd.run`'s output). A plain value returned by `run` means success (retcode 0);
 * a thrown error means failure with its message. A class, so no JSON result
 * can ever be mistaken for one.
 */
export class FunctionOutcome {
  readonly success: boolean;
  readonly retcode: number | null;
  readonly result: JsonValue;
  readonly error: string | null;

  constructor(fields: { success: boolean; retcode: number | null; result: JsonValue; error: string | null }) {
    this.success = fields.success;
    this.retcode = fields.retcode;
    this.result = fields.result;
    this.error = fields.error;
  }
}

export interface JobFunction extends FunctionInfo {
  run(args: JsonObject, context: FunctionContext): JsonValue | FunctionOutcome | Promise<JsonValue | FunctionOutcome>;
  /** Mutating functions only: what a dry run (`test: true`) would do, e.g. `run 'touch x' with /bin/sh`. May throw on bad arguments. */
  describe?(args: JsonObject): string;
  /** Does its own dry run (like state.apply): with `test: true` the runner calls it instead of answering `would`. */
  readonly dryRuns?: boolean;
}

/** A failure the caller caused (bad arguments, missing file): its message is the job's error, as is. */
export class FunctionError extends Error {
  override readonly name: string = "FunctionError";
}

export type AbortKind = "canceled" | "timeout" | "stopped";

/** Why a job's execution context was aborted; its message is the job's error. */
export class JobAbort extends Error {
  override readonly name: string = "JobAbort";
  readonly kind: AbortKind;

  constructor(kind: AbortKind, message: string) {
    super(message);
    this.kind = kind;
  }

  static canceled(): JobAbort {
    return new JobAbort("canceled", "execution canceled");
  }

  static timeout(seconds: number): JobAbort {
    return new JobAbort("timeout", `timed out after ${seconds}s`);
  }

  static stopped(): JobAbort {
    return new JobAbort("stopped", "agent stopped");
  }
}

/** The reason a signal was aborted with, as a JobAbort (anything else counts as a cancel). */
export function abortReason(signal: AbortSignal): JobAbort {
  return signal.reason instanceof JobAbort ? signal.reason : JobAbort.canceled();
}

/** Rejects with the signal's JobAbort if it is already aborted. */
export function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw abortReason(signal);
}
