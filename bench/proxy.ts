import { type ChildProcess, execFile, spawn } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { DeploymentRecord } from "../protocol/deployments.ts";
import { freePort, PROJECT_ROOT } from "../scripts/lib/control-plane.ts";
import { startFleet } from "../test/helpers/fleet.ts";
import { runCli } from "../test/helpers/run-cli.ts";

/**
 * The edge proxy and tunnel under load (issue 6): `wrk` against the fixture app
 * directly, through nginx as a reverse proxy in front of it, and through Zectre's
 * proxy Worker, node object and agent tunnel, at 10 and 50 connections.
 */

const run = promisify(execFile);

export interface WrkFigures {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

export interface ProxyBenchRun {
  connections: number;
  direct: WrkFigures;
  nginx: WrkFigures;
  zectre: WrkFigures;
  /** Zectre's requests/s over the other's (1 = as fast). */
  zectreOverDirect: number;
  zectreOverNginx: number;
  /** Latency Zectre adds at the median, over the app alone. */
  addedP50Ms: number;
}

export interface ProxyBenchResult {
  seconds: number;
  runs: ProxyBenchRun[];
}

/** "1.23ms", "850.00us", "1.02s" → milliseconds. */
function toMs(text: string): number {
  const match = /^([\d.]+)(us|ms|s|m)$/.exec(text.trim());
  if (!match) return Number.NaN;
  const value = Number(match[1]);
  return match[2] === "us" ? value / 1000 : match[2] === "ms" ? value : match[2] === "s" ? value * 1000 : value * 60_000;
}

export function parseWrk(output: string): WrkFigures {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(output)?.[1] ?? "NaN");
  const p50 = toMs(/^\s+50%\s+(\S+)/m.exec(output)?.[1] ?? "");
  const p99 = toMs(/^\s+99%\s+(\S+)/m.exec(output)?.[1] ?? "");
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? "0");
  const errors = non2xx + (socketErrors ? socketErrors.slice(1).reduce((n, v) => n + Number(v), 0) : 0);
  return { requestsPerSecond: Math.round(rps), p50Ms: round(p50), p99Ms: round(p99), errors };
}

function ratio(a: number, b: number): number {
  return Number((a / b).toPrecision(3));
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

async function wrk(url: string, connections: number, seconds: number, host?: string): Promise<WrkFigures> {
  const args = ["-t2", `-c${connections}`, `-d${seconds}s`, "--latency", ...(host ? ["-H", `Host: ${host}`] : []), url];
  const { stdout } = await run("wrk", args, { maxBuffer: 1024 * 1024 });
  return parseWrk(stdout);
}

/** nginx in the foreground as a keep-alive reverse proxy to the app, its files in a temp dir. */
async function startNginx(appPort: number): Promise<{ port: number; child: ChildProcess }> {
  const dir = mkdtempSync(join(tmpdir(), "zectre-bench-nginx-"));
  for (const sub of ["body", "proxy", "fastcgi", "uwsgi", "scgi"]) mkdirSync(join(dir, sub));
  const port = await freePort();
  const conf = join(dir, "nginx.conf");
  writeFileSync(
    conf,
    `worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  upstream app { server 127.0.0.1:${appPort}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
    }
  }
}
`,
  );
  const child = spawn("nginx", ["-c", conf, "-p", dir], { stdio: "ignore" });
  for (let i = 0; i < 50; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) return { port, child };
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill("SIGKILL");
  throw new Error("nginx did not start; is the nginx package installed?");
}

export async function runProxyBench(log: (line: string) => void): Promise<ProxyBenchResult | { skipped: string }> {
  for (const tool of ["wrk", "nginx"]) {
    try {
      await run("which", [tool]);
    } catch {
      return { skipped: `${tool} is not installed (Debian packages wrk and nginx)` };
    }
  }
  const seconds = Number(process.env.BENCH_PROXY_SECONDS ?? "10");
  log("proxy: starting a control plane and one agent");
  const fleet = await startFleet(["bench-proxy"], {});
  let nginx: ChildProcess | undefined;
  try {
    const dir = join(mkdtempSync(join(tmpdir(), "zectre-bench-app-")), "hello");
    cpSync(join(PROJECT_ROOT, "test/fixtures/hello-app"), dir, { recursive: true });
    const cli = (...args: string[]) => runCli(args, { cwd: fleet.plane.root, env: { ZECTRE_CONFIG_DIR: join(fleet.plane.root, "config") } });
    const deployed = await cli("deploy", dir, "--app", "bench", "--health-path", "/healthz", "--env", "QUIET=1", "--format", "json");
    if (deployed.code !== 0) throw new Error(`deploy failed: ${deployed.stderr}`);
    const deployment = (JSON.parse(deployed.stdout) as { deployment: DeploymentRecord }).deployment;
    const hostPort = await healthyPort(fleet.api, deployment.id);
    const previewHost = `${deployment.id}.bench.default.localhost:${fleet.plane.proxyPort}`;
    const started = await startNginx(hostPort);
    nginx = started.child;
    const runs: ProxyBenchRun[] = [];
    for (const connections of [10, 50]) {
      log(`proxy: ${connections} connections, ${seconds} s each: direct, nginx, zectre`);
      const direct = await wrk(`http://127.0.0.1:${hostPort}/`, connections, seconds);
      const viaNginx = await wrk(`http://127.0.0.1:${started.port}/`, connections, seconds);
      const zectre = await wrk(`http://127.0.0.1:${fleet.plane.proxyPort}/`, connections, seconds, previewHost);
      runs.push({
        connections,
        direct,
        nginx: viaNginx,
        zectre,
        zectreOverDirect: ratio(zectre.requestsPerSecond, direct.requestsPerSecond),
        zectreOverNginx: ratio(zectre.requestsPerSecond, viaNginx.requestsPerSecond),
        addedP50Ms: round(zectre.p50Ms - direct.p50Ms),
      });
    }
    return { seconds, runs };
  } finally {
    nginx?.kill("SIGTERM");
    await fleet.stop();
  }
}

async function healthyPort(api: Awaited<ReturnType<typeof startFleet>>["api"], id: string): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const deployment = (await api("GET", `/api/v1/deployments/${id}`)).body.deployment as DeploymentRecord;
    const task = deployment.tasks.find((t) => t.state === "healthy" && t.hostPort !== null);
    if (task) return task.hostPort as number;
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new Error("the bench app never became healthy");
}
