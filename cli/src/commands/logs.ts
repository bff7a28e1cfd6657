import type { StoredLogLine } from "../../../protocol/deployments.ts";
import { parseDuration } from "../../../protocol/duration.ts";
import type { LogQuery } from "../client.ts";
import { type CommandContext, defineCommand, type Entry } from "../command.ts";
import { CliError, oneLine, UsageError } from "../errors.ts";
import { checkAppName, checkDeploymentId } from "../deploy-config.ts";
import { logLineText } from "../deploy-format.ts";
import { parseStreamJson, readWithReconnects } from "../deploy-stream.ts";

const PATH = ["logs"];
const MAX_LIMIT = 10_000;

const logs = defineCommand({
  path: PATH,
  summary: "Print the output of an app's tasks, and follow it live with -f",
  description:
    "Each line reads TIME NODE/TASK | LINE, with '!' in place of '|' for stderr. Without -f it prints the stored lines (the newest " +
    "--limit of them, oldest first) and exits; with -f it then keeps printing new lines as tasks write them, until Ctrl-C. " +
    "--format json prints one JSON object per line (NDJSON), also while following.",
  options: {
    deployment: { type: "string", valueName: "ID", description: "Only this deployment's tasks" },
    follow: { type: "boolean", short: "f", description: "Keep printing new lines until Ctrl-C" },
    since: { type: "string", valueName: "WHEN", description: "Only lines from this long ago (10m, 2h) or since this ISO time" },
    limit: { type: "string", short: "n", valueName: "N", description: `At most N stored lines, 1 to ${MAX_LIMIT} (default: the server's, 200)` },
  },
  positionals: [{ name: "app", required: true, description: "The app" }],
  examples: ["zectre logs web", "zectre logs web -f", "zectre logs web --since 10m --deployment d0k3x9ab12", "zectre logs web -n 50 --format json"],
  async run(ctx) {
    const app = checkAppName(ctx.args.app, PATH);
    const query = readQuery(ctx.options);
    const print = linePrinter(ctx);
    const client = ctx.client();
    if (!ctx.options.follow) {
      const { lines } = await client.appLogs(app, query);
      if (lines.length === 0 && ctx.out.format === "text") ctx.io.stderr.write("No log lines found.\n");
      for (const line of lines) print(line);
      return 0;
    }
    return follow(ctx, app, query, print);
  },
});

function readQuery(options: { deployment: string | undefined; since: string | undefined; limit: string | undefined }): LogQuery {
  const query: LogQuery = {};
  if (options.deployment !== undefined) {
    query.deployment = checkDeploymentId(options.deployment, "--deployment", PATH);
  }
  if (options.since !== undefined) {
    if (parseDuration(options.since) === null && Number.isNaN(Date.parse(options.since))) {
      throw new UsageError(`invalid --since '${options.since}': give a duration such as 10m or 2h, or an ISO time such as 2026-11-23T10:00:00Z`, PATH);
    }
    query.since = options.since;
  }
  if (options.limit !== undefined) {
    if (!/^\d{1,5}$/.test(options.limit) || Number(options.limit) < 1 || Number(options.limit) > MAX_LIMIT) {
      throw new UsageError(`invalid --limit '${options.limit}': give a whole number from 1 to ${MAX_LIMIT}`, PATH);
    }
    query.limit = Number(options.limit);
  }
  return query;
}

type Print = (line: StoredLogLine) => void;

/** Text for people, NDJSON for json, one YAML document per line for yaml: all of them streamable. */
function linePrinter(ctx: CommandContext): Print {
  const { out, io } = ctx;
  if (out.format === "json") return (line) => io.stdout.write(`${JSON.stringify(line)}\n`);
  if (out.format === "yaml") {
    return (line) => {
      io.stdout.write("---\n");
      out.result(line, () => "");
    };
  }
  return (line) => io.stdout.write(`${logLineText(line, out.colors)}\n`);
}

function isLogLine(value: unknown): value is StoredLogLine {
  if (typeof value !== "object" || value === null) return false;
  const line = value as Record<string, unknown>;
  return (
    typeof line["seq"] === "number" &&
    typeof line["line"] === "string" &&
    typeof line["ts"] === "string" &&
    typeof line["taskId"] === "string" &&
    typeof line["nodeId"] === "string"
  );
}

/**
 * Prints the stream until Ctrl-C (exit 0: that is how following ends). After a
 * break it reopens from the last line's time and skips lines it already printed.
 */
async function follow(ctx: CommandContext, app: string, query: LogQuery, print: Print): Promise<number> {
  const label = `the log stream of app ${app}`;
  const controller = new AbortController();
  const stopListening = ctx.io.onInterrupt?.(() => controller.abort());
  const client = ctx.client();
  let lastSeq = 0;
  let lastTs: string | undefined;
  try {
    await readWithReconnects(
      {
        label,
        resumeHint: `zectre logs ${app} -f`,
        open: (signal) => client.followAppLogs(app, lastTs === undefined ? query : { ...query, since: lastTs }, signal),
        onData: (data) => {
          const value = parseStreamJson(data, label);
          if (!isLogLine(value)) throw new CliError(`${label} sent something that is not a log line: ${oneLine(data).slice(0, 80)}`);
          if (value.seq <= lastSeq) return false;
          lastSeq = value.seq;
          lastTs = value.ts;
          print(value);
          return false;
        },
      },
      controller.signal,
    );
    return 0;
  } finally {
    stopListening?.();
    controller.abort();
  }
}

export const logsCommands: readonly Entry[] = [logs];
