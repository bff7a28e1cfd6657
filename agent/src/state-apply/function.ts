import type { JsonObject, JsonValue } from "../../../protocol/json.ts";
import type { TargetCandidate } from "../../../protocol/target.ts";
import { argument, positional } from "../jobs/args.ts";
import { type FunctionContext, FunctionError, FunctionOutcome, type JobFunction } from "../jobs/types.ts";
import type { CommandRunner } from "./commands.ts";
import { applyStates } from "./engine.ts";

/**
 * The `state.*` function family over `applyStates`. Not registered by itself:
 * the agent adds `stateFunctions({...})` to its function list (see the README
 * of this folder's report).
 */

export interface StateFunctionOptions {
  /** The state tree directory, e.g. `<data dir>/states`. */
  readonly tree: () => string;
  /** This node's id and grains (`buildGrains(facts, labels)`), for top.yaml. */
  readonly node: () => TargetCandidate;
  readonly runCommand?: CommandRunner;
}

/** `states=` / `name=` / the first positional: one name, comma-separated names or a list; none means top.yaml. */
export function stateNames(args: JsonObject): string[] | null {
  const value = argument(args, "states") ?? argument(args, "name") ?? positional(args)[0];
  if (value === undefined || value === null) return null;
  const list = Array.isArray(value) ? (value as JsonValue[]) : [value];
  const names: string[] = [];
  for (const item of list) {
    if (typeof item !== "string") throw new FunctionError("state names must be strings");
    for (const name of item.split(",")) if (name.trim() !== "") names.push(name.trim());
  }
  return names.length === 0 ? null : names;
}

/** Dry run: the dispatch's `test` (a context field once the runner passes it) or `test=true` in the arguments. */
function testMode(args: JsonObject, context: FunctionContext): boolean {
  const fromContext = context.test;
  const fromArgs = argument(args, "test");
  return fromContext === true || fromArgs === true || (typeof fromArgs === "string" && /^(true|1|yes)$/i.test(fromArgs));
}

async function run(options: StateFunctionOptions, args: JsonObject, context: FunctionContext, test: boolean): Promise<FunctionOutcome> {
  const outcome = await applyStates({
    tree: options.tree(),
    names: stateNames(args),
    node: options.node(),
    test,
    signal: context.signal,
    killGraceMs: context.killGraceMs,
    ...(options.runCommand ? { runCommand: options.runCommand } : {}),
  });
  const failed = outcome.results.filter((result) => result.result === false).length;
  const error = outcome.success
    ? null
    : (outcome.aborted ?? (outcome.errors.length > 0 ? outcome.errors.join("; ") : `${failed} of ${outcome.results.length} states failed`));
  return new FunctionOutcome({ success: outcome.success, retcode: outcome.success ? 0 : 1, result: { ...outcome, test }, error });
}

export function stateFunctions(options: StateFunctionOptions): JobFunction[] {
  return [
    {
      name: "state.apply",
      doc: "Applies states from the local state tree (states= / name= / first positional, comma-separated; none: what top.yaml assigns); test=true for a dry run.",
      mutates: true,
      dryRuns: true,
      describe: (args) => {
        const names = stateNames(args);
        return `apply ${names === null ? "the states top.yaml assigns" : names.join(", ")} from ${options.tree()}`;
      },
      run: (args, context) => run(options, args, context, testMode(args, context)),
    },
    {
      name: "state.test",
      doc: "state.apply as a dry run: reports what would change and changes nothing (onlyif/unless checks still run).",
      mutates: false,
      run: (args, context) => run(options, args, context, true),
    },
  ];
}
