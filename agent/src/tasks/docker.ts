import { execFile } from "node:child_process";
import { errorCode } from "../state/files.ts";

/**
 * The Docker runtime is optional: this agent checks for an engine and, when
 * there is none, says so in the task's status instead of failing obscurely.
 */

const PROBE_TIMEOUT_MS = 10_000;

/** Why no engine is usable (one line), or null when `docker version` reached a server. */
export function dockerEngineProblem(command = "docker"): Promise<string | null> {
  return new Promise((resolve) => {
    execFile(command, ["version", "--format", "{{.Server.Version}}"], { timeout: PROBE_TIMEOUT_MS }, (error, stdout, stderr) => {
      if (!error) {
        resolve(stdout.trim() === "" ? "docker version printed no server version" : null);
        return;
      }
      if (errorCode(error) === "ENOENT") {
        resolve(`the '${command}' command is not installed`);
        return;
      }
      const firstLine = `${stderr}`.split("\n").find((line) => line.trim() !== "")?.trim();
      resolve(firstLine ?? `'${command} version' failed: ${error.message.split("\n")[0] ?? "unknown error"}`);
    });
  });
}

export function noEngineMessage(reason: string): string {
  return `docker runtime requested but no Docker engine is reachable on this host (${reason})`;
}
