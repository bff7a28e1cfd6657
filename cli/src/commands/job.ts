import { JID_PATTERN, type JobRecord, type JobTarget } from "../../../protocol/jobs.ts";
import { defineCommand, defineGroup, type Entry } from "../command.ts";
import { UsageError } from "../errors.ts";
import { followJob, formatDuration } from "../jobs.ts";
import { serializeJson, table } from "../output.ts";

const group = defineGroup({
  path: ["job"],
  summary: "List, inspect, watch and kill jobs",
  description: "A job is one function run on the nodes a target selected ('zectre run'). Its id (jid) is 23 digits that sort by time.",
});

const JID_ARG = { name: "jid", required: true, description: "The job's id, as 'zectre run --async' or 'zectre job list' shows it" } as const;

export function checkJid(jid: string, commandPath: readonly string[]): string {
  if (!JID_PATTERN.test(jid)) throw new UsageError(`invalid job id '${jid}': a jid is 23 digits, e.g. 20260105102030123456789`, commandPath);
  return jid;
}

const list = defineCommand({
  path: ["job", "list"],
  summary: "List recent jobs, newest first",
  options: {
    limit: { type: "string", short: "n", valueName: "N", description: "At most N jobs (default: the server's)" },
  },
  examples: ["zectre job list", "zectre job list --limit 5 --format json"],
  async run(ctx) {
    let limit: number | undefined;
    if (ctx.options.limit !== undefined) {
      if (!/^\d{1,6}$/.test(ctx.options.limit) || Number(ctx.options.limit) < 1) {
        throw new UsageError(`invalid --limit '${ctx.options.limit}': give a whole number from 1`, ["job", "list"]);
      }
      limit = Number(ctx.options.limit);
    }
    const result = await ctx.client().listJobs(limit);
    ctx.out.result(result, (c) => {
      if (result.jobs.length === 0) return "No jobs found.";
      const rows = result.jobs.map((job) => [job.jid, job.function, job.target, job.status, job.user]);
      return table(["JID", "FUNCTION", "TARGET", "STATE", "USER"], rows, c);
    });
  },
});

const active = defineCommand({
  path: ["job", "active"],
  summary: "List the jobs still running, with how many targets each has",
  examples: ["zectre job active"],
  async run(ctx) {
    const result = await ctx.client().activeJobs();
    ctx.out.result(result, (c) => {
      if (result.jobs.length === 0) return "No active jobs.";
      const rows = result.jobs.map((job) => [job.jid, job.function, String(job.counts.targets), job.status]);
      return table(["JID", "FUNCTION", "TARGETS", "STATUS"], rows, c);
    });
  },
});

/** Per target: its state (or `unreachable` for a stand-in return), whether it succeeded, and how long it ran. */
export function returnRow(target: JobTarget): string[] {
  const ret = target.return;
  if (ret === null) return [target.nodeId, target.state, "-", "-"];
  if (ret.synthetic) return [target.nodeId, "unreachable", "-", "-"];
  return [target.nodeId, target.state, ret.success ? "yes" : "no", formatDuration(ret.durationMs)];
}

const show = defineCommand({
  path: ["job", "show"],
  summary: "Show a job: its record as JSON, then one row per target",
  description: "In text the per-target returns are summarized in a table; --format json or yaml prints the whole record, returns included.",
  positionals: [JID_ARG],
  examples: ["zectre job show 20260105102030123456789", "zectre job show 20260105102030123456789 --format json"],
  async run(ctx) {
    const jid = checkJid(ctx.args.jid, ["job", "show"]);
    const result = await ctx.client().getJob(jid);
    ctx.out.result(result, (c) => {
      const { targets, ...fields }: JobRecord = result.job;
      return [serializeJson(fields).trimEnd(), "", "Returns:", ...table(["NODE", "STATUS", "SUCCESS", "DURATION"], targets.map(returnRow), c)];
    });
  },
});

const kill = defineCommand({
  path: ["job", "kill"],
  summary: "Ask a running job to stop: nodes abort the function, and the job ends as canceled",
  description: "Cancel is best effort: a node that already returned keeps its return. A job that has finished cannot be killed (409).",
  positionals: [JID_ARG],
  examples: ["zectre job kill 20260105102030123456789"],
  async run(ctx) {
    const jid = checkJid(ctx.args.jid, ["job", "kill"]);
    const result = await ctx.client().cancelJob(jid);
    ctx.out.result(result, () => `Cancel signal sent for job ${result.jid}`);
  },
});

const watch = defineCommand({
  path: ["job", "watch"],
  summary: "Follow a job's returns as they arrive, from the start, until it finishes",
  description:
    "Prints the same as 'zectre run' does while waiting, and exits with the same codes: 0 all succeeded, 2 some failed, " +
    "3 some unreachable or missing, 4 both. A finished job is replayed and exits at once. Ctrl-C stops watching, not the job.",
  positionals: [JID_ARG],
  examples: ["zectre job watch 20260105102030123456789", "zectre job watch 20260105102030123456789 --format json"],
  async run(ctx) {
    const jid = checkJid(ctx.args.jid, ["job", "watch"]);
    const client = ctx.client();
    const startedAt = Date.now();
    // The record names the function (how returns print) and the targets (which are missing at the end),
    // and an unknown jid fails here with the server's own 404.
    const { job } = await client.getJob(jid);
    const targets = job.targets.map((target) => target.nodeId);
    return followJob({ client, io: ctx.io, out: ctx.out, jid, targets, fn: job.function, startedAt });
  },
});

export const jobCommands: readonly Entry[] = [group, list, active, show, kill, watch];
