import type { JsonObject } from "../../../protocol/json.ts";
import type { TargetCandidate } from "../../../protocol/target.ts";
import { abortReason } from "../jobs/types.ts";
import { messageOf } from "../state/files.ts";
import { type CommandRunner, DEFAULT_KILL_GRACE_MS, runShell, systemCommandRunner } from "./commands.ts";
import { detectPackageManager, type ModuleContext, type Outcome, type PackageManager, Params, type Prepared, STATE_MODULES } from "./modules.ts";
import { type Chunk, loadStates, requisiteText, TreeError, topStates } from "./tree.ts";

/**
 * `state.apply`'s engine: resolve the state names (given, or what top.yaml
 * assigns to the node), load the chunks, check every module's parameters and
 * every requisite (missing ones and cycles stop everything before anything
 * runs), then run the chunks in declaration order, each after what it requires.
 */

export interface ApplyOptions {
  /** The state tree directory (the agent's state-file cache). */
  readonly tree: string;
  /** The states to apply; null: what top.yaml assigns to `node`. */
  readonly names: readonly string[] | null;
  readonly node: TargetCandidate;
  /** Dry run: nothing changes; result null where something would. */
  readonly test: boolean;
  /** Cancel: no further state starts, and a running command's process group is killed. */
  readonly signal: AbortSignal;
  /** Runs pkg/service commands (an argv); default: through /bin/sh in its own process group. */
  readonly runCommand?: CommandRunner;
  /** SIGTERM → SIGKILL delay for killed commands (default 2 s). */
  readonly killGraceMs?: number;
}

export interface StateResult {
  /** The state id. */
  readonly id: string;
  /** The `name` parameter (path, command, package, service), else the id. */
  readonly name: string;
  /** `file.managed`, ... */
  readonly module: string;
  /** true: in the declared state; false: failed or not run; null: test mode, would change. */
  readonly result: boolean | null;
  readonly changed: boolean;
  readonly diff: JsonObject | null;
  readonly comment: string;
  readonly durationMs: number;
}

export interface ApplyResult {
  /** No state failed, and nothing stopped the apply. */
  readonly success: boolean;
  /** The state names applied. */
  readonly states: readonly string[];
  /** One per chunk in run order (empty when `errors` stopped everything up front). */
  readonly results: readonly StateResult[];
  /** Problems found before anything ran: tree, top.yaml, requisites. */
  readonly errors: readonly string[];
  /** Why the apply stopped early (canceled, timed out), else null. */
  readonly aborted: string | null;
}

interface Planned {
  readonly chunk: Chunk;
  readonly name: string;
  readonly prepared: Prepared | null;
  /** Why it cannot run (unknown module or parameter), else null. */
  readonly invalid: string | null;
  readonly requires: readonly Chunk[];
}

const failedUpFront = (states: readonly string[], errors: readonly string[]): ApplyResult => ({ success: false, states, results: [], errors, aborted: null });

export async function applyStates(options: ApplyOptions): Promise<ApplyResult> {
  let names: string[];
  let chunks: Chunk[];
  try {
    names = options.names === null ? await topStates(options.tree, options.node) : [...options.names];
    if (names.length === 0) {
      return failedUpFront([], [options.names === null ? `top.yaml assigns no states to ${options.node.id}` : "no states to apply"]);
    }
    chunks = await loadStates(options.tree, names);
  } catch (error) {
    if (error instanceof TreeError) return failedUpFront(options.names ?? [], [error.message]);
    throw error;
  }

  const errors: string[] = [];
  const plan = new Map<string, Planned>();
  for (const chunk of chunks) {
    const module = STATE_MODULES.get(chunk.module);
    let prepared: Prepared | null = null;
    let invalid: string | null = null;
    if (!module) invalid = `unknown module ${chunk.module}`;
    else {
      try {
        prepared = module.prepare(new Params(chunk.id, chunk.module, chunk.params));
      } catch (error) {
        invalid = messageOf(error);
      }
    }
    const requires: Chunk[] = [];
    for (const requisite of chunk.require) {
      const found = chunks.filter(
        (other) =>
          (other.id === requisite.ref || nameParam(other) === requisite.ref) &&
          (requisite.module === null || (requisite.module.includes(".") ? other.module === requisite.module : other.module.startsWith(`${requisite.module}.`))),
      );
      if (found.length === 0) errors.push(`${chunk.module} ${chunk.id}: requisite not found: ${requisiteText(requisite)}`);
      for (const other of found) if (!requires.includes(other)) requires.push(other);
    }
    const name = prepared?.name ?? nameParam(chunk) ?? chunk.id;
    plan.set(chunk.key, { chunk, name, prepared, invalid, requires });
  }
  if (errors.length > 0) return failedUpFront(names, errors);

  const order = runOrder(plan);
  if (!Array.isArray(order)) return failedUpFront(names, [order.cycle]);

  const runner = options.runCommand ?? systemCommandRunner(options.killGraceMs);
  const killGraceMs = options.killGraceMs ?? DEFAULT_KILL_GRACE_MS;
  let manager: Promise<PackageManager | null> | undefined;
  const context: ModuleContext = {
    test: options.test,
    signal: options.signal,
    shell: (command, cwd) => runShell(command, cwd, options.signal, killGraceMs),
    run: runner,
    packageManager: () => (manager ??= detectPackageManager(runner, options.signal)),
  };

  const results = new Map<string, StateResult>();
  let aborted: string | null = null;
  for (const planned of order) {
    const { chunk } = planned;
    const base = { id: chunk.id, name: planned.name, module: chunk.module };
    if (options.signal.aborted) {
      aborted ??= abortReason(options.signal).message;
      results.set(chunk.key, { ...base, result: false, changed: false, diff: null, comment: `not run: ${aborted}`, durationMs: 0 });
      continue;
    }
    const failed = planned.requires.filter((other) => results.get(other.key)?.result === false);
    if (failed.length > 0) {
      const comment = `requisite failed: ${failed.map((other) => `${other.module} ${other.id}`).join(", ")}`;
      results.set(chunk.key, { ...base, result: false, changed: false, diff: null, comment, durationMs: 0 });
      continue;
    }
    const started = performance.now();
    let outcome: Outcome;
    if (planned.prepared === null) outcome = { result: false, changed: false, diff: null, comment: planned.invalid ?? "cannot run" };
    else {
      try {
        outcome = await planned.prepared.run(context);
      } catch (error) {
        outcome = { result: false, changed: false, diff: null, comment: messageOf(error) };
      }
    }
    results.set(chunk.key, { ...base, ...outcome, durationMs: Math.round(performance.now() - started) });
  }
  if (options.signal.aborted) aborted ??= abortReason(options.signal).message;

  const list = order.map((planned) => results.get(planned.chunk.key) as StateResult);
  return { success: aborted === null && list.every((result) => result.result !== false), states: names, results: list, errors: [], aborted };
}

function nameParam(chunk: Chunk): string | undefined {
  const name = chunk.params.get("name");
  return typeof name === "string" ? name : undefined;
}

/**
 * Declaration order, each chunk moved after everything it requires (the first
 * chunk in declaration order whose requisites are placed goes next). A cycle is
 * reported as its path.
 */
function runOrder(plan: ReadonlyMap<string, Planned>): Planned[] | { cycle: string } {
  const pending = [...plan.values()];
  const placed = new Set<string>();
  const order: Planned[] = [];
  while (pending.length > 0) {
    const index = pending.findIndex((planned) => planned.requires.every((other) => placed.has(other.key)));
    if (index < 0) return { cycle: describeCycle(pending, plan) };
    const [next] = pending.splice(index, 1) as [Planned];
    placed.add(next.chunk.key);
    order.push(next);
  }
  return order;
}

function describeCycle(pending: readonly Planned[], plan: ReadonlyMap<string, Planned>): string {
  // Every pending chunk waits on another pending one, so walking requisites must revisit one.
  const path: string[] = [];
  let current = pending[0] as Planned;
  while (!path.includes(current.chunk.key)) {
    path.push(current.chunk.key);
    const next = current.requires.find((other) => pending.some((p) => p.chunk.key === other.key));
    current = plan.get((next as Chunk).key) as Planned;
  }
  const loop = [...path.slice(path.indexOf(current.chunk.key)), current.chunk.key];
  return `requisite cycle: ${loop.map((key) => key.replace(":", " ")).join(" → ")}`;
}
