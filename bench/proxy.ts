import { type ChildProcess, execFile, spawn } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { Agent, request } from "node:http";
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
 * proxy Worker, node object and agent tunnel, at 10 and 50 connections; then the
 * same with the node marked direct (the proxy Worker fetches the task itself).
 * One request at a time, the median of each path says what the proxy adds to
 * a single request, which load figures on 2 shared cores cannot.
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
  /** Through the proxy Worker to a node marked direct: no node object, no tunnel. */
  zectreDirectNode: WrkFigures;
  /** Zectre's requests/s over the other's (1 = as fast). */
  zectreOverDirect: number;
  zectreOverNginx: number;
  /** Latency Zectre adds at the median, over the app alone. */
  addedP50Ms: number;
  addedP50MsDirectNode: number;
}

/** Median milliseconds of one request at a time, on a keep-alive connection. */
export interface SequentialFigures {
  samples: number;
  app: number;
  nginx: number;
  proxyHealthz: number;
  tunnel: number;
  directNode: number;
}

export interface ProxyBenchResult {
  seconds: number;
  runs: ProxyBenchRun[];
  sequentialMs: SequentialFigures;
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
    const proxyUrl = `http://127.0.0.1:${fleet.plane.proxyPort}/`;
    const loads = new Map<number, Omit<ProxyBenchRun, "zectreDirectNode" | "addedP50MsDirectNode">>();
    for (const connections of [10, 50]) {
      log(`proxy: ${connections} connections, ${seconds} s each: direct, nginx, zectre through the tunnel`);
      const direct = await wrk(`http://127.0.0.1:${hostPort}/`, connections, seconds);
      const viaNginx = await wrk(`http://127.0.0.1:${started.port}/`, connections, seconds);
      const zectre = await wrk(proxyUrl, connections, seconds, previewHost);
      loads.set(connections, {
        connections, direct, nginx: viaNginx, zectre,
        zectreOverDirect: ratio(zectre.requestsPerSecond, direct.requestsPerSecond),
        zectreOverNginx: ratio(zectre.requestsPerSecond, viaNginx.requestsPerSecond),
        addedP50Ms: round(zectre.p50Ms - direct.p50Ms),
      });
    }
    const samples = Number(process.env.BENCH_PROXY_SEQUENTIAL ?? "50");
    log(`proxy: ${samples} requests one at a time on each path`);
    const sequential = {
      samples,
      app: await sequentialMedian(hostPort, undefined, "/", samples),
      nginx: await sequentialMedian(started.port, undefined, "/", samples),
      proxyHealthz: await sequentialMedian(fleet.plane.proxyPort, `localhost:${fleet.plane.proxyPort}`, "/healthz", samples),
      tunnel: await sequentialMedian(fleet.plane.proxyPort, previewHost, "/", samples),
    };
    await markDirect(cli, fleet.plane.proxyPort, previewHost);
    const runs: ProxyBenchRun[] = [];
    for (const [connections, load] of loads) {
      log(`proxy: ${connections} connections, ${seconds} s: zectre to a direct node`);
      const zectreDirectNode = await wrk(proxyUrl, connections, seconds, previewHost);
      runs.push({ ...load, zectreDirectNode, addedP50MsDirectNode: round(zectreDirectNode.p50Ms - load.direct.p50Ms) });
    }
    const sequentialMs = { ...sequential, directNode: await sequentialMedian(fleet.plane.proxyPort, previewHost, "/", samples) };
    return { seconds, runs, sequentialMs };
  } finally {
    nginx?.kill("SIGTERM");
    await fleet.stop();
  }
}

/** One GET at a time over one keep-alive connection; the median, rounded to 0.01 ms. */
async function sequentialMedian(port: number, host: string | undefined, path: string, samples: number): Promise<number> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const times: number[] = [];
  try {
    for (let i = 0; i < samples + 3; i++) {
      const started = performance.now();
      const status = await getOnce(agent, port, host, path);
      if (status !== 200) throw new Error(`GET ${host ?? "127.0.0.1"}:${port}${path} answered ${status}`);
      if (i >= 3) times.push(performance.now() - started);
    }
  } finally {
    agent.destroy();
  }
  times.sort((a, b) => a - b);
  return round(times[Math.floor(times.length / 2)] as number);
}

function getOnce(agent: Agent, port: number, host: string | undefined, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, agent, headers: host ? { host } : {} }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end();
  });
}

/** Marks the bench node direct at 127.0.0.1 and waits until the proxy's 2-second cache of direct nodes has turned over. */
async function markDirect(cli: (...args: string[]) => Promise<{ code: number; stderr: string }>, proxyPort: number, previewHost: string): Promise<void> {
  const marked = await cli("node", "direct", "bench-proxy", "--address", "127.0.0.1");
  if (marked.code !== 0) throw new Error(`node direct failed: ${marked.stderr}`);
  await new Promise((r) => setTimeout(r, 2500));
  const agent = new Agent({ keepAlive: false });
  const status = await getOnce(agent, proxyPort, previewHost, "/");
  agent.destroy();
  if (status !== 200) throw new Error(`the preview URL answered ${status} once the node was direct`);
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
