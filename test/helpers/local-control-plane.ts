import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { connect } from "node:net";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, PROJECT_ROOT } from "../../scripts/lib/control-plane.ts";

/** A real `npm run dev` (scripts/dev.ts) on free ports with its own state dir, for end-to-end tests. */
export interface LocalControlPlane {
  root: string;
  stateDir: string;
  apiUrl: string;
  proxyUrl: string;
  proxyPort: number;
  output: string[];
  adminToken(): string;
  operatorSecret(): string;
  stop(): Promise<void>;
  restart(): Promise<void>;
  /** SIGKILL to the launcher, wrangler and workerd at once: no graceful anything. */
  crash(): Promise<void>;
}

const READY_LINE = "Zectre control plane is running";

export interface LaunchOptions {
  /** Start the launcher's own local agent (off by default so tests control their nodes). */
  agent?: boolean;
  heartbeatSeconds?: number;
  /** Seconds before an offline node's tasks are placed elsewhere. */
  nodeLostGraceSeconds?: number;
  /** Node objects send every action twice (fault injection). */
  faultDuplicateDelivery?: boolean;
}

function launch(root: string, apiPort: number, proxyPort: number, output: string[], options: LaunchOptions): Promise<ChildProcess> {
  const args = ["scripts/dev.ts", "--api-port", String(apiPort), "--proxy-port", String(proxyPort), "--state-dir", join(root, ".zectre/state")];
  if (!options.agent) args.push("--no-agent");
  if (options.heartbeatSeconds !== undefined) args.push("--heartbeat-seconds", String(options.heartbeatSeconds));
  if (options.faultDuplicateDelivery) args.push("--fault-duplicate-delivery");
  if (options.nodeLostGraceSeconds !== undefined) args.push("--node-lost-grace-seconds", String(options.nodeLostGraceSeconds));
  const child = spawn(process.execPath, args, { cwd: PROJECT_ROOT, stdio: ["ignore", "pipe", "pipe"] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`control plane not ready in 90 s:\n${output.join("\n")}`)), 90_000);
    const onData = (chunk: Buffer) => {
      for (const line of chunk.toString("utf8").split("\n")) if (line !== "") output.push(line);
      if (output.some((l) => l.includes(READY_LINE))) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`control plane exited with ${code} before ready:\n${output.join("\n")}`));
    });
  });
}

/** workerd can linger a moment after SIGKILL; the port is what matters. */
async function waitForPortFree(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const inUse = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: "127.0.0.1", port });
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (!inUse) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`port ${port} still in use after the crash`);
}

async function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGTERM");
  await exited;
}

/** A port found free can be taken by another test before wrangler binds it; then try fresh ports once. */
async function launchOnFreePorts(root: string, output: string[], options: LaunchOptions) {
  for (let attempt = 1; ; attempt++) {
    const [apiPort, proxyPort] = [await freePort(), await freePort()];
    try {
      return { apiPort, proxyPort, child: await launch(root, apiPort, proxyPort, output, options) };
    } catch (error) {
      if (attempt >= 2 || !output.some((l) => l.includes("Address already in use"))) throw error;
      output.length = 0;
    }
  }
}

export async function startLocalControlPlane(options: LaunchOptions = {}): Promise<LocalControlPlane> {
  const root = mkdtempSync(join(tmpdir(), "zectre-e2e-"));
  const output: string[] = [];
  const launched = await launchOnFreePorts(root, output, options);
  const { apiPort, proxyPort } = launched;
  let child = launched.child;
  const home = join(root, ".zectre");
  return {
    root,
    stateDir: join(home, "state"),
    apiUrl: `http://127.0.0.1:${apiPort}`,
    proxyUrl: `http://localhost:${proxyPort}`,
    proxyPort,
    output,
    adminToken: () => readFileSync(join(home, "admin-token"), "utf8").trim(),
    operatorSecret: () => readFileSync(join(home, "operator-secret"), "utf8").trim(),
    async stop() {
      await terminate(child);
    },
    async restart() {
      await terminate(child);
      output.length = 0;
      child = await launch(root, apiPort, proxyPort, output, options);
    },
    async crash() {
      // wrangler runs in its own process groups (with workerd inside); find them by the state dir they serve.
      const stateDir = join(root, ".zectre/state");
      const pids = execFileSync("ps", ["-eo", "pid,args"], { encoding: "utf8" })
        .split("\n")
        .filter((line) => line.includes(stateDir) && line.includes("wrangler"))
        .map((line) => Number(line.trim().split(/\s+/)[0]));
      for (const pid of pids) {
        try {
          process.kill(-pid, "SIGKILL");
        } catch {
          // Already gone.
        }
      }
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
      await waitForPortFree(apiPort);
      await waitForPortFree(proxyPort);
    },
  };
}

export function removeControlPlane(plane: LocalControlPlane): void {
  rmSync(plane.root, { recursive: true, force: true });
}
