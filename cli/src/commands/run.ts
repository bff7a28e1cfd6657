import { FUNCTION_NAME_PATTERN, MAX_JOB_TIMEOUT_SECONDS } from "../../../protocol/jobs.ts";
import { NodeId } from "../../../protocol/nodes.ts";
import { MAX_TARGET_LENGTH } from "../../../protocol/target.ts";
import { parseDuration } from "../../../protocol/duration.ts";
import type { CreateJobRequest } from "../client.ts";
import { defineCommand, type Entry } from "../command.ts";
import { UsageError } from "../errors.ts";
import { buildJobArgs, followJob } from "../jobs.ts";

const PATH = ["run"];

export function checkFunctionName(fn: string, commandPath: readonly string[]): string {
  if (!FUNCTION_NAME_PATTERN.test(fn)) throw new UsageError(`invalid function '${fn}': functions look like module.function, e.g. test.ping`, commandPath);
  return fn;
}

/** Seconds, or a duration such as 90s, 5m or 2h, between 1s and 24h. */
export function parseTimeout(text: string, commandPath: readonly string[]): number {
  const seconds = parseDuration(text);
  if (seconds === null || seconds < 1 || seconds > MAX_JOB_TIMEOUT_SECONDS) {
    throw new UsageError(`invalid --timeout '${text}': give seconds (or 90s, 5m, 2h) from 1 to ${MAX_JOB_TIMEOUT_SECONDS}`, commandPath);
  }
  return seconds;
}

/** `web-1,web-2` → the ids, each checked; for `-L`. */
export function parseTargetList(text: string, commandPath: readonly string[]): string[] {
  const ids = text.split(",").map((id) => id.trim()).filter((id) => id !== "");
  if (ids.length === 0) throw new UsageError("--list needs at least one node id, e.g. web-1,web-2", commandPath);
  for (const id of ids) {
    const parsed = NodeId.safeParse(id);
    if (!parsed.success) throw new UsageError(`invalid node id '${id}' in the list: ${parsed.error.issues[0]?.message ?? "bad node id"}`, commandPath);
  }
  return [...new Set(ids)];
}

const run = defineCommand({
  path: PATH,
  summary: "Run a function on the nodes a target selects and print the returns ('zectre TARGET FUNCTION' for short)",
  description:
    "TARGET is a target expression: a glob over node ids ('web*'), E@regex, G@fact:value (with != < <= > >=), " +
    "L@a,b,c, or a compound with and/or/not and parentheses. FUNCTION is module.function, e.g. test.ping or cmd.run.\n\n" +
    "ARGS: key=value words are keyword arguments (the value is read as JSON when it is JSON, else as text); " +
    "other words are positional. For cmd.run the positional words are joined into the command, so quote it or " +
    "write it out: zectre 'web*' cmd.run 'ls -la /tmp'. A cmd.run word with a space in it is always part of the command " +
    "(write cwd=/srv, env={\"A\":\"1\"} without spaces). Put -- before words that start with a dash.\n\n" +
    "The job is submitted, then its returns are printed as each node answers, with a summary on stderr at the end. " +
    "Exit codes: 0 all succeeded, 2 some failed, 3 some unreachable or missing, 4 both, 1 usage or infrastructure errors. " +
    "Ctrl-C stops waiting but not the job ('zectre job kill' stops it). With --format json or yaml the final job record is printed instead.\n\n" +
    "When the first word is not a zectre command, 'run' may be left out: zectre '*' test.ping.",
  usage: "zectre [run] TARGET FUNCTION [ARGS...] [--timeout SECONDS] [--async] [--test] [-L]",
  options: {
    timeout: { type: "string", valueName: "SECONDS", description: "How long the job waits for returns, e.g. 30 or 5m (default: the server's, 60s)" },
    async: { type: "boolean", description: "Print the job id and exit without waiting; follow it with 'zectre job watch'" },
    test: { type: "boolean", description: "Dry run: functions report what they would do without doing it" },
    list: { type: "boolean", short: "L", description: "TARGET is a comma-separated list of node ids" },
  },
  positionals: [
    { name: "target", required: true, description: "Which nodes: a target expression, or node ids with -L" },
    { name: "function", required: true, description: "What to run, as module.function" },
    { name: "args", variadic: true, description: "key=value keyword arguments and positional words" },
  ],
  examples: [
    "zectre '*' test.ping",
    "zectre 'web*' cmd.run 'ls -la /tmp'",
    "zectre run 'G@os:linux and not web-3' cmd.run 'uptime' --timeout 30",
    "zectre -L web-1,web-2 test.echo hello count=3",
    "zectre run '*' test.ping --async",
  ],
  shorthand: (positionals) => positionals.length >= 2 && FUNCTION_NAME_PATTERN.test(positionals[1] as string),
  async run(ctx) {
    const { target } = ctx.args;
    const fn = checkFunctionName(ctx.args.function, PATH);
    if (target.length > MAX_TARGET_LENGTH) throw new UsageError(`the target is longer than ${MAX_TARGET_LENGTH} characters`, PATH);
    const body: CreateJobRequest = {
      ...(ctx.options.list ? { targets: parseTargetList(target, PATH) } : { target }),
      function: fn,
      args: buildJobArgs(fn, ctx.args.args, PATH),
    };
    if (ctx.options.timeout !== undefined) body.timeout = parseTimeout(ctx.options.timeout, PATH);
    if (ctx.options.test) body.test = true;

    const client = ctx.client();
    const startedAt = Date.now();
    const created = await client.createJob(body);
    if (ctx.options.async) {
      ctx.out.result(created, () => created.jid);
      return 0;
    }
    return followJob({ client, io: ctx.io, out: ctx.out, jid: created.jid, targets: created.targets, fn, startedAt });
  },
});

export const runCommands: readonly Entry[] = [run];
