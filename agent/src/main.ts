import { existsSync } from "node:fs";
import { isIP } from "node:net";
import { basename } from "node:path";
import { parseArgs } from "node:util";
import { DEFAULT_BACKOFF_BASE_MS, DEFAULT_BACKOFF_CAP_MS } from "./backoff.ts";
import { type CustomFacts, loadAgentConfig, parseFactFlags } from "./config.ts";
import { DEFAULT_FACTS_INTERVAL_MS, DEFAULT_STABLE_MS } from "./connection.ts";
import { enroll, enrollSummary } from "./enroll.ts";
import { AgentError, oneLine } from "./errors.ts";
import { collectFacts } from "./facts.ts";
import { AGENT_SCRIPT, DEFAULT_UNIT_PATH, renderUnit, writeUnit } from "./install.ts";
import { DEFAULT_QUEUE_CAPACITY } from "./jobs/queue.ts";
import { Logger } from "./log.ts";
import { runAgent } from "./run.ts";
import { type DataDirContext, dataDirPaths, defaultDataDir } from "./state/data-dir.ts";
import { readIdentity } from "./state/identity.ts";
import { DEFAULT_LOG_BACKLOG_BYTES } from "./state/log-outbox.ts";
import { Outbox } from "./state/outbox.ts";
import { SettingsStore } from "./state/settings.ts";
import { StateTreeStore } from "./state/state-tree.ts";
import { TaskStore } from "./tasks/task-store.ts";
import { agentVersion } from "./version.ts";

/** Everything a command touches in its process, injected so commands run in-process under test. */
export interface AgentIo extends DataDirContext {
  readonly stdout: { write(chunk: string): unknown };
  readonly stderr: { write(chunk: string): unknown };
  /** The Node binary the systemd unit should run. */
  readonly execPath: string;
  readonly fetch?: typeof fetch;
}

interface OptionDef {
  readonly type: "string" | "boolean";
  readonly description: string;
  readonly valueName?: string;
  readonly short?: string;
  readonly multiple?: boolean;
}

type Values = Readonly<Record<string, string | boolean | (string | boolean)[] | undefined>>;

interface CommandDef {
  readonly name: string;
  readonly summary: string;
  readonly usage: string;
  readonly description: readonly string[];
  readonly options: Readonly<Record<string, OptionDef>>;
  run(values: Values, io: AgentIo): Promise<number>;
}

const DATA_DIR: OptionDef = {
  type: "string",
  valueName: "DIR",
  description: "Data directory (default: $ZECTRE_AGENT_DATA_DIR, else /var/lib/zectre-agent as root, else ~/.local/share/zectre-agent)",
};
const FACT: OptionDef = { type: "string", multiple: true, valueName: "KEY=VALUE", description: "Add a custom fact (repeatable; on top of config.json's)" };
const HELP: OptionDef = { type: "boolean", short: "h", description: "Show this help" };

const COMMANDS: readonly CommandDef[] = [
  {
    name: "enroll",
    summary: "Enroll this host with a control plane (creates its key and identity)",
    usage: "zectre-agent enroll --url URL --token TOKEN [--id ID] [--data-dir DIR] [--fact KEY=VALUE]... [--force]",
    description: [
      "Generates an Ed25519 key pair, keeps the private key in DIR/node.key (mode 0600; it never leaves",
      "this host) and registers the public key with the control plane using a one-time enrollment token.",
    ],
    options: {
      url: { type: "string", valueName: "URL", description: "The control plane's URL, e.g. https://zectre.example.com" },
      token: { type: "string", valueName: "TOKEN", description: "Enrollment token from an admin" },
      id: { type: "string", valueName: "ID", description: "Node id (default: the host name, made valid)" },
      "data-dir": DATA_DIR,
      fact: FACT,
      force: { type: "boolean", description: "Enroll again even though DIR already holds an identity (makes a new key)" },
    },
    run: runEnroll,
  },
  {
    name: "run",
    summary: "Connect to the control plane and keep this node online",
    usage:
      "zectre-agent run [--data-dir DIR] [--fact KEY=VALUE]... [--facts-interval SECONDS] [--job-queue N] [--log-backlog-mb MB] [--task-bind-address ADDRESS]",
    description: [
      "Starts from the data dir even when the control plane is unreachable and keeps retrying, with",
      "exponential backoff and full jitter. Logs are JSON lines on stdout. Exits 0 on SIGTERM or SIGINT,",
      "1 when it cannot start, and 3 when the control plane rejected or revoked this node.",
      "",
      "Runs the tasks the control plane places on this node (DIR/tasks), also while it is unreachable;",
      "their output waits in DIR/log-outbox, whose oldest lines are dropped past --log-backlog-mb.",
      "",
      "Environment (for tests): ZECTRE_AGENT_BACKOFF_BASE_MS, ZECTRE_AGENT_BACKOFF_CAP_MS, ZECTRE_AGENT_STABLE_MS, ZECTRE_AGENT_FAULT_DUPLICATE_SENDS=1 (fault injection: every return and report is sent twice), ZECTRE_AGENT_TASK_HEALTH_MS (health probe interval), ZECTRE_AGENT_TASK_RESTART_BASE_MS (first restart delay after a crash).",
    ],
    options: {
      "data-dir": DATA_DIR,
      fact: FACT,
      "facts-interval": { type: "string", valueName: "SECONDS", description: `How often facts are re-collected (default ${DEFAULT_FACTS_INTERVAL_MS / 1000})` },
      "job-queue": {
        type: "string",
        valueName: "N",
        description: `How many mutating jobs (cmd.run, file.write) may wait for the running one; more fail with 'agent busy' (default ${DEFAULT_QUEUE_CAPACITY})`,
      },
      "log-backlog-mb": {
        type: "string",
        valueName: "MB",
        description: `Disk for task output not yet acked by the control plane; past it the oldest lines are dropped (default ${DEFAULT_LOG_BACKLOG_BYTES / 1024 / 1024})`,
      },
      "task-bind-address": {
        type: "string",
        valueName: "ADDRESS",
        description:
          "IP address tasks listen on, passed to them as $HOST (default 127.0.0.1: only the tunnel reaches them). On a node marked direct " +
          "('zectre node direct'), an address the proxy can reach; 0.0.0.0 listens on every interface",
      },
    },
    run: runRun,
  },
  {
    name: "install",
    summary: "Print (or write) a systemd unit that runs the agent",
    usage: "zectre-agent install [--data-dir DIR] [--write [--path FILE]]",
    description: ["The unit runs this agent's 'run' with the Node binary running this command."],
    options: {
      "data-dir": DATA_DIR,
      write: { type: "boolean", description: "Write the unit instead of printing it" },
      path: { type: "string", valueName: "FILE", description: `Where --write puts the unit (default ${DEFAULT_UNIT_PATH})` },
    },
    run: runInstall,
  },
  {
    name: "facts",
    summary: "Print this host's facts as JSON",
    usage: "zectre-agent facts [--data-dir DIR] [--fact KEY=VALUE]...",
    description: ["The same facts 'run' reports, including custom facts from DIR/config.json."],
    options: { "data-dir": DATA_DIR, fact: FACT },
    run: runFacts,
  },
  {
    name: "status",
    summary: "Show the identity, settings and state tree version kept in the data dir (no network)",
    usage: "zectre-agent status [--data-dir DIR] [--json]",
    description: ["Reads only the data dir, so it works while the control plane is unreachable."],
    options: { "data-dir": DATA_DIR, json: { type: "boolean", description: "Print JSON" } },
    run: runStatus,
  },
];

/** Runs one command line and returns the exit code; never throws and never exits the process. */
export async function main(argv: readonly string[], io: AgentIo): Promise<number> {
  try {
    const [first, ...rest] = argv;
    if (first === undefined || first === "help" || first === "--help" || first === "-h") {
      const topic = first === "help" ? rest[0] : undefined;
      const command = COMMANDS.find((candidate) => candidate.name === topic);
      io.stdout.write(command ? commandHelp(command) : topLevelHelp());
      return 0;
    }
    const end = argv.indexOf("--");
    if ((end === -1 ? argv : argv.slice(0, end)).includes("--version")) {
      io.stdout.write(`zectre-agent ${agentVersion()}\n`);
      return 0;
    }
    const command = COMMANDS.find((candidate) => candidate.name === first);
    if (!command) throw new AgentError(`unknown command '${oneLine(first)}'; see 'zectre-agent --help'`);
    if (rest.includes("--help") || rest.includes("-h")) {
      io.stdout.write(commandHelp(command));
      return 0;
    }
    return await command.run(parseFlags(command, rest), io);
  } catch (error) {
    io.stderr.write(`zectre-agent: error: ${describeError(error, io)}\n`);
    return error instanceof AgentError ? error.exitCode : 1;
  }
}

function describeError(error: unknown, io: AgentIo): string {
  if (error instanceof AgentError) return oneLine(error.message);
  const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  if (io.env.ZECTRE_DEBUG && error instanceof Error) io.stderr.write(`${error.stack ?? ""}\n`);
  return `internal error: ${oneLine(text)} (set ZECTRE_DEBUG=1 for a stack trace)`;
}

function parseFlags(command: CommandDef, args: readonly string[]): Values {
  const options: Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }> = { help: { type: "boolean", short: "h" } };
  for (const [name, def] of Object.entries(command.options)) {
    options[name] = { type: def.type, ...(def.short ? { short: def.short } : {}), ...(def.multiple ? { multiple: true } : {}) };
  }
  try {
    return parseArgs({ args: [...args], options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    const code = typeof error === "object" && error !== null && "code" in error ? String(error.code) : "";
    const message = error instanceof Error ? error.message : String(error);
    const flag = /'([^']+)'/.exec(message)?.[1] ?? "";
    const see = `; see 'zectre-agent ${command.name} --help'`;
    if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") throw new AgentError(`unknown flag '${flag}'${see}`);
    if (code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") throw new AgentError(`unexpected argument '${flag}'${see}`);
    if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
      const name = /--([a-z-]+)/.exec(message)?.[1];
      throw new AgentError(`${name ? `flag --${name} needs a value (write --${name}=VALUE if it starts with '-')` : oneLine(message)}${see}`);
    }
    throw new AgentError(`${oneLine(message)}${see}`);
  }
}

function text(values: Values, name: string): string | undefined {
  const value = values[name];
  return typeof value === "string" ? value : undefined;
}

function required(values: Values, name: string, command: string): string {
  const value = text(values, name);
  if (value === undefined) throw new AgentError(`missing required flag --${name}; see 'zectre-agent ${command} --help'`);
  return value;
}

function factFlags(values: Values): CustomFacts {
  const value = values.fact;
  return parseFactFlags(Array.isArray(value) ? value.filter((item): item is string => typeof item === "string") : []);
}

function dataDirOf(values: Values, io: AgentIo): string {
  return text(values, "data-dir") ?? defaultDataDir(io);
}

/** Repeats `--data-dir` in printed next steps only when it was given, so they run as shown. */
function dataDirFlag(values: Values): string {
  const dir = text(values, "data-dir");
  return dir === undefined ? "" : ` --data-dir ${dataDirPaths(dir).dir}`;
}

async function runEnroll(values: Values, io: AgentIo): Promise<number> {
  const result = await enroll({
    url: required(values, "url", "enroll"),
    token: required(values, "token", "enroll"),
    nodeId: text(values, "id"),
    dataDir: dataDirOf(values, io),
    force: values.force === true,
    facts: factFlags(values),
    ...(io.fetch ? { fetch: io.fetch } : {}),
  });
  if (result.reusedKey) io.stdout.write("Reused the key from an earlier, unfinished enrollment.\n");
  io.stdout.write(`${enrollSummary(result, dataDirFlag(values)).join("\n")}\n`);
  return 0;
}

async function runRun(values: Values, io: AgentIo): Promise<number> {
  const interval = text(values, "facts-interval");
  const factsSeconds = interval === undefined ? undefined : Number(interval);
  if (factsSeconds !== undefined && !(Number.isFinite(factsSeconds) && factsSeconds > 0)) {
    throw new AgentError(`invalid --facts-interval '${interval}': expected a positive number of seconds`);
  }
  const queue = text(values, "job-queue");
  const jobQueueCapacity = queue === undefined ? undefined : Number(queue);
  if (jobQueueCapacity !== undefined && !(Number.isInteger(jobQueueCapacity) && jobQueueCapacity >= 0 && queue?.trim() !== "")) {
    throw new AgentError(`invalid --job-queue '${queue}': expected a whole number of jobs (0 or more)`);
  }
  const backlog = text(values, "log-backlog-mb");
  const backlogMb = backlog === undefined ? undefined : Number(backlog);
  if (backlogMb !== undefined && !(Number.isFinite(backlogMb) && backlogMb > 0 && backlog?.trim() !== "")) {
    throw new AgentError(`invalid --log-backlog-mb '${backlog}': expected a positive number of megabytes`);
  }
  const taskBindAddress = text(values, "task-bind-address");
  if (taskBindAddress !== undefined && isIP(taskBindAddress) === 0) {
    throw new AgentError(`invalid --task-bind-address '${taskBindAddress}': expected an IP address such as 127.0.0.1, 10.0.0.5 or 0.0.0.0`);
  }
  const healthMs = envMs(io, "ZECTRE_AGENT_TASK_HEALTH_MS");
  const restartBaseMs = envMs(io, "ZECTRE_AGENT_TASK_RESTART_BASE_MS");
  return runAgent({
    dataDir: dataDirOf(values, io),
    ...(backlogMb !== undefined ? { logBacklog: { maxBytes: Math.round(backlogMb * 1024 * 1024) } } : {}),
    taskTimings: {
      ...(healthMs !== undefined ? { healthIntervalMs: healthMs } : {}),
      ...(restartBaseMs !== undefined ? { restartBaseMs } : {}),
    },
    ...(jobQueueCapacity !== undefined ? { jobQueueCapacity } : {}),
    ...(taskBindAddress !== undefined ? { taskBindAddress } : {}),
    logger: new Logger({ sink: (line) => io.stdout.write(line) }),
    facts: factFlags(values),
    ...(factsSeconds !== undefined ? { factsIntervalMs: factsSeconds * 1000 } : {}),
    backoff: {
      baseMs: envMs(io, "ZECTRE_AGENT_BACKOFF_BASE_MS") ?? DEFAULT_BACKOFF_BASE_MS,
      capMs: envMs(io, "ZECTRE_AGENT_BACKOFF_CAP_MS") ?? DEFAULT_BACKOFF_CAP_MS,
    },
    stableMs: envMs(io, "ZECTRE_AGENT_STABLE_MS") ?? DEFAULT_STABLE_MS,
    duplicateSends: io.env.ZECTRE_AGENT_FAULT_DUPLICATE_SENDS === "1",
    onRefused: (end) => io.stderr.write(`zectre-agent: error: ${oneLine(end.message)}\n`),
  });
}

function envMs(io: AgentIo, name: string): number | undefined {
  const value = io.env[name];
  if (value === undefined || value === "") return undefined;
  const ms = Number(value);
  if (!Number.isFinite(ms) || ms < 0) throw new AgentError(`invalid ${name} '${value}': expected milliseconds`);
  return ms;
}

async function runInstall(values: Values, io: AgentIo): Promise<number> {
  const dataDir = dataDirOf(values, io);
  const unit = renderUnit({ nodePath: io.execPath, scriptPath: AGENT_SCRIPT, dataDir });
  if (values.write !== true) {
    if (text(values, "path") !== undefined) throw new AgentError("--path only makes sense with --write");
    io.stdout.write(unit);
    return 0;
  }
  const path = text(values, "path") ?? DEFAULT_UNIT_PATH;
  writeUnit(path, unit);
  const service = basename(path).replace(/\.service$/, "");
  io.stdout.write(`Wrote ${path}.\nNext: systemctl daemon-reload && systemctl enable --now ${service}\n`);
  if (!existsSync(dataDirPaths(dataDir).identity)) {
    io.stderr.write(`zectre-agent: note: ${dataDir} holds no identity yet; run 'zectre-agent enroll' before starting the service\n`);
  }
  return 0;
}

async function runFacts(values: Values, io: AgentIo): Promise<number> {
  const paths = dataDirPaths(dataDirOf(values, io));
  const facts = collectFacts({ ...loadAgentConfig(paths.config).facts, ...factFlags(values) });
  io.stdout.write(`${JSON.stringify(facts, null, 2)}\n`);
  return 0;
}

async function runStatus(values: Values, io: AgentIo): Promise<number> {
  const paths = dataDirPaths(dataDirOf(values, io));
  const identity = readIdentity(paths);
  if (!identity) throw new AgentError(`not enrolled: no identity in ${paths.dir}; run 'zectre-agent enroll --url URL --token TOKEN'`);
  const settings = SettingsStore.open(paths.settings);
  const snapshot = settings.currentSettings();
  // Opening the outbox would create it; status only reads.
  const outbox = existsSync(paths.outbox) ? Outbox.open(paths.outbox).size : 0;
  const tree = new StateTreeStore(paths.dir);
  const statesVersion = tree.version();
  const states = statesVersion === null ? null : { version: statesVersion, files: tree.files().length, dir: tree.dir };
  // What task.json says; whether each process runs now is the running agent's to know.
  const tasks = new TaskStore(paths.dir).list().tasks.map(({ taskId, file }) => ({
    taskId,
    app: file.spec.app,
    deploymentId: file.spec.deploymentId,
    desired: file.desired,
    hostPort: file.hostPort,
  }));
  if (values.json === true) {
    io.stdout.write(`${JSON.stringify({ dataDir: paths.dir, identity, settings: snapshot, states, outbox, tasks }, null, 2)}\n`);
    return 0;
  }
  const settingsLine = snapshot
    ? `version ${snapshot.version}, ${Object.keys(snapshot.settings).length} key(s), received ${snapshot.receivedAt}`
    : settings.loadProblem
      ? `unusable (${settings.loadProblem})`
      : "none received yet";
  const rows: [string, string][] = [
    ["Node", `${identity.nodeId} (org ${identity.org})`],
    ["Server", identity.url],
    ["Enrolled", `${identity.enrolledAt} (state then: ${identity.state})`],
    ["Public key", identity.publicKey],
    ["Settings", settingsLine],
    ["States", states ? `version ${states.version}, ${states.files} file(s)` : "none received yet"],
    ["Outbox", `${outbox} message(s) waiting for an ack`],
    ["Tasks", tasks.length === 0 ? "none" : tasks.map((task) => `${task.taskId} (${task.app}/${task.deploymentId}, port ${task.hostPort}, ${task.desired})`).join(", ")],
    ["Data dir", paths.dir],
  ];
  for (const [label, value] of rows) io.stdout.write(`${`${label}:`.padEnd(12)}${value}\n`);
  return 0;
}

function topLevelHelp(): string {
  const width = Math.max(...COMMANDS.map((command) => command.name.length)) + 2;
  return [
    "zectre-agent: the Zectre agent that runs on each host",
    "",
    "Usage: zectre-agent COMMAND [flags]",
    "",
    "Commands:",
    ...COMMANDS.map((command) => `  ${command.name.padEnd(width)}${command.summary}`),
    "",
    "Flags:",
    "  -h, --help     Show help (also after a command: zectre-agent run --help)",
    "  --version      Print the agent version",
    "",
  ].join("\n");
}

function commandHelp(command: CommandDef): string {
  const flags: [string, string][] = Object.entries(command.options).map(([name, def]) => [
    `${def.short ? `-${def.short}, ` : ""}--${name}${def.valueName ? ` ${def.valueName}` : ""}`,
    def.description,
  ]);
  flags.push([`-${HELP.short}, --help`, HELP.description]);
  const width = Math.max(...flags.map(([flag]) => flag.length)) + 2;
  return [
    `Usage: ${command.usage}`,
    "",
    command.summary + ".",
    ...command.description,
    "",
    "Flags:",
    ...flags.map(([flag, description]) => `  ${flag.padEnd(width)}${description}`),
    "",
  ].join("\n");
}
