import { existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { dirname } from "node:path";
import type { z } from "zod";
import type { AgentTaskState, ArtifactRef, HealthCheck, LogLine, TaskStart } from "../../../protocol/deployments.ts";
import { backoffCeiling } from "../backoff.ts";
import type { Logger } from "../log.ts";
import { fsyncDir, messageOf, PRIVATE_DIR_MODE } from "../state/files.ts";
import { noEngineMessage } from "./docker.ts";
import { probeHealth } from "./health.ts";
import { reusePort, taskConnectHost } from "./ports.ts";
import { endProcessGroup, type ExitInfo, isOrphanOf, killLeftovers, spawnTaskProcess, type TaskProcess } from "./process.ts";
import type { TaskFile, TaskStore } from "./task-store.ts";

/**
 * One task on this host: unpack, start, health-check, restart on crash with
 * backoff, stop. Every asynchronous step carries the generation it started in;
 * a stop (or a restart) bumps the generation, so a step that finishes late
 * (an unpack, a probe, an exit) sees it is stale and does nothing.
 */

export type AgentTaskStateName = z.infer<typeof AgentTaskState>;

/** What the supervisor needs from the artifact store: unpack these layers into this (empty) directory. */
export interface TaskArtifacts {
  unpack(refs: ArtifactRef[], destDir: string): Promise<void>;
}

export interface TaskTimings {
  /** Time between health probes. */
  readonly healthIntervalMs: number;
  readonly healthTimeoutMs: number;
  /** Consecutive failed probes that turn a healthy task unhealthy. */
  readonly unhealthyAfter: number;
  /** Restart delays after a crash: base · 2^n, capped. */
  readonly restartBaseMs: number;
  readonly restartCapMs: number;
  /** A task healthy this long starts its restart delays from the base again. */
  readonly stableMs: number;
  /** How long processes get between SIGTERM and SIGKILL when the agent itself stops. */
  readonly shutdownGraceMs: number;
}

export const DEFAULT_TASK_TIMINGS: TaskTimings = {
  healthIntervalMs: 2_000,
  healthTimeoutMs: 2_000,
  unhealthyAfter: 3,
  restartBaseMs: 1_000,
  restartCapMs: 30_000,
  stableMs: 60_000,
  shutdownGraceMs: 5_000,
};

export interface TaskStatus {
  readonly taskId: string;
  readonly app: string;
  readonly deploymentId: string;
  readonly state: AgentTaskStateName;
  readonly hostPort: number | null;
  readonly restarts: number;
  readonly exitCode: number | null;
  readonly message: string | null;
}

export interface TaskContext {
  readonly store: TaskStore;
  readonly artifacts: TaskArtifacts;
  readonly logger: Logger;
  readonly timings: TaskTimings;
  /** Called on every change of state, host port or restarts (and on request): the supervisor sends a task.status. */
  readonly report: (status: TaskStatus) => void;
  readonly output: (line: LogLine) => void;
  /** Why the Docker runtime cannot be used, or null when an engine answers. */
  readonly dockerProblem: () => Promise<string | null>;
  /** The agent's environment; only PATH, HOME and LANG reach a task. */
  readonly baseEnv: Readonly<Record<string, string | undefined>>;
  /** The address tasks listen on (their HOST): 127.0.0.1 unless the proxy fetches this node's tasks directly. */
  readonly bindAddress: string;
}

const BASE_ENV = ["PATH", "HOME", "LANG"] as const;

export class SupervisedTask {
  readonly #ctx: TaskContext;
  readonly #log: Logger;
  #file: TaskFile;
  #state: AgentTaskStateName = "starting";
  #exitCode: number | null = null;
  #message: string | null = null;
  #process: TaskProcess | undefined;
  #generation = 0;
  #launching: Promise<void> = Promise.resolve();
  #restartTimer: NodeJS.Timeout | undefined;
  #healthTimer: NodeJS.Timeout | undefined;
  #failures = 0;
  #healthySince: number | undefined;
  #attempt = 0;
  #lastReported: string | undefined;
  #stopping: Promise<void> | undefined;

  constructor(ctx: TaskContext, file: TaskFile) {
    this.#ctx = ctx;
    this.#file = file;
    this.#log = ctx.logger.child({ taskId: file.spec.taskId, app: file.spec.app, deploymentId: file.spec.deploymentId });
  }

  get taskId(): string {
    return this.#file.spec.taskId;
  }

  get spec(): TaskStart {
    return this.#file.spec;
  }

  get desired(): "run" | "stop" {
    return this.#file.desired;
  }

  /** The pid (and process group) of the running process, if one runs. */
  get pid(): number | undefined {
    return this.#process?.pid;
  }

  get status(): TaskStatus {
    const { taskId, app, deploymentId } = this.#file.spec;
    return {
      taskId,
      app,
      deploymentId,
      state: this.#state,
      hostPort: this.#file.hostPort,
      restarts: this.#file.restarts,
      exitCode: this.#exitCode,
      message: this.#message,
    };
  }

  /** Reports the current status even though nothing changed (a repeated task.start asks for it). */
  reportNow(): void {
    this.#lastReported = undefined;
    this.#reportIfChanged();
  }

  /** Starts the process in the background; failures become `crashed` and a restart. */
  start(): void {
    const generation = ++this.#generation;
    this.#launching = this.#launch(generation).catch((error: unknown) => this.#log.error("task start failed unexpectedly", { error: messageOf(error) }));
  }

  /**
   * After an agent restart: ends a process the previous agent left behind (it
   * holds the port and nobody reads its output), then runs the task again, or
   * finishes a stop that was under way.
   */
  async resume(): Promise<void> {
    const pid = this.#file.pid;
    if (pid !== null && isOrphanOf(pid, this.taskId)) {
      this.#log.warn("ending a task process left over from an earlier agent run", { pid });
      await endProcessGroup(pid, this.#ctx.timings.shutdownGraceMs);
    }
    if (this.#file.desired === "stop") await this.stop(this.#file.graceSeconds ?? 0);
    else this.start();
  }

  /**
   * Records the stop in task.json before it returns (so the caller may ack),
   * then SIGTERM, SIGKILL after the grace, `stopped`, and the directory goes.
   * The returned promise resolves when all that is done.
   */
  stop(graceSeconds: number): Promise<void> {
    if (!this.#stopping) {
      this.#save({ desired: "stop", graceSeconds });
      this.#stopping = this.#finishStop(graceSeconds);
    }
    return this.#stopping;
  }

  /** The agent is exiting: ends the process but keeps `desired`, so the next agent run starts it again. */
  async shutdown(): Promise<void> {
    if (this.#stopping) return this.#stopping;
    this.#cancelPending();
    await this.#launching;
    const running = this.#process;
    this.#process = undefined;
    if (!running) return;
    const how = await endProcessGroup(running.pid, this.#ctx.timings.shutdownGraceMs);
    this.#log.info("task process ended for the agent's shutdown", { pid: running.pid, how });
  }

  async #launch(generation: number): Promise<void> {
    this.#exitCode = null;
    this.#message = null;
    this.#failures = 0;
    this.#setState("starting");
    this.#log.info("task starting", { hostPort: this.#file.hostPort, restarts: this.#file.restarts, runtime: this.spec.runtime });
    if (this.spec.runtime === "docker") return this.#refuseDocker(generation);
    try {
      // A fixed port is the app's own: if something else holds it, the app fails to bind and says so.
      const port = this.spec.port ?? (await reusePort(this.#file.hostPort, this.#ctx.bindAddress));
      if (generation !== this.#generation) return;
      if (port !== this.#file.hostPort) {
        this.#log.info("task port taken; moved to a new one", { previous: this.#file.hostPort, hostPort: port });
        this.#save({ hostPort: port });
        this.#reportIfChanged();
      }
      const appDir = await this.#prepareApp();
      if (generation !== this.#generation) return;
      const started = await spawnTaskProcess({ command: this.spec.command, cwd: appDir, env: this.#env(port), onLine: (stream, line) => this.#output(stream, line) });
      if (generation !== this.#generation) {
        // A stop came in while the process was being spawned: it must not outlive the stop.
        await endProcessGroup(started.pid, 0);
        return;
      }
      this.#process = started;
      this.#save({ pid: started.pid });
      this.#log.info("task process started", { pid: started.pid, hostPort: port });
      void started.exited.then((exit) => this.#onExit(generation, started, exit));
      this.#scheduleProbe(generation);
    } catch (error) {
      if (generation === this.#generation) this.#crashed(null, `could not start: ${messageOf(error)}`, true);
    }
  }

  async #refuseDocker(generation: number): Promise<void> {
    const problem = await this.#ctx.dockerProblem();
    if (generation !== this.#generation) return;
    // No restart loop: an engine does not appear by retrying; an agent restart (or a new deployment) tries again.
    const message =
      problem === null
        ? "docker runtime requested; a Docker engine is reachable, but this agent runs only process tasks so far"
        : noEngineMessage(problem);
    this.#crashed(null, message, false);
  }

  /** Unpacks into `app.partial`, then renames: a crash mid-unpack leaves no half-filled `app` to run. */
  async #prepareApp(): Promise<string> {
    const appDir = this.#ctx.store.appDir(this.taskId);
    if (existsSync(appDir)) return appDir;
    const partial = `${appDir}.partial`;
    rmSync(partial, { recursive: true, force: true });
    mkdirSync(partial, { recursive: true, mode: PRIVATE_DIR_MODE });
    await this.#ctx.artifacts.unpack(this.spec.artifacts, partial);
    renameSync(partial, appDir);
    fsyncDir(dirname(appDir));
    return appDir;
  }

  #env(port: number): Record<string, string> {
    const env: Record<string, string> = {};
    for (const name of BASE_ENV) {
      const value = this.#ctx.baseEnv[name];
      if (value !== undefined) env[name] = value;
    }
    Object.assign(env, this.spec.env);
    // Last, so a task's env can never override what the supervisor decides.
    env.PORT = String(port);
    env.HOST = this.#ctx.bindAddress;
    env.ZECTRE_TASK_ID = this.taskId;
    env.ZECTRE_APP = this.spec.app;
    env.ZECTRE_DEPLOYMENT = this.spec.deploymentId;
    return env;
  }

  #output(stream: "stdout" | "stderr", line: string): void {
    const { taskId, app, deploymentId } = this.spec;
    this.#ctx.output({ taskId, app, deploymentId, stream, ts: new Date().toISOString(), line });
  }

  #onExit(generation: number, exited: TaskProcess, exit: ExitInfo): void {
    // A stop or shutdown ended it on purpose; they report for themselves.
    if (generation !== this.#generation) return;
    this.#process = undefined;
    clearTimeout(this.#healthTimer);
    // The shell is gone; whatever it left running in its group would hold the port against the restart.
    killLeftovers(exited.pid);
    this.#crashed(exit.exitCode, describeExit(exit), true);
  }

  #crashed(exitCode: number | null, message: string, restart: boolean): void {
    this.#exitCode = exitCode;
    this.#message = message;
    this.#setState("crashed");
    this.#log.warn("task crashed", { exitCode, message, restarts: this.#file.restarts, willRestart: restart });
    if (!restart) return;
    const now = Date.now();
    if (this.#healthySince !== undefined && now - this.#healthySince >= this.#ctx.timings.stableMs) this.#attempt = 0;
    this.#healthySince = undefined;
    const delayMs = backoffCeiling(this.#attempt++, this.#ctx.timings.restartBaseMs, this.#ctx.timings.restartCapMs);
    const generation = this.#generation;
    this.#log.info("task restart scheduled", { delayMs, restarts: this.#file.restarts + 1 });
    this.#restartTimer = setTimeout(() => {
      if (generation !== this.#generation) return;
      try {
        this.#save({ restarts: this.#file.restarts + 1 });
      } catch (error) {
        this.#log.error("could not record the restart; restarting anyway", { error: messageOf(error) });
      }
      this.start();
    }, delayMs);
  }

  #scheduleProbe(generation: number): void {
    this.#healthTimer = setTimeout(() => void this.#probe(generation), this.#ctx.timings.healthIntervalMs);
  }

  async #probe(generation: number): Promise<void> {
    const pass = await probeHealth(this.spec.healthCheck, this.#file.hostPort, this.#ctx.timings.healthTimeoutMs, taskConnectHost(this.#ctx.bindAddress));
    if (generation !== this.#generation || !this.#process) return;
    this.#health(pass);
    this.#scheduleProbe(generation);
  }

  #health(pass: boolean): void {
    if (pass) {
      this.#failures = 0;
      if (this.#state !== "healthy") {
        this.#healthySince = Date.now();
        this.#message = null;
        this.#setState("healthy");
        this.#log.info("task healthy", { hostPort: this.#file.hostPort, restarts: this.#file.restarts });
      }
      return;
    }
    // A task still starting may take its time; only one that was healthy can become unhealthy.
    if (this.#state === "starting") return;
    this.#failures++;
    if (this.#state === "healthy" && this.#failures >= this.#ctx.timings.unhealthyAfter) {
      this.#healthySince = undefined;
      this.#message = `health check failed ${this.#failures} times in a row (${describeCheck(this.spec.healthCheck)})`;
      this.#setState("unhealthy");
      this.#log.warn("task unhealthy", { message: this.#message });
    }
  }

  async #finishStop(graceSeconds: number): Promise<void> {
    this.#cancelPending();
    this.#log.info("task stopping", { graceSeconds });
    await this.#launching;
    const running = this.#process;
    this.#process = undefined;
    if (running) {
      this.#setState("stopping");
      const how = await endProcessGroup(running.pid, graceSeconds * 1000);
      const exit = await running.exited;
      this.#exitCode = exit.exitCode;
      this.#message = how === "killed" ? `did not exit within ${graceSeconds}s of SIGTERM; killed with SIGKILL` : null;
    }
    this.#setState("stopped");
    this.#log.info("task stopped", { exitCode: this.#exitCode, message: this.#message });
    this.#ctx.store.remove(this.taskId);
  }

  /** Makes every timer and in-flight step of the current generation stale. */
  #cancelPending(): void {
    this.#generation++;
    clearTimeout(this.#restartTimer);
    clearTimeout(this.#healthTimer);
  }

  #setState(state: AgentTaskStateName): void {
    this.#state = state;
    this.#reportIfChanged();
  }

  /** One report per change of state, host port or restarts; exit codes and messages ride along. */
  #reportIfChanged(): void {
    const key = `${this.#state}|${this.#file.hostPort}|${this.#file.restarts}`;
    if (key === this.#lastReported) return;
    this.#lastReported = key;
    this.#ctx.report(this.status);
  }

  #save(change: Partial<Omit<TaskFile, "v" | "spec">>): void {
    const next = { ...this.#file, ...change };
    this.#ctx.store.write(next);
    this.#file = next;
  }
}

function describeExit(exit: ExitInfo): string {
  if (exit.signal !== null) return `killed by ${exit.signal}`;
  return `exited with code ${exit.exitCode ?? "unknown"}`;
}

function describeCheck(check: HealthCheck): string {
  return check.type === "http" ? `GET ${check.path}` : "TCP connect";
}
