#!/usr/bin/env node
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runConnectBench } from "./agents-connect.ts";
import { goalVerdicts, runPingBench } from "./jobs-ping.ts";
import { runProxyBench } from "./proxy.ts";

/** `npm run bench`: every benchmark, each next to a baseline measured in the same run. */

const agents = Number(process.env.BENCH_AGENTS ?? "1000");
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? "50");
const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);

const only = process.env.BENCH_ONLY;
const connect = only === undefined || only === "connect" ? await runConnectBench(agents, concurrency, log) : null;
const ping = only === undefined || only === "jobs" ? await runPingBench(log) : null;
const proxy = only === undefined || only === "proxy" ? await runProxyBench(log) : null;
const results = { date: new Date().toISOString(), node: process.version, connect, ping, proxy };
const dir = join(import.meta.dirname, "results");
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, "latest.json"), `${JSON.stringify(results, null, 2)}\n`);

const lines: string[] = [];
if (connect) {
  const c = connect;
  lines.push(
    `agents connect (${c.agents} agents, ${c.concurrency} in flight)`,
    `  control plane: all welcomed in ${c.controlPlane.allWelcomedSeconds} s (${c.controlPlane.connectsPerSecond}/s), all online in the directory in ${c.controlPlane.allOnlineSeconds} s`,
    `  plain ws echo: all open in ${c.baseline.allOpenSeconds} s (${c.baseline.connectsPerSecond}/s)`,
    `  ratio: the control plane takes ${c.slowdown}x the plain server's time (enrollment beforehand: ${c.enrollSeconds} s)`,
    `  one connect at a time (mean of ${c.sequentialMs.samples}): challenge ${c.sequentialMs.challenge} ms + upgrade to welcome ${c.sequentialMs.upgradeToWelcome} ms; a constant route (/healthz) ${c.sequentialMs.healthz} ms`,
  );
}
if (ping) {
  lines.push("test.ping fan-out (submit to last return; per-target p50/p99; median round, range of the last return)");
  for (const { storage, runs } of ping.storages) {
    lines.push(`  state in ${storage.dir} (${storage.kind})`);
    for (const run of runs) {
      const cp = run.controlPlane;
      const w = run.warm;
      const range = (r: typeof cp) => `${r.rounds} rounds: ${r.lastReturnMinMs}-${r.lastReturnMaxMs} ms`;
      lines.push(`    ${cp.agents} agents, node objects idle: control plane ${cp.submitToLastReturnMs} ms (p50 ${cp.p50Ms}, p99 ${cp.p99Ms}; ${cp.returnsPerSecond} returns/s into one JobObject; ${range(cp)})`);
      lines.push(`    ${w.agents} agents, again at once:   control plane ${w.submitToLastReturnMs} ms (p50 ${w.p50Ms}, p99 ${w.p99Ms}; ${w.returnsPerSecond} returns/s; ${range(w)})`);
      if (run.nats) lines.push(`               NATS request-reply ${run.nats.lastReplyMs} ms (p50 ${run.nats.p50Ms}, p99 ${run.nats.p99Ms}); ratio ${run.ratioLastReturn}x idle, ${run.ratioWarm}x again`);
    }
    for (const goal of goalVerdicts(runs)) lines.push(`    goal: ${goal}`);
  }
  if (ping.natsNote) lines.push(`  ${ping.natsNote}`);
}
if (proxy && "skipped" in proxy) lines.push(`proxy: skipped, ${proxy.skipped}`);
else if (proxy) {
  lines.push(`proxy and tunnel (wrk, ${proxy.seconds} s per figure; requests/s, p50/p99 ms)`);
  for (const r of proxy.runs) {
    const fig = (f: { requestsPerSecond: number; p50Ms: number; p99Ms: number; errors: number }) =>
      `${f.requestsPerSecond}/s ${f.p50Ms}/${f.p99Ms}${f.errors > 0 ? ` (${f.errors} errors)` : ""}`;
    lines.push(`  ${r.connections} connections: direct ${fig(r.direct)}; nginx ${fig(r.nginx)}; zectre ${fig(r.zectre)}`);
    lines.push(`    zectre/direct ${r.zectreOverDirect}x, zectre/nginx ${r.zectreOverNginx}x requests/s; added p50 ${r.addedP50Ms} ms`);
    lines.push(`    to a direct node: ${fig(r.zectreDirectNode)}; added p50 ${r.addedP50MsDirectNode} ms`);
  }
  const s = proxy.sequentialMs;
  lines.push(
    `  one request at a time (median of ${s.samples}, ms): app ${s.app}, nginx ${s.nginx}, proxy /healthz ${s.proxyHealthz}, through the tunnel ${s.tunnel}, to a direct node ${s.directNode}`,
    `    added by the tunnel path ${round2(s.tunnel - s.app)} ms, by the direct-node path ${round2(s.directNode - s.app)} ms, by nginx ${round2(s.nginx - s.app)} ms`,
  );
}
process.stdout.write(`${lines.join("\n")}\n`);

function round2(ms: number): number {
  return Math.round(ms * 100) / 100;
}
