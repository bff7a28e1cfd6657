import { sign } from "node:crypto";
import { WebSocketServer } from "ws";
import { connectSigningInput } from "../protocol/nodes.ts";
import { withControlPlane } from "./lib/bench-plane.ts";
import { mapPool, seconds } from "./lib/pool.ts";
import { challengeAndConnect, enrollAll, makeAgents, openUntilFirstMessage, postJson, type SimAgent } from "./lib/sim-agents.ts";

/**
 * Connects N simulated agents (one Node process) to a local control plane and,
 * in the same run, opens N connections to a plain `ws` echo server: the ratio
 * between the two is the figure, since absolute numbers depend on the machine.
 */

export interface ConnectBenchResult {
  agents: number;
  concurrency: number;
  enrollSeconds: number;
  controlPlane: { allWelcomedSeconds: number; allOnlineSeconds: number; connectsPerSecond: number };
  baseline: { allOpenSeconds: number; connectsPerSecond: number };
  /** Sequential means (ms) that show where one connect's time goes; healthz is a constant route. */
  sequentialMs: { healthz: number; challenge: number; upgradeToWelcome: number; samples: number };
  /** How many times longer the control plane took than the plain echo server. */
  slowdown: number;
}







const SEQUENTIAL_SAMPLES = 30;

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const value = await fn();
  return [value, performance.now() - started];
}

/** One connect at a time, split into its steps, next to a request that does nothing. */
async function sequentialBreakdown(apiUrl: string, org: string, agents: SimAgent[]): Promise<ConnectBenchResult["sequentialMs"]> {
  const sum = { healthz: 0, challenge: 0, upgradeToWelcome: 0 };
  for (const agent of agents) {
    sum.healthz += (await timed(() => fetch(`${apiUrl}/healthz`).then((r) => r.text())))[1];
    const [{ nonce }, challengeMs] = await timed(() =>
      postJson<{ nonce: string }>(`${apiUrl}/api/v1/agent/challenge`, { v: 1, org, nodeId: agent.nodeId }),
    );
    sum.challenge += challengeMs;
    const sig = sign(null, connectSigningInput(org, agent.nodeId, nonce), agent.key).toString("base64url");
    const query = new URLSearchParams({ org, node: agent.nodeId, nonce, sig });
    const [ws, upgradeMs] = await timed(() => openUntilFirstMessage(`${apiUrl.replace(/^http/, "ws")}/api/v1/agent/connect?${query}`));
    sum.upgradeToWelcome += upgradeMs;
    ws.terminate();
  }
  const mean = (total: number) => Math.round((total / agents.length) * 10) / 10;
  return { healthz: mean(sum.healthz), challenge: mean(sum.challenge), upgradeToWelcome: mean(sum.upgradeToWelcome), samples: agents.length };
}

async function countOnline(apiUrl: string, token: string): Promise<number> {
  const res = await fetch(`${apiUrl}/api/v1/nodes`, { headers: { authorization: `Bearer ${token}` } });
  const body = (await res.json()) as { nodes: { online: boolean }[] };
  return body.nodes.filter((n) => n.online).length;
}

async function baseline(n: number, concurrency: number): Promise<ConnectBenchResult["baseline"]> {
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise<void>((r) => server.once("listening", () => r()));
  // Like the control plane's welcome: the server speaks first, so "open" means one message arrived.
  server.on("connection", (ws) => {
    ws.send('{"type":"hello"}');
    ws.on("message", (data) => ws.send(data));
  });
  const { port } = server.address() as { port: number };
  const started = Date.now();
  const sockets = await mapPool(Array.from({ length: n }), concurrency, () => openUntilFirstMessage(`ws://127.0.0.1:${port}`));
  const elapsed = seconds(started, Date.now());
  for (const ws of sockets) ws.terminate();
  await new Promise<void>((r) => server.close(() => r()));
  return { allOpenSeconds: elapsed, connectsPerSecond: Math.round(n / elapsed) };
}

export async function runConnectBench(n: number, concurrency: number, log: (line: string) => void): Promise<ConnectBenchResult> {
  return withControlPlane(async ({ apiUrl, adminToken: admin, sockets }) => {
    const total = n + SEQUENTIAL_SAMPLES;
    const everyone = makeAgents(total);
    const agents = everyone.slice(0, n);
    const probes = everyone.slice(n);
    log(`enrolling ${total} simulated agents`);
    const enrollStart = Date.now();
    await enrollAll(apiUrl, admin, everyone);
    const enrollSeconds = seconds(enrollStart, Date.now());
    log(`timing ${SEQUENTIAL_SAMPLES} connects one at a time`);
    const sequentialMs = await sequentialBreakdown(apiUrl, "default", probes);
    log(`connecting ${n} agents, ${concurrency} at a time`);
    const started = Date.now();
    sockets.push(...(await mapPool(agents, concurrency, (a) => challengeAndConnect(apiUrl, "default", a))));
    const welcomed = Date.now();
    // The probes disconnected; only the N parallel agents count.
    while ((await countOnline(apiUrl, admin)) < n) await new Promise((r) => setTimeout(r, 100));
    const online = Date.now();
    for (const ws of sockets) ws.terminate();
    sockets.length = 0;
    log(`baseline: ${n} connections to a plain ws echo server`);
    const base = await baseline(n, concurrency);
    const allWelcomedSeconds = seconds(started, welcomed);
    return {
      agents: n,
      concurrency,
      enrollSeconds,
      controlPlane: { allWelcomedSeconds, allOnlineSeconds: seconds(started, online), connectsPerSecond: Math.round(n / allWelcomedSeconds) },
      baseline: base,
      sequentialMs,
      slowdown: Math.round((allWelcomedSeconds / base.allOpenSeconds) * 10) / 10,
    };
  });
}
