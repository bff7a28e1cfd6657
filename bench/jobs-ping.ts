import { existsSync, statfsSync } from "node:fs";
import { tmpdir } from "node:os";
import type { JobEvent } from "../protocol/jobs.ts";
import { type FanOutResult, natsFanOut, natsServerAvailable } from "./nats-baseline.ts";
import { withControlPlane } from "./lib/bench-plane.ts";
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

/** The median of several rounds (by last return), with the spread of the last return across them. */
export interface PingRounds extends PingRun {
  rounds: number;
  lastReturnMinMs: number;
  lastReturnMaxMs: number;
}

export interface PingSizeResult {
  /**
   * `controlPlane` is the first job after the agents sat idle (their node objects hibernated,
   * as between real jobs); `warm` repeats it at once, while those objects are still in memory.
   * Each is the median of `BENCH_PING_ROUNDS` rounds (default 3): one run on this machine varies by a third.
   */
  controlPlane: PingRounds;
  warm: PingRounds;
  nats: FanOutResult | null;
  ratioLastReturn: number | null;
  ratioWarm: number | null;
}

/** Where one run kept the control plane's state, and what kind of file system that is. */
export interface PingStorage {
  dir: string;
  kind: "tmpfs" | "disk";
}

export interface PingBenchResult {
  /** The same runs with the state on disk and on tmpfs: locally every SQLite commit is an fsync on workerd's one thread. */
  storages: Array<{ storage: PingStorage; runs: PingSizeResult[] }>;
  natsNote: string | null;
}

const TMPFS_MAGIC = 0x01021994;

/** `BENCH_PING_STORAGE` (default `disk,tmpfs`): the OS temp dir and `/dev/shm`, the latter only where it is a tmpfs. */
function pingStorages(): PingStorage[] {
  const kindOf = (dir: string): PingStorage["kind"] => (statfsSync(dir).type === TMPFS_MAGIC ? "tmpfs" : "disk");
  const wanted = (process.env.BENCH_PING_STORAGE ?? "disk,tmpfs").split(",");
  const found: PingStorage[] = [];
  if (wanted.includes("disk")) found.push({ dir: tmpdir(), kind: kindOf(tmpdir()) });
  if (wanted.includes("tmpfs") && existsSync("/dev/shm") && kindOf("/dev/shm") === "tmpfs") found.push({ dir: "/dev/shm", kind: "tmpfs" });
  return found;
}

/**
 * Long enough that workerd has evicted every idle node object. It may after 10 s of
 * inactivity, but at 15 s some rounds still found most objects in memory: the idle
 * figures mixed two cases (1.3 s or 4 s for 1,000 targets on disk). From 25 s on,
 * five rounds in a row agreed within 15%.
 */
const IDLE_BEFORE_COLD_MS = 25_000;

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

function medianRound(runs: readonly PingRun[]): PingRounds {
  const sorted = [...runs].sort((a, b) => a.submitToLastReturnMs - b.submitToLastReturnMs);
  const median = sorted[Math.floor((sorted.length - 1) / 2)] as PingRun;
  const lasts = sorted.map((run) => run.submitToLastReturnMs);
  return { ...median, rounds: runs.length, lastReturnMinMs: Math.min(...lasts), lastReturnMaxMs: Math.max(...lasts) };
}

export async function runPingBench(log: (line: string) => void): Promise<PingBenchResult> {
  const sizes = (process.env.BENCH_PING_SIZES ?? "100,1000").split(",").map(Number);
  const rounds = Math.max(1, Number(process.env.BENCH_PING_ROUNDS ?? "3") || 3);
  const nats = natsServerAvailable() ? await natsFanOut(sizes) : null;
  const storages: PingBenchResult["storages"] = [];
  for (const storage of pingStorages()) {
    log(`state in ${storage.dir} (${storage.kind})`);
    storages.push({ storage, runs: await pingOnStorage(storage, sizes, rounds, nats, log) });
  }
  return { storages, natsNote: nats ? null : "nats-server not installed (apt-get install nats-server): no baseline" };
}

async function pingOnStorage(
  storage: PingStorage,
  sizes: readonly number[],
  rounds: number,
  natsResults: Map<number, FanOutResult> | null,
  log: (line: string) => void,
): Promise<PingSizeResult[]> {
  return withControlPlane(async ({ apiUrl, adminToken: admin, sockets }) => {
    const agents = makeAgents(Math.max(...sizes), "ping");
    log(`enrolling and connecting ${agents.length} simulated agents`);
    await enrollAll(apiUrl, admin, agents);
    sockets.push(...(await mapPool(agents, 50, (a) => challengeAndConnect(apiUrl, "default", a))));
    for (const ws of sockets) answerPings(ws);
    await pingOnce(apiUrl, admin, "ping-0000[0-9]", 10); // warm-up
    const runs: PingSizeResult[] = [];
    for (const n of sizes) {
      const target = n === 100 ? "ping-000[0-9][0-9]" : "ping-*";
      log(`test.ping to ${n} agents, ${rounds} rounds: after ${IDLE_BEFORE_COLD_MS / 1000} s idle, then again at once`);
      const idleRuns: PingRun[] = [];
      const warmRuns: PingRun[] = [];
      for (let round = 0; round < rounds; round++) {
        await new Promise((r) => setTimeout(r, IDLE_BEFORE_COLD_MS));
        idleRuns.push(await pingOnce(apiUrl, admin, target, n));
        warmRuns.push(await pingOnce(apiUrl, admin, target, n));
      }
      const controlPlane = medianRound(idleRuns);
      const warm = medianRound(warmRuns);
      const nats = natsResults?.get(n) ?? null;
      const ratio = (run: PingRun) => (nats ? Math.round((run.submitToLastReturnMs / nats.lastReplyMs) * 10) / 10 : null);
      runs.push({ controlPlane, warm, nats, ratioLastReturn: ratio(controlPlane), ratioWarm: ratio(warm) });
    }
    return runs;
  }, storage.dir);
}

/** The goals the issue sets, judged on the median round: 1,000 agents all returned within 3 s; 100 agents p99 under 300 ms. */
export function goalVerdicts(runs: readonly PingSizeResult[]): string[] {
  const verdict = (met: boolean, ms: number) => `${met ? "met" : "NOT met"} (${ms} ms)`;
  const lines: string[] = [];
  for (const run of runs) {
    const { controlPlane: idle, warm } = run;
    if (idle.agents === 1000) {
      lines.push(`1,000 agents all returned within 3 s: idle ${verdict(idle.submitToLastReturnMs <= 3000, idle.submitToLastReturnMs)}, again ${verdict(warm.submitToLastReturnMs <= 3000, warm.submitToLastReturnMs)}`);
    }
    if (idle.agents === 100) {
      lines.push(`100 agents p99 under 300 ms: idle ${verdict(idle.p99Ms < 300, idle.p99Ms)}, again ${verdict(warm.p99Ms < 300, warm.p99Ms)}`);
    }
  }
  return lines;
}
