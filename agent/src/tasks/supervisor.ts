import { randomBytes } from "node:crypto";
import { WIRE_VERSION } from "../../../protocol/agent-wire.ts";
import type { LogLine, TaskInventoryMessage, TaskStart, TaskStatusMessage } from "../../../protocol/deployments.ts";
import type { AgentConnection } from "../connection.ts";
import type { Logger } from "../log.ts";
import { messageOf } from "../state/files.ts";
import { dockerEngineProblem } from "./docker.ts";
import { DEFAULT_TASK_BIND_ADDRESS, pickFreePort, taskConnectHost } from "./ports.ts";
import { DEFAULT_TASK_TIMINGS, SupervisedTask, type TaskArtifacts, type TaskStatus, type TaskTimings } from "./task.ts";
import { newTaskFile, TaskStore } from "./task-store.ts";

/**
 * Every task this host runs. Tasks keep running while the control plane is
 * away: nothing here depends on the connection, which only carries actions in
 * and statuses out (through the outbox, so they survive disconnects). After
 * every welcome the supervisor lists its tasks (`task.inventory`), and the
 * control plane stops the ones it no longer wants.
 */

export interface TaskSupervisorOptions {
  readonly dataDir: string;
  readonly artifacts: TaskArtifacts;
  readonly logger: Logger;
  /** Durable delivery of a task.status: the agent's outbox (stored, sent, resent until acked). */
  readonly enqueue: (message: TaskStatusMessage) => void;
  /** Where task output lines go (the log shipper). */
  readonly output?: (line: LogLine) => void;
  readonly timings?: Partial<TaskTimings>;
  /** The `docker` binary probed for the Docker runtime. */
  readonly dockerCommand?: string;
  /** The agent's environment (PATH, HOME and LANG are passed on to tasks); default process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** The address tasks listen on (default 127.0.0.1); a direct node's proxy must be able to reach it. */
  readonly bindAddress?: string;
}

/** How many final statuses of stopped tasks are remembered, so a late duplicate start does not revive one. */
const STOPPED_KEPT = 1_000;
const MAX_INVENTORY = 1_000;

export class TaskSupervisor {
  readonly store: TaskStore;
  readonly #options: TaskSupervisorOptions;
  readonly #log: Logger;
  readonly #tasks = new Map<string, SupervisedTask>();
  readonly #stopped = new Map<string, TaskStatus>();
  readonly #context: ConstructorParameters<typeof SupervisedTask>[0];
  #closed = false;

  constructor(options: TaskSupervisorOptions) {
    this.#options = options;
    this.#log = options.logger;
    this.store = new TaskStore(options.dataDir);
    this.#context = {
      store: this.store,
      artifacts: options.artifacts,
      logger: options.logger,
      timings: { ...DEFAULT_TASK_TIMINGS, ...options.timings },
      report: (status) => this.#report(status),
      output: options.output ?? (() => {}),
      dockerProblem: () => dockerEngineProblem(options.dockerCommand),
      baseEnv: options.env ?? process.env,
      bindAddress: options.bindAddress ?? DEFAULT_TASK_BIND_ADDRESS,
    };
  }

  /** Where the agent reaches its tasks (the tunnel's target host). */
  get taskHost(): string {
    return taskConnectHost(this.#context.bindAddress);
  }

  /**
   * At boot: brings back every task in the data dir. Those meant to run are
   * started again (their processes died with the previous agent); a stop that
   * was under way is finished. Every task is known (inventories list it) when
   * this returns; the promise resolves once each was started or stopped, which
   * the agent does not wait for (a stop may take its whole grace).
   */
  recover(): Promise<void> {
    const { tasks, unreadable } = this.store.list();
    if (unreadable.length > 0) this.#log.warn("skipped task directories without a readable task.json", { tasks: unreadable });
    if (tasks.length > 0) this.#log.info("recovering tasks", { tasks: tasks.map((task) => task.taskId) });
    const resumed = tasks.map(({ taskId, file }) => {
      const task = this.#adopt(new SupervisedTask(this.#context, file));
      return task.resume().catch((error: unknown) => this.#log.error("could not recover a task", { taskId, error: messageOf(error) }));
    });
    return Promise.all(resumed).then(() => undefined);
  }

  /**
   * `task.start`: task.json is on disk when this resolves (so the action may be
   * acked); unpacking and starting go on in the background. A start for a task
   * this agent already has only reports its current status.
   */
  async start(spec: TaskStart): Promise<TaskStatus> {
    if (this.#closed) throw new Error("the agent is stopping; not starting tasks");
    const known = this.#known(spec.taskId);
    if (known) return known;
    const port = spec.port ?? (await pickFreePort(this.#context.bindAddress));
    // Checked again: another start of the same task may have won the race while the port was picked.
    const raced = this.#known(spec.taskId);
    if (raced) return raced;
    const file = newTaskFile(spec, port);
    this.store.write(file);
    const task = this.#adopt(new SupervisedTask(this.#context, file));
    task.start();
    return task.status;
  }

  /**
   * `task.stop`: the stop is recorded in task.json before this returns;
   * the returned promise resolves once the task is stopped and its directory
   * gone. Undefined for a task this agent does not have.
   */
  stop(taskId: string, graceSeconds: number): Promise<void> | undefined {
    const task = this.#tasks.get(taskId);
    if (!task) return undefined;
    return task.stop(graceSeconds);
  }

  get(taskId: string): TaskStatus | undefined {
    return this.#tasks.get(taskId)?.status;
  }

  list(): TaskStatus[] {
    return [...this.#tasks.values()].map((task) => task.status);
  }

  /** The running process of a task, for tests and diagnostics. */
  pidOf(taskId: string): number | undefined {
    return this.#tasks.get(taskId)?.pid;
  }

  inventory(): TaskInventoryMessage {
    return {
      type: "task.inventory",
      v: WIRE_VERSION,
      tasks: this.list()
        .slice(0, MAX_INVENTORY)
        .map(({ taskId, app, deploymentId, state, hostPort }) => ({ taskId, app, deploymentId, state, hostPort })),
    };
  }

  /** Handles task.start and task.stop, and sends the inventory after every welcome (once the outbox is resent). */
  attach(connection: Pick<AgentConnection, "handle" | "on" | "send">): void {
    connection.handle("task.start", async (action) => {
      await this.start(action);
    });
    connection.handle("task.stop", (action) => {
      const done = this.stop(action.taskId, action.graceSeconds);
      if (!done) {
        this.#log.info("task.stop for a task this agent does not have; nothing to stop", { taskId: action.taskId });
        return;
      }
      done.catch((error: unknown) => this.#log.error("stopping a task failed", { taskId: action.taskId, error: messageOf(error) }));
    });
    connection.on("ready", () => {
      const inventory = this.inventory();
      connection.send(inventory);
      this.#log.info("sent the task inventory", { tasks: inventory.tasks.length });
    });
  }

  /** The agent is exiting: processes end (SIGTERM, then SIGKILL), task.json files stay, so the next run brings them back. */
  async shutdown(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#tasks.values()].map((task) => task.shutdown()));
  }

  #known(taskId: string): TaskStatus | undefined {
    const task = this.#tasks.get(taskId);
    if (task) {
      task.reportNow();
      return task.status;
    }
    const stopped = this.#stopped.get(taskId);
    if (stopped) this.#report(stopped);
    return stopped;
  }

  /** Tracks a task until its stop completes; then only its final status is remembered. */
  #adopt(task: SupervisedTask): SupervisedTask {
    this.#tasks.set(task.taskId, task);
    return task;
  }

  #report(status: TaskStatus): void {
    if (status.state === "stopped") this.#forget(status);
    const message: TaskStatusMessage = {
      type: "task.status",
      v: WIRE_VERSION,
      id: `status.${status.taskId}.${Date.now().toString(36)}.${randomBytes(4).toString("hex")}`,
      taskId: status.taskId,
      app: status.app,
      deploymentId: status.deploymentId,
      state: status.state,
      hostPort: status.hostPort,
      restarts: status.restarts,
      exitCode: status.exitCode,
      message: status.message === null ? null : status.message.slice(0, 4096),
      at: new Date().toISOString(),
    };
    try {
      this.#options.enqueue(message);
    } catch (error) {
      this.#log.error("could not queue a task status", { taskId: status.taskId, state: status.state, error: messageOf(error) });
    }
  }

  #forget(status: TaskStatus): void {
    this.#tasks.delete(status.taskId);
    this.#stopped.delete(status.taskId);
    this.#stopped.set(status.taskId, status);
    while (this.#stopped.size > STOPPED_KEPT) {
      const oldest = this.#stopped.keys().next().value;
      if (oldest === undefined) break;
      this.#stopped.delete(oldest);
    }
  }
}
