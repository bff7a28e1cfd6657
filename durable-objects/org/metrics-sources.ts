import type { JobSummary } from "../../protocol/jobs.ts";
import { type MetricDeltas, MetricsAccumulator, type ScalarSample } from "../../protocol/metrics.ts";

/**
 * Where the org object's own numbers come from: gauges read at scrape time from tables the
 * org already keeps (node directory, job index), and the deltas of a job reaching its final
 * state, taken from the summary each JobObject already sends to the job index.
 */

const LIVE_STATES = "('approved', 'active')";

/** Nodes by presence and connected agents by version: one aggregate query, whatever the fleet's size. */
export function nodeGauges(sql: SqlStorage): ScalarSample[] {
  const rows = sql
    .exec<{ online: number; version: string | null; n: number }>(
      `SELECT online, json_extract(facts, '$.agentVersion') AS version, COUNT(*) AS n
       FROM nodes WHERE state IN ${LIVE_STATES} GROUP BY online, version`,
    )
    .toArray();
  const presence = { online: 0, offline: 0 };
  const versions = new Map<string, number>();
  for (const row of rows) {
    if (row.online === 1) {
      presence.online += row.n;
      const version = typeof row.version === "string" && row.version !== "" ? row.version : "unknown";
      versions.set(version, (versions.get(version) ?? 0) + row.n);
    } else presence.offline += row.n;
  }
  return [
    { name: "zectre_nodes", labels: { presence: "online" }, value: presence.online },
    { name: "zectre_nodes", labels: { presence: "offline" }, value: presence.offline },
    ...[...versions].map(([version, n]) => ({ name: "zectre_agents_connected", labels: { version }, value: n })),
  ];
}

export function jobGauges(sql: SqlStorage): ScalarSample[] {
  const active = sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM jobs WHERE active = 1").one().n;
  return [{ name: "zectre_jobs_active", labels: {}, value: active }];
}

/** Counters that read 0 rather than being absent before their first event, so rate() and dashboards see them from the start. */
export const ZERO_COUNTERS: readonly ScalarSample[] = [
  { name: "zectre_agent_connections_total", labels: {}, value: 0 },
  { name: "zectre_agent_disconnections_total", labels: {}, value: 0 },
];

const ACTIVE = new Set(["claimed", "running"]);

/** Whether this index update is the job's move into its final state (the previous status is null for a job not indexed before). */
export function isFinishing(previousStatus: string | null, summary: JobSummary): boolean {
  return !ACTIVE.has(summary.status) && (previousStatus === null || ACTIVE.has(previousStatus));
}

/**
 * A finished job: its final state, its real returns and, for jobs the control plane dispatched,
 * the time from creation to the final state (the summary's `updatedAt` is set when it finishes).
 * Jobs made from an agent's schedule report (user `node:<id>`) were never dispatched: no duration.
 */
export function jobFinishedDeltas(summary: JobSummary): MetricDeltas {
  const metrics = new MetricsAccumulator();
  metrics.count("zectre_jobs_finished_total", { status: summary.status });
  metrics.count("zectre_job_returns_total", { result: "succeeded" }, summary.counts.succeeded);
  metrics.count("zectre_job_returns_total", { result: "failed" }, summary.counts.failed);
  if (!summary.user.startsWith("node:")) {
    const seconds = Math.max(0, Date.parse(summary.updatedAt) - Date.parse(summary.createdAt)) / 1000;
    if (Number.isFinite(seconds)) metrics.observe("zectre_job_duration_seconds", {}, seconds);
  }
  return metrics.drain();
}
