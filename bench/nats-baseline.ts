import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { connect, createInbox, type NatsConnection } from "nats";
import { freePort } from "../scripts/lib/control-plane.ts";
import { mapPool } from "./lib/pool.ts";
import { percentile } from "./lib/stats.ts";

/** The same fan-out as a Zester master does it: one request on a subject, N responders, replies to one inbox. */

export interface FanOutResult {
  lastReplyMs: number;
  p50Ms: number;
  p99Ms: number;
  repliesPerSecond: number;
}

export function natsServerAvailable(): boolean {
  return spawnSync("nats-server", ["--version"], { stdio: "ignore" }).status === 0;
}

async function startServer(): Promise<{ child: ChildProcess; url: string }> {
  const port = await freePort();
  const child = spawn("nats-server", ["-a", "127.0.0.1", "-p", String(port)], { stdio: "ignore" });
  const url = `nats://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try {
      const probe = await connect({ servers: url, timeout: 500 });
      await probe.close();
      return { child, url };
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  child.kill();
  throw new Error("nats-server did not start");
}

export async function natsFanOut(sizes: readonly number[]): Promise<Map<number, FanOutResult>> {
  const { child, url } = await startServer();
  const responders: NatsConnection[] = [];
  const results = new Map<number, FanOutResult>();
  try {
    const max = Math.max(...sizes);
    // One connection per simulated host, like one agent socket each.
    responders.push(...(await mapPool(Array.from({ length: max }), 50, () => connect({ servers: url }))));
    const requester = await connect({ servers: url });
    for (const n of sizes) {
      responders.forEach((nc, i) => {
        if (i >= n) return;
        nc.subscribe(`bench.ping.${n}`, { callback: (_err, msg) => msg.respond(new TextEncoder().encode("true")) });
      });
      await Promise.all(responders.slice(0, n).map((nc) => nc.flush()));
      results.set(n, await fanOnce(requester, `bench.ping.${n}`, n));
    }
    await requester.close();
  } finally {
    await Promise.all(responders.map((nc) => nc.close().catch(() => undefined)));
    child.kill();
  }
  return results;
}

function fanOnce(nc: NatsConnection, subject: string, n: number): Promise<FanOutResult> {
  const inbox = createInbox();
  const latencies: number[] = [];
  return new Promise((resolve) => {
    let started = 0;
    nc.subscribe(inbox, {
      max: n,
      callback: () => {
        latencies.push(performance.now() - started);
        if (latencies.length === n) {
          const last = Math.max(...latencies);
          resolve({ lastReplyMs: round(last), p50Ms: round(percentile(latencies, 50)), p99Ms: round(percentile(latencies, 99)), repliesPerSecond: Math.round(n / (last / 1000)) });
        }
      },
    });
    void nc.flush().then(() => {
      started = performance.now();
      nc.publish(subject, new TextEncoder().encode("ping"), { reply: inbox });
    });
  });
}

const round = (ms: number) => Math.round(ms * 10) / 10;
