import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { type AddressInfo, createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** Starts the local control plane: two `wrangler dev` processes sharing one state dir. */

export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const WRANGLER_BIN = join(dirname(createRequire(import.meta.url).resolve("wrangler/package.json")), "bin/wrangler.js");

export interface ControlPlaneOptions {
  apiPort: number;
  proxyPort: number;
  /** Durable Object SQLite files and local R2 live here. */
  stateDir: string;
  /** Overrides the agents' heartbeat interval (tests use 1 s to see offline nodes quickly). */
  heartbeatSeconds?: number | undefined;
  /** Seconds a node may be offline before its tasks are placed elsewhere (default: wrangler.toml's). */
  nodeLostGraceSeconds?: number | undefined;
  /** Test-only fault injection: node objects send every action twice. */
  faultDuplicateDelivery?: boolean | undefined;
  /** Where wrangler's own output goes, besides the console. */
  onOutput?: (component: string, line: string) => void;
}

export interface LocalPaths {
  home: string;
  stateDir: string;
  adminToken: string;
  operatorSecret: string;
  secretsKey: string;
  devInfo: string;
  registry: string;
  agentDir: string;
}

/** Everything local lives beside the state dir: `.zectre/{state,admin-token,operator-secret,dev.json}`. */
export function localPaths(stateDir: string): LocalPaths {
  const absoluteState = resolve(stateDir);
  const home = dirname(absoluteState);
  return {
    home,
    stateDir: absoluteState,
    adminToken: join(home, "admin-token"),
    operatorSecret: join(home, "operator-secret"),
    secretsKey: join(home, "secrets-key"),
    devInfo: join(home, "dev.json"),
    registry: join(home, "registry"),
    agentDir: join(home, "agent"),
  };
}

export function writeSecretFile(path: string, content: string): void {
  writeFileSync(path, content, { mode: 0o600 });
  chmodSync(path, 0o600);
}

/** The local operator secret stands in for the wrangler secret used on Cloudflare. */
export function ensureOperatorSecret(paths: LocalPaths): string {
  return ensureRandomSecret(paths, paths.operatorSecret);
}

/** Made once per state dir and kept: app secrets encrypted under it must stay readable after a restart. */
function ensureRandomSecret(paths: LocalPaths, file: string): string {
  mkdirSync(paths.stateDir, { recursive: true, mode: 0o700 });
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  const secret = randomBytes(32).toString("hex");
  writeSecretFile(file, `${secret}\n`);
  return secret;
}

function wranglerEnv(paths: LocalPaths): NodeJS.ProcessEnv {
  return {
    ...process.env,
    CLOUDFLARE_CF_FETCH_ENABLED: "false",
    WRANGLER_SEND_METRICS: "false",
    // Wrangler's local observability collector receives a trace of every invocation, each Durable Object
    // call and WebSocket message included: about 60% of workerd's CPU in a job fan-out (bench/README.md).
    // Our logs still reach the terminal without it; set X_LOCAL_OBSERVABILITY=true to have it back.
    X_LOCAL_OBSERVABILITY: process.env.X_LOCAL_OBSERVABILITY ?? "false",
    // A registry per state dir keeps parallel control planes (tests, a dev server) apart.
    WRANGLER_REGISTRY_PATH: paths.registry,
    WRANGLER_LOG_PATH: join(paths.home, "logs"),
  };
}

function spawnWrangler(args: string[], paths: LocalPaths, component: string, options: ControlPlaneOptions): ChildProcess {
  const child = spawn(process.execPath, [WRANGLER_BIN, "dev", ...args], {
    cwd: PROJECT_ROOT,
    env: wranglerEnv(paths),
    // Its own process group, so stopping it also stops workerd.
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const forward = (chunk: Buffer) => {
    for (const line of chunk.toString("utf8").split("\n")) if (line.trim() !== "") options.onOutput?.(component, line);
  };
  child.stdout?.on("data", forward);
  child.stderr?.on("data", forward);
  return child;
}

/** Asks the kernel for a free loopback port. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolvePort(port));
    });
  });
}

export async function startWorkers(options: ControlPlaneOptions, operatorSecret: string): Promise<ChildProcess[]> {
  const paths = localPaths(options.stateDir);
  // Two wrangler processes racing for the default inspector port (9229) collide; give each its own.
  const [apiInspector, proxyInspector] = [await freePort(), await freePort()];
  const common = ["--ip", "127.0.0.1", "--show-interactive-dev-session=false", "--log-level", "log"];
  const api = spawnWrangler(
    [
      "-c", "wrangler.toml",
      "-c", "workers/scheduler/wrangler.toml",
      "--port", String(options.apiPort),
      "--var", `OPERATOR_SECRET:${operatorSecret}`,
      "--var", `SECRETS_KEY:${ensureRandomSecret(paths, paths.secretsKey)}`,
      "--var", `PUBLIC_PROXY_URL:http://localhost:${options.proxyPort}`,
      "--test-scheduled",
      // Local receivers listen on loopback; deployed control planes refuse private webhook URLs.
      "--var", "WEBHOOK_ALLOW_PRIVATE:1",
      ...(process.env.WEBHOOK_RETRY_BASE_SECONDS ? ["--var", `WEBHOOK_RETRY_BASE_SECONDS:${process.env.WEBHOOK_RETRY_BASE_SECONDS}`] : []),
      ...(options.heartbeatSeconds === undefined ? [] : ["--var", `HEARTBEAT_SECONDS:${options.heartbeatSeconds}`]),
      ...(options.faultDuplicateDelivery ? ["--var", "FAULT_DUPLICATE_DELIVERY:1"] : []),
      ...(options.nodeLostGraceSeconds === undefined ? [] : ["--var", `NODE_LOST_GRACE_SECONDS:${options.nodeLostGraceSeconds}`]),
      "--inspector-port", String(apiInspector),
      "--persist-to", paths.stateDir,
      ...common,
    ],
    paths,
    "api",
    options,
  );
  const proxy = spawnWrangler(
    [
      "-c", "workers/proxy/wrangler.toml",
      "--port", String(options.proxyPort),
      // Tests shorten the app timeout to see a 504 quickly.
      ...(process.env.PROXY_TIMEOUT_SECONDS ? ["--var", `PROXY_TIMEOUT_SECONDS:${process.env.PROXY_TIMEOUT_SECONDS}`] : []),
      // And the wake timeout, to see a wake that cannot succeed answered 503 quickly.
      ...(process.env.WAKE_TIMEOUT_SECONDS ? ["--var", `WAKE_TIMEOUT_SECONDS:${process.env.WAKE_TIMEOUT_SECONDS}`] : []),
      "--inspector-port", String(proxyInspector),
      // The proxy keeps no state of its own (its objects live in the API's process), and two workerd
      // processes opening the same persist dir at once can fail to start with SQLITE_BUSY.
      "--persist-to", join(paths.stateDir, "proxy-worker"),
      ...common,
    ],
    paths,
    "proxy",
    options,
  );
  return [api, proxy];
}

export async function waitForHealthy(url: string, timeoutMs: number, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = "no answer";
  while (Date.now() < deadline) {
    if (!alive()) throw new Error(`a wrangler process exited before ${url} became healthy`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      if (res.ok) return;
      lastError = `HTTP ${res.status}`;
    } catch (error) {
      lastError = (error as Error).message;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} was not healthy after ${timeoutMs} ms (${lastError})`);
}

export interface BootstrapResult {
  created: boolean;
  token: string | null;
  message: string;
}

/** On first start, creates org `default` and writes its admin token (mode 0600); later starts reuse it. */
export async function bootstrapDefaultOrg(apiUrl: string, paths: LocalPaths, operatorSecret: string): Promise<BootstrapResult> {
  if (existsSync(paths.adminToken)) {
    return { created: false, token: readFileSync(paths.adminToken, "utf8").trim(), message: `admin token in ${paths.adminToken}` };
  }
  const res = await fetch(`${apiUrl}/api/v1/orgs`, {
    method: "POST",
    headers: { authorization: `Bearer ${operatorSecret}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "default", adminTokenName: "local-admin" }),
  });
  if (res.status === 409) {
    return {
      created: false,
      token: null,
      message: `org 'default' exists but ${paths.adminToken} is missing; create a token with another admin token, or start with a fresh --state-dir`,
    };
  }
  if (res.status !== 201) throw new Error(`creating org 'default' failed: HTTP ${res.status} ${await res.text()}`);
  const body = (await res.json()) as { admin: { token: string } };
  writeSecretFile(paths.adminToken, `${body.admin.token}\n`);
  return { created: true, token: body.admin.token, message: `admin token written to ${paths.adminToken}` };
}

/** Stops each process group and waits until the processes are gone. */
export async function stopAll(children: ChildProcess[], signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  const running = children.filter((c) => c.exitCode === null && c.signalCode === null && c.pid !== undefined);
  const exited = running.map((c) => new Promise<void>((r) => c.once("exit", () => r())));
  for (const child of running) {
    try {
      process.kill(-(child.pid as number), signal);
    } catch {
      // Already gone.
    }
  }
  const timer = setTimeout(() => {
    for (const child of running) {
      try {
        process.kill(-(child.pid as number), "SIGKILL");
      } catch {
        // Already gone.
      }
    }
  }, 5000);
  await Promise.all(exited);
  clearTimeout(timer);
}
