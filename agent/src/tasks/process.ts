import { spawn } from "node:child_process";
import { constants } from "node:os";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { groupAlive, signalGroup } from "../jobs/functions/cmd.ts";
import { LineSplitter } from "./lines.ts";

/**
 * A task's process: `sh -c <command>` in a session of its own (detached), so
 * its pid is the process group every descendant inherits and a stop reaches
 * the whole tree. Output arrives line by line.
 */

export interface ExitInfo {
  /** The exit code, or 128 + n when signal n ended it (what a shell reports). */
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface TaskProcess {
  readonly pid: number;
  /** Resolves when the main process (the shell) has exited. */
  readonly exited: Promise<ExitInfo>;
}

export interface SpawnOptions {
  readonly command: string;
  readonly cwd: string;
  readonly env: Record<string, string>;
  readonly onLine: (stream: "stdout" | "stderr", line: string) => void;
}

export function spawnTaskProcess(options: SpawnOptions): Promise<TaskProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn("/bin/sh", ["-c", options.command], { cwd: options.cwd, env: options.env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    const exited = new Promise<ExitInfo>((resolveExit) => {
      child.once("exit", (code, signal) => resolveExit({ exitCode: code ?? signalCode(signal), signal }));
    });
    for (const stream of ["stdout", "stderr"] as const) {
      const splitter = new LineSplitter((line) => options.onLine(stream, line));
      child[stream].on("data", (chunk: Buffer) => splitter.push(chunk));
      child[stream].on("end", () => splitter.end());
    }
    child.once("error", reject);
    child.once("spawn", () => {
      const pid = child.pid;
      if (pid === undefined) reject(new Error("the task process has no pid"));
      else resolve({ pid, exited });
    });
  });
}

function signalCode(signal: NodeJS.Signals | null): number | null {
  const number = signal === null ? undefined : constants.signals[signal];
  return number === undefined ? null : 128 + number;
}

/**
 * SIGTERM to the group, SIGKILL to whatever of it is left after the grace.
 * Waits for the whole group, not just the shell: a shell that dies at once
 * must not cut short the grace its children were promised.
 */
export async function endProcessGroup(pgid: number, graceMs: number): Promise<"exited" | "killed"> {
  signalGroup(pgid, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (groupLives(pgid) && Date.now() < deadline) await sleep(POLL_MS);
  if (!groupLives(pgid)) return "exited";
  signalGroup(pgid, "SIGKILL");
  // SIGKILL cannot be ignored; the bound only guards against a process stuck in the kernel.
  const killDeadline = Date.now() + KILL_WAIT_MS;
  while (groupLives(pgid) && Date.now() < killDeadline) await sleep(POLL_MS);
  return "killed";
}

/** Kills what is left of a group whose shell already exited (e.g. a backgrounded child still holding the port). */
export function killLeftovers(pgid: number): void {
  if (groupLives(pgid)) signalGroup(pgid, "SIGKILL");
}

const POLL_MS = 50;
const KILL_WAIT_MS = 5_000;

/**
 * Whether any member of the group still runs. Zombies do not count: where the
 * init process never reaps orphans (some containers), a dead group would
 * otherwise look alive forever. Without /proc, `kill(-pgid, 0)` has to do.
 */
export function groupLives(pgid: number): boolean {
  const members = liveGroupMembers(pgid);
  return members === undefined ? groupAlive(pgid) : members.length > 0;
}

function liveGroupMembers(pgid: number): number[] | undefined {
  let names: string[];
  try {
    names = readdirSync("/proc");
  } catch {
    return undefined;
  }
  const members: number[] = [];
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const fields = procStat(name);
    if (fields && fields[0] !== "Z" && Number(fields[2]) === pgid) members.push(Number(name));
  }
  return members;
}

/** `/proc/<pid>/stat` after the command name: state ppid pgrp ... (the name may hold spaces and parentheses). */
function procStat(pid: string): string[] | undefined {
  try {
    const stat = readFileSync(join("/proc", pid, "stat"), "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

/**
 * True when some live process of group `pgid` carries `ZECTRE_TASK_ID=<taskId>`
 * in its environment: the group is really that task's, left over from an agent
 * that died without stopping it, and not an unrelated process that reused the id.
 * Linux only (/proc); elsewhere nothing is ever claimed.
 */
export function isOrphanOf(pgid: number, taskId: string): boolean {
  const marker = `ZECTRE_TASK_ID=${taskId}`;
  return (liveGroupMembers(pgid) ?? []).some((pid) => {
    try {
      return readFileSync(join("/proc", String(pid), "environ"), "utf8").split("\0").includes(marker);
    } catch {
      // Gone meanwhile, or not ours to read.
      return false;
    }
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
