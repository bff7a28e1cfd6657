import { existsSync, readdirSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { z } from "zod";
import { TASK_ID_PATTERN, TaskStartSchema, type TaskStart } from "../../../protocol/deployments.ts";
import { ensurePrivateDir, fsyncDir, readIfExists, safeJson, writeFileAtomic } from "../state/files.ts";

/**
 * `<data-dir>/tasks/<taskId>/`: one directory per task this node was given.
 * `task.json` (the start spec, the host port, what the control plane wants) is
 * written atomically before anything starts, so a restarted agent knows every
 * task it had and which of them must run again. `app/` is the unpacked artifact.
 */

export const TASKS_DIR = "tasks";

export const TaskFile = z
  .object({
    v: z.literal(1),
    spec: TaskStartSchema,
    hostPort: z.number().int().min(1).max(65535),
    desired: z.enum(["run", "stop"]),
    restarts: z.number().int().min(0),
    /** The process group of the last start, so a restart after an agent crash can end an orphan first. */
    pid: z.number().int().positive().nullable(),
    /** The stop's grace, kept so a stop interrupted by a crash is finished the same way. */
    graceSeconds: z.number().int().min(0).nullable(),
  })
  .strict();
export type TaskFile = z.infer<typeof TaskFile>;

export interface StoredTask {
  readonly taskId: string;
  readonly file: TaskFile;
}

export class TaskStore {
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = join(resolve(dataDir), TASKS_DIR);
  }

  taskDir(taskId: string): string {
    if (!TASK_ID_PATTERN.test(taskId)) throw new Error(`refused task id '${taskId}'`);
    return join(this.dir, taskId);
  }

  /** Where the artifact is unpacked and the command runs. */
  appDir(taskId: string): string {
    return join(this.taskDir(taskId), "app");
  }

  /** Durable before it returns (atomic snapshot). */
  write(file: TaskFile): void {
    const dir = this.taskDir(file.spec.taskId);
    if (!existsSync(dir)) {
      ensurePrivateDir(dir);
      fsyncDir(this.dir);
    }
    writeFileAtomic(join(dir, "task.json"), `${JSON.stringify(file, null, 2)}\n`);
  }

  /** Every task directory with a readable task.json; the others are reported, not touched (a human may want them). */
  list(): { tasks: StoredTask[]; unreadable: string[] } {
    const tasks: StoredTask[] = [];
    const unreadable: string[] = [];
    if (!existsSync(this.dir)) return { tasks, unreadable };
    for (const name of readdirSync(this.dir).sort()) {
      if (!TASK_ID_PATTERN.test(name)) continue;
      const parsed = TaskFile.safeParse(safeJson(readIfExists(join(this.dir, name, "task.json"))));
      if (parsed.success && parsed.data.spec.taskId === name) tasks.push({ taskId: name, file: parsed.data });
      else unreadable.push(name);
    }
    return { tasks, unreadable };
  }

  remove(taskId: string): void {
    rmSync(this.taskDir(taskId), { recursive: true, force: true });
    if (existsSync(this.dir)) fsyncDir(this.dir);
  }
}

export function newTaskFile(spec: TaskStart, hostPort: number): TaskFile {
  return { v: 1, spec, hostPort, desired: "run", restarts: 0, pid: null, graceSeconds: null };
}
