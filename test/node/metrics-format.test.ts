import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { bucketIndex, deltaProblem, INSTALLATION_METRICS, METRICS, MetricsAccumulator, type Sample } from "../../protocol/metrics.ts";
import { escapeLabelValue, formatNumber, renderMetrics } from "../../protocol/metrics-text.ts";

/** The Prometheus text renderer, the in-memory accumulator and the delta checks, all pure. */

const PROMTOOL = "/usr/bin/promtool";

function promtoolCheck(text: string): { code: number | null; output: string } {
  const run = spawnSync(PROMTOOL, ["check", "metrics"], { input: text, encoding: "utf8" });
  return { code: run.status, output: `${run.stdout}${run.stderr}` };
}

describe("renderMetrics", () => {
  it("writes HELP and TYPE for every family, then its series with the org label first", () => {
    const text = renderMetrics(
      [
        { name: "zectre_jobs_finished_total", labels: { status: "failed", org: "acme" }, value: 2 },
        { name: "zectre_jobs_finished_total", labels: { org: "acme", status: "complete" }, value: 5 },
        { name: "zectre_nodes", labels: { org: "acme", presence: "online" }, value: 3 },
      ],
      METRICS,
    );
    const lines = text.split("\n");
    for (const name of Object.keys(METRICS)) {
      expect(lines).toContain(`# TYPE ${name} ${METRICS[name as keyof typeof METRICS].type}`);
      expect(lines.some((l) => l.startsWith(`# HELP ${name} `))).toBe(true);
    }
    const finished = lines.filter((l) => l.startsWith("zectre_jobs_finished_total{"));
    expect(finished).toEqual(['zectre_jobs_finished_total{org="acme",status="complete"} 5', 'zectre_jobs_finished_total{org="acme",status="failed"} 2']);
    expect(lines).toContain('zectre_nodes{org="acme",presence="online"} 3');
    // The family's samples follow its own TYPE line, before the next family's HELP.
    const typeAt = lines.indexOf("# TYPE zectre_jobs_finished_total counter");
    expect(lines[typeAt + 1]).toBe(finished[0]);
    expect(text.endsWith("\n")).toBe(true);
  });

  it("renders a histogram as cumulative buckets ending in +Inf, then _sum and _count", () => {
    const bounds = METRICS.zectre_job_duration_seconds.buckets;
    const buckets = new Array<number>(bounds.length + 1).fill(0);
    buckets[0] = 1; // ≤ 0.05
    buckets[4] = 2; // ≤ 1
    buckets[bounds.length] = 1; // > 3600
    const text = renderMetrics([{ name: "zectre_job_duration_seconds", labels: { org: "o" }, buckets, sum: 4000.5, count: 4 }], METRICS);
    const series = text.split("\n").filter((l) => l.startsWith("zectre_job_duration_seconds"));
    expect(series[0]).toBe('zectre_job_duration_seconds_bucket{org="o",le="0.05"} 1');
    expect(series[3]).toBe('zectre_job_duration_seconds_bucket{org="o",le="0.5"} 1');
    expect(series[4]).toBe('zectre_job_duration_seconds_bucket{org="o",le="1"} 3');
    expect(series[bounds.length - 1]).toBe('zectre_job_duration_seconds_bucket{org="o",le="3600"} 3');
    expect(series[bounds.length]).toBe('zectre_job_duration_seconds_bucket{org="o",le="+Inf"} 4');
    expect(series.slice(bounds.length + 1)).toEqual(['zectre_job_duration_seconds_sum{org="o"} 4000.5', 'zectre_job_duration_seconds_count{org="o"} 4']);
  });

  it("escapes label values and formats special numbers", () => {
    expect(escapeLabelValue('a"b\\c\nd')).toBe('a\\"b\\\\c\\nd');
    expect([formatNumber(Number.NaN), formatNumber(Infinity), formatNumber(-Infinity), formatNumber(0.25), formatNumber(3)]).toEqual(["NaN", "+Inf", "-Inf", "0.25", "3"]);
    const text = renderMetrics([{ name: "zectre_proxy_requests_total", labels: { org: "o", app: 'we"ird\\app', code: "200" }, value: 1 }], METRICS);
    expect(text).toContain('zectre_proxy_requests_total{org="o",app="we\\"ird\\\\app",code="200"} 1');
  });

  it("leaves out samples of families it was not given", () => {
    const text = renderMetrics([{ name: "zectre_orgs", labels: {}, value: 2 }], METRICS);
    expect(text).not.toContain("zectre_orgs");
    expect(renderMetrics([{ name: "zectre_orgs", labels: {}, value: 2 }], INSTALLATION_METRICS)).toContain("\nzectre_orgs 2\n");
  });

  it("passes promtool check metrics with every family, a histogram and awkward label values", () => {
    const metrics = new MetricsAccumulator();
    for (const seconds of [0.001, 0.2, 7, 100]) metrics.observe("zectre_proxy_request_duration_seconds", { app: "web" }, seconds);
    metrics.observe("zectre_job_duration_seconds", {}, 0.3);
    metrics.count("zectre_proxy_requests_total", { app: "web", code: "200" }, 3);
    metrics.count("zectre_tunnel_bytes_total", { direction: "to_agent" }, 1234);
    const deltas = metrics.drain();
    const samples: Sample[] = [...deltas.counters, ...deltas.histograms].map((s) => ({ ...s, labels: { org: 'a "quoted"\norg', ...s.labels } }));
    samples.push({ name: "zectre_nodes", labels: { org: "b", presence: "offline" }, value: 0 }, { name: "zectre_orgs", labels: {}, value: 2 });
    const check = promtoolCheck(renderMetrics(samples, { ...METRICS, ...INSTALLATION_METRICS }));
    expect(check.output).toBe("");
    expect(check.code).toBe(0);
  });

  it("promtool itself refuses a malformed exposition, so the check above can fail", () => {
    const check = promtoolCheck("# TYPE zectre_x counter\nzectre_x{org=\"a} 1\n");
    expect(check.code).not.toBe(0);
  });
});

describe("MetricsAccumulator", () => {
  it("adds counters per label set, whatever the label order, and skips zero increments", () => {
    const metrics = new MetricsAccumulator();
    metrics.count("zectre_proxy_requests_total", { app: "web", code: "200" });
    metrics.count("zectre_proxy_requests_total", { code: "200", app: "web" }, 2);
    metrics.count("zectre_proxy_requests_total", { app: "web", code: "502" });
    metrics.count("zectre_tunnel_bytes_total", { direction: "to_agent" }, 0);
    const deltas = metrics.drain();
    expect(deltas.counters).toEqual([
      { name: "zectre_proxy_requests_total", labels: { app: "web", code: "200" }, value: 3 },
      { name: "zectre_proxy_requests_total", labels: { app: "web", code: "502" }, value: 1 },
    ]);
    expect(metrics.empty).toBe(true);
    expect(metrics.drain()).toEqual({ counters: [], histograms: [] });
  });

  it("puts observations in the first bucket whose bound they do not exceed", () => {
    const bounds = METRICS.zectre_proxy_request_duration_seconds.buckets;
    expect(bucketIndex(bounds, 0)).toBe(0);
    expect(bucketIndex(bounds, 0.005)).toBe(0);
    expect(bucketIndex(bounds, 0.0051)).toBe(1);
    expect(bucketIndex(bounds, 31)).toBe(bounds.length);
    const metrics = new MetricsAccumulator();
    metrics.observe("zectre_proxy_request_duration_seconds", { app: "a" }, 0.005);
    metrics.observe("zectre_proxy_request_duration_seconds", { app: "a" }, 60);
    const [histogram] = metrics.drain().histograms;
    expect(histogram?.buckets[0]).toBe(1);
    expect(histogram?.buckets[bounds.length]).toBe(1);
    expect(histogram?.count).toBe(2);
    expect(histogram?.sum).toBeCloseTo(60.005);
  });
});

describe("deltaProblem", () => {
  it("accepts a well-formed counter and histogram delta", () => {
    expect(deltaProblem({ name: "zectre_webhook_deliveries_total", labels: { result: "delivered" }, value: 2 })).toBeNull();
    const width = METRICS.zectre_job_duration_seconds.buckets.length + 1;
    expect(deltaProblem({ name: "zectre_job_duration_seconds", labels: {}, buckets: new Array<number>(width).fill(0), sum: 0, count: 0 })).toBeNull();
  });

  it("refuses unknown names, wrong labels, gauges, shrinking counters and misshapen histograms", () => {
    expect(deltaProblem({ name: "zectre_nope_total", labels: {}, value: 1 })).toMatch(/unknown metric/);
    expect(deltaProblem({ name: "zectre_webhook_deliveries_total", labels: {}, value: 1 })).toMatch(/takes labels \[result\]/);
    expect(deltaProblem({ name: "zectre_webhook_deliveries_total", labels: { result: "x", org: "other" }, value: 1 })).toMatch(/takes labels/);
    expect(deltaProblem({ name: "zectre_nodes", labels: { presence: "online" }, value: 1 })).toMatch(/only counters/);
    expect(deltaProblem({ name: "zectre_agent_connections_total", labels: {}, value: -1 })).toMatch(/only grows/);
    expect(deltaProblem({ name: "zectre_agent_connections_total", labels: {}, value: Number.NaN })).toMatch(/only grows/);
    expect(deltaProblem({ name: "zectre_tunnel_bytes_total", labels: { direction: "x".repeat(200) }, value: 1 })).toMatch(/at most 128/);
    expect(deltaProblem({ name: "zectre_job_duration_seconds", labels: {}, buckets: [1], sum: 1, count: 1 })).toMatch(/buckets, got 1/);
    expect(deltaProblem({ name: "zectre_agent_connections_total", labels: {}, buckets: [1], sum: 1, count: 1 })).toMatch(/not a histogram/);
  });
});
