import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type WebSocket from "ws";
import type { JobEvent } from "../protocol/jobs.ts";
import { bootstrapDefaultOrg, ensureOperatorSecret, freePort, localPaths, startWorkers, stopAll, waitForHealthy } from "../scripts/lib/control-plane.ts";
import { type FanOutResult, natsFanOut, natsServerAvailable } from "./nats-baseline.ts";
import { mapPool } from "./lib/pool.ts";
import { answerPings, challengeAndConnect, enrollAll, makeAgents, postJson } from "./lib/sim-agents.ts";
import { percentile } from "./lib/stats.ts";

/** `test.ping` to 100 and 1,000 simulated agents through the local control plane, next to NATS request-reply. */

export interface PingRun {
  agents: number;
  submitToLastReturnMs: number;
  p50Ms: number;
  p99Ms: number;
  returnsPerSecond: number;
}

export interface PingBenchResult {
  runs: Array<{ controlPlane: PingRun; nats: FanOutResult | null; ratioLastReturn: number | null }>;
  natsNote: string | null;
}

/** Reads the job's SSE stream to the end; per-target latency is the server time the return was stored. */
async function followJob(apiUrl: string, token: string, jid: string): Promise<JobEvent[]> {
  const res = await fetch(`${apiUrl}/api/v1/jobs/${jid}/events`, { headers: { authorization: `Bearer ${token}` } });
  const text = await res.text();
  return text
    .split("\n")
    .filter((line) => line.startsWith("data: "))
    .map((line) => JSON.parse(line.slice(6)) as JobEvent);
}

async function pingOnce(apiUrl: string, token: string, target: string, n: number): Promise<PingRun> {
  const submitted = Date.now();
  const { jid } = await postJson<{ jid: string }>(`${apiUrl}/api/v1/jobs`, { target, function: "test.ping", timeout: 60 }, token);
  const events = await followJob(apiUrl, token, jid);
  const latencies = events.filter((e) => e.type === "target.returned").map((e) => Date.parse(e.ts) - submitted);
  if (latencies.length !== n) throw new Error(`expected ${n} returns, got ${latencies.length}`);
  const last = Math.max(...latencies);
  return { agents: n, submitToLastReturnMs: last, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), returnsPerSecond: Math.round(n / (last / 1000)) };
}

export async function runPingBench(log: (line: string) => void): Promise<PingBenchResult> {
  const sizes = [100, 1000] as const;
  const root = mkdtempSync(join(tmpdir(), "zectre-bench-jobs-"));
  const paths = localPaths(join(root, "state"));
  const secret = ensureOperatorSecret(paths);
  const [apiPort, proxyPort] = [await freePort(), await freePort()];
  const children = await startWorkers({ apiPort, proxyPort, stateDir: paths.stateDir }, secret);
  const apiUrl = `http://127.0.0.1:${apiPort}`;
  const sockets: WebSocket[] = [];
  try {
    await waitForHealthy(`${apiUrl}/healthz`, 60_000, () => children.every((c) => c.exitCode === null));
    const admin = (await bootstrapDefaultOrg(apiUrl, paths, secret)).token as string;
    const agents = makeAgents(1000, "ping");
    log("enrolling and connecting 1000 simulated agents");
    await enrollAll(apiUrl, admin, agents);
    sockets.push(...(await mapPool(agents, 50, (a) => challengeAndConnect(apiUrl, "default", a))));
    for (const ws of sockets) answerPings(ws);
    await pingOnce(apiUrl, admin, "ping-0000[0-9]", 10); // warm-up
    const natsResults = natsServerAvailable() ? await natsFanOut(sizes) : null;
    const runs: PingBenchResult["runs"] = [];
    for (const n of sizes) {
      log(`test.ping to ${n} agents`);
      const target = n === 100 ? "ping-000[0-9][0-9]" : "ping-*";
      const controlPlane = await pingOnce(apiUrl, admin, target, n);
      const nats = natsResults?.get(n) ?? null;
      runs.push({ controlPlane, nats, ratioLastReturn: nats ? Math.round((controlPlane.submitToLastReturnMs / nats.lastReplyMs) * 10) / 10 : null });
    }
    return { runs, natsNote: natsResults ? null : "nats-server not installed (apt-get install nats-server): no baseline" };
  } finally {
    for (const ws of sockets) ws.terminate();
    await stopAll(children);
    rmSync(root, { recursive: true, force: true });
  }
}
