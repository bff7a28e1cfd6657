#!/usr/bin/env node
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runConnectBench } from "./agents-connect.ts";

/** `npm run bench`: every benchmark, each next to a baseline measured in the same run. */

const agents = Number(process.env.BENCH_AGENTS ?? "1000");
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? "50");
const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);

const connect = await runConnectBench(agents, concurrency, log);
const results = { date: new Date().toISOString(), node: process.version, connect };
const dir = join(import.meta.dirname, "results");
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, "latest.json"), `${JSON.stringify(results, null, 2)}\n`);

const c = connect;
process.stdout.write(
  [
    `agents connect (${c.agents} agents, ${c.concurrency} in flight)`,
    `  control plane: all welcomed in ${c.controlPlane.allWelcomedSeconds} s (${c.controlPlane.connectsPerSecond}/s), all online in the directory in ${c.controlPlane.allOnlineSeconds} s`,
    `  plain ws echo: all open in ${c.baseline.allOpenSeconds} s (${c.baseline.connectsPerSecond}/s)`,
    `  ratio: the control plane takes ${c.slowdown}x the plain server's time (enrollment beforehand: ${c.enrollSeconds} s)`,
    `  one connect at a time (mean of ${c.sequentialMs.samples}): challenge ${c.sequentialMs.challenge} ms + upgrade to welcome ${c.sequentialMs.upgradeToWelcome} ms; a constant route (/healthz) ${c.sequentialMs.healthz} ms`,
    "",
  ].join("\n"),
);
