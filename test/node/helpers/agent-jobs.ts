import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach } from "vitest";
import { JobRunner, type JobRunnerOptions } from "../../../agent/src/jobs/runner.ts";
import type { ReturnEnvelope } from "../../../agent/src/jobs/returns.ts";
import { collectFacts } from "../../../agent/src/facts.ts";
import { Logger } from "../../../agent/src/log.ts";
import { DedupLedger } from "../../../agent/src/state/ledger.ts";
import type { SettingsSnapshot } from "../../../agent/src/state/settings.ts";
import type { JobDispatch } from "../../../protocol/jobs.ts";
import type { JsonObject } from "../../../protocol/json.ts";
import type { Facts } from "../../../protocol/nodes.ts";
import { until } from "./agent-control-plane.ts";

/** A JobRunner in-process, with its returns and log lines collected, for the job tests. */

let jidCounter = 0;

/** A fresh, valid jid (23 digits) per call, unique within the test run. */
export function testJid(): string {
  jidCounter++;
  return `20260101000000000${String(jidCounter).padStart(6, "0")}`;
}

export function dispatchOf(fn: string, args: JsonObject = {}, options: Partial<Omit<JobDispatch, "kind" | "function" | "args">> = {}): JobDispatch {
  return { kind: "job.dispatch", jid: options.jid ?? testJid(), epoch: options.epoch ?? 1, function: fn, args, timeout: options.timeout ?? 30, test: options.test ?? false };
}

/** Facts collected once: the job tests compare them, and live disk numbers could move between two reads. */
export const FIXED_FACTS: Facts = collectFacts({ rack: "r1", role: "web" });

export interface RunnerHarness {
  readonly runner: JobRunner;
  readonly ledger: DedupLedger;
  readonly returns: ReturnEnvelope[];
  readonly logs: Record<string, unknown>[];
  /** The snapshot `settings.*` sees; tests may replace it. */
  settings: SettingsSnapshot | null;
  /** Accepts a dispatch and resolves with its return. */
  run(fn: string, args?: JsonObject, options?: Partial<Omit<JobDispatch, "kind" | "function" | "args">>): Promise<ReturnEnvelope["return"]>;
  /** Resolves with the return of (jid, epoch), already stored or still to come. */
  returnOf(jid: string, epoch?: number): Promise<ReturnEnvelope>;
}

/** Makes runners whose jobs are stopped (processes killed) and ledgers closed after each test. */
export function useJobRunners(tempDir: () => string): (options?: Partial<JobRunnerOptions> & { ledgerPath?: string }) => RunnerHarness {
  const made: RunnerHarness[] = [];
  afterEach(async () => {
    for (const harness of made.splice(0)) {
      await harness.runner.stop();
      harness.ledger.close();
    }
  });
  return (options = {}) => {
    const ledger = DedupLedger.open(options.ledgerPath ?? join(tempDir(), "ledger.jsonl"));
    const returns: ReturnEnvelope[] = [];
    const logs: Record<string, unknown>[] = [];
    const logger = new Logger({ sink: (line) => logs.push(JSON.parse(line) as Record<string, unknown>) });
    const harness: RunnerHarness = {
      runner: new JobRunner({
        ledger,
        enqueue: (message) => returns.push(message),
        logger,
        facts: () => FIXED_FACTS,
        settings: () => harness.settings,
        ...options,
      }),
      ledger,
      returns,
      logs,
      settings: null,
      returnOf: (jid, epoch = 1) => until(() => returns.find((r) => r.jid === jid && r.epoch === epoch), `the return of ${jid}/${epoch}`, 10_000),
      run: async (fn, args = {}, dispatchOptions = {}) => {
        const dispatch = dispatchOf(fn, args, dispatchOptions);
        harness.runner.accept(dispatch);
        return (await harness.returnOf(dispatch.jid, dispatch.epoch)).return;
      },
    };
    made.push(harness);
    return harness;
  };
}

/**
 * Live members of a process group, from /proc (Linux). A zombie counts as gone:
 * it is dead, only not yet reaped by its new parent.
 */
export function groupMembers(pgid: number): number[] {
  const members: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(join("/proc", name, "stat"), "utf8");
    } catch {
      continue;
    }
    // pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so split after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (fields[0] !== "Z" && Number(fields[2]) === pgid) members.push(Number(name));
  }
  return members;
}

export function processAlive(pid: number): boolean {
  if (!existsSync(join("/proc", String(pid)))) return false;
  try {
    const stat = readFileSync(join("/proc", String(pid), "stat"), "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}
