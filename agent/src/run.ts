import { join } from "node:path";
import { buildGrains } from "../../protocol/target.ts";
import type { BackoffOptions } from "./backoff.ts";
import { type CustomFacts, loadAgentConfig } from "./config.ts";
import { AgentConnection, type ConnectionEnd } from "./connection.ts";
import { EXIT_REVOKED } from "./errors.ts";
import { collectFacts } from "./facts.ts";
import { builtinFunctions } from "./jobs/functions/index.ts";
import { JobRunner } from "./jobs/runner.ts";
import { Scheduler } from "./schedules/scheduler.ts";
import { stateFunctions } from "./state-apply/function.ts";
import { ed25519Signer } from "./keys.ts";
import type { Logger } from "./log.ts";
import { openAgentState } from "./state/agent-state.ts";
import { dataDirPaths } from "./state/data-dir.ts";
import { loadCredentials } from "./state/identity.ts";
import { LogOutbox, type LogOutboxOptions } from "./state/log-outbox.ts";
import { StateTreeStore, statesUpdateHandler } from "./state/state-tree.ts";
import { LogShipper } from "./tasks/log-shipper.ts";
import { TaskSupervisor } from "./tasks/supervisor.ts";
import { attachTunnel } from "./tunnel/attach.ts";
import { ArtifactStore } from "./tasks/artifacts.ts";
import type { TaskArtifacts, TaskTimings } from "./tasks/task.ts";
import { agentVersion } from "./version.ts";

/**
 * `zectre-agent run`: boot from the data dir alone (the control plane may be
 * down, the host may have just rebooted), then stay connected until told to stop
 * or until the node is rejected or revoked.
 */

export interface RunOptions {
  /** Fault injection for tests: send every return and report twice. */
  readonly duplicateSends?: boolean;
  readonly dataDir: string;
  readonly logger: Logger;
  /** `--fact` flags, on top of config.json's facts. */
  readonly facts?: CustomFacts;
  readonly factsIntervalMs?: number;
  readonly backoff?: BackoffOptions;
  readonly stableMs?: number;
  /** How many mutating jobs may wait for the one running (default 16). */
  readonly jobQueueCapacity?: number;
  /** Caps of the on-disk task log backlog (default 20 MiB, 2,000 batches). */
  readonly logBacklog?: LogOutboxOptions;
  /** Where task artifacts come from (default: the ArtifactStore, downloading from the control plane). */
  readonly artifacts?: TaskArtifacts;
  /** Task supervisor timings (tests make them fast). */
  readonly taskTimings?: Partial<TaskTimings>;
  /** The address tasks listen on (`--task-bind-address`; default 127.0.0.1). */
  readonly taskBindAddress?: string;
  /** Called with the reason when the node is refused for good, for the one-line error on stderr. */
  readonly onRefused?: (end: Exclude<ConnectionEnd, { reason: "stopped" }>) => void;
}

export async function runAgent(options: RunOptions): Promise<number> {
  const paths = dataDirPaths(options.dataDir);
  const { identity, privateKey } = loadCredentials(paths);
  const log = options.logger.child({ nodeId: identity.nodeId });
  // A broken config.json is the owner's mistake; failing now says so, rather than sending facts without it.
  loadAgentConfig(paths.config);

  const state = openAgentState(paths);
  const logOutbox = LogOutbox.open(paths.logOutbox, options.logBacklog);
  if (state.settings.loadProblem) log.warn("ignored the settings snapshot", { problem: state.settings.loadProblem });
  if (state.outbox.unreadable.length > 0) log.warn("skipped unreadable outbox files", { files: state.outbox.unreadable });
  // Repairs what a crash in the middle of a states.update left behind: the tree is then old or new, never torn.
  const states = new StateTreeStore(paths.dir);
  const leftovers = states.recover();
  if (leftovers.length > 0) log.info("cleaned up an interrupted state tree update", { removed: leftovers });
  log.info("starting", {
    version: agentVersion(),
    url: identity.url,
    org: identity.org,
    dataDir: paths.dir,
    settingsVersion: state.settings.currentSettings()?.version ?? null,
    statesVersion: states.version(),
    outbox: state.outbox.size,
    logBacklog: logOutbox.size,
  });

  let lastFacts: CustomFacts = {};
  const facts = () => {
    // Re-read each time so edits to config.json show up without a restart.
    try {
      lastFacts = loadAgentConfig(paths.config).facts;
    } catch (error) {
      log.warn("config.json is unreadable; keeping the custom facts it had", { error });
    }
    return collectFacts({ ...lastFacts, ...options.facts });
  };
  const signer = ed25519Signer(privateKey);
  const connection = new AgentConnection({
    identity,
    signer,
    settings: state.settings,
    outbox: state.outbox,
    logOutbox,
    appliedActions: state.appliedActions,
    logger: log,
    facts,
    ...(options.factsIntervalMs !== undefined ? { factsIntervalMs: options.factsIntervalMs } : {}),
    ...(options.backoff ? { backoff: options.backoff } : {}),
    ...(options.stableMs !== undefined ? { stableMs: options.stableMs } : {}),
    ...(options.duplicateSends ? { duplicateSends: true } : {}),
  });
  connection.handle("states.update", statesUpdateHandler(states, log));
  // Returns go through the outbox: stored first, sent when connected, resent until acked, also across restarts.
  const jobs = new JobRunner({
    ledger: state.ledger,
    enqueue: (message) => connection.enqueue(message),
    logger: log,
    facts,
    settings: () => state.settings.currentSettings(),
    // state.apply reads its tree from the data dir's state-file cache, so it also works offline.
    functions: [
      ...builtinFunctions(),
      ...stateFunctions({ tree: () => states.dir, node: () => ({ id: identity.nodeId, grains: buildGrains(facts(), {}) }) }),
    ],
    ...(options.jobQueueCapacity !== undefined ? { queueCapacity: options.jobQueueCapacity } : {}),
  });
  jobs.attach(connection);
  // Schedules run from the last-known-good snapshot right away, connected or not; reports wait in the outbox.
  const schedules = new Scheduler({ runner: jobs, enqueue: (message) => connection.enqueue(message), logger: log });
  const unsubscribeSchedules = schedules.attach(state.settings);
  // Tasks run whether or not the control plane is reachable: statuses wait in the outbox, output in the log backlog.
  const shipper = new LogShipper({ outbox: logOutbox, send: (message) => connection.send(message), logger: log });
  const tasks = new TaskSupervisor({
    dataDir: paths.dir,
    // Layers are downloaded (node-signed) into a content-addressed cache, then unpacked per task.
    artifacts:
      options.artifacts ??
      new ArtifactStore({ cacheDir: join(paths.dir, "artifacts"), baseUrl: identity.url, org: identity.org, nodeId: identity.nodeId, signer }),
    logger: log,
    enqueue: (message) => connection.enqueue(message),
    output: (line) => shipper.push(line),
    ...(options.taskTimings ? { timings: options.taskTimings } : {}),
    ...(options.taskBindAddress !== undefined ? { bindAddress: options.taskBindAddress } : {}),
  });
  tasks.attach(connection);
  // Proxied requests reach only the ports of tasks this agent runs.
  attachTunnel(connection, tasks, log);
  // Not awaited: a stop that was under way when the agent died may take its whole grace, and must not delay connecting.
  void tasks.recover();
  // Disarms the schedules, aborts every run (dispatched or scheduled), ends the task processes (they come back on the
  // next start), and waits until returns, reports and the last output lines are stored.
  const stopWork = () =>
    Promise.all([schedules.stop(), jobs.stop(), tasks.shutdown()]).then(() => {
      shipper.stop();
    });

  let stopping: Promise<void> | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    log.info("stopping", { signal });
    // Jobs first, while still connected: their returns ("agent stopped") can still reach the server now.
    stopping ??= stopWork().then(() => connection.stop());
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  try {
    const end = await connection.run();
    if (end.reason === "stopped") {
      log.info("stopped");
      return 0;
    }
    options.onRefused?.(end);
    return EXIT_REVOKED;
  } finally {
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
    // Also after a refusal: whatever still runs is stopped and its return stored for a later run to send.
    unsubscribeSchedules();
    await stopWork();
    state.close();
  }
}
