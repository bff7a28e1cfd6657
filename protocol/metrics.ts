/**
 * The Prometheus metrics Zectre exports at `GET /metrics`: one catalog that the org
 * object's store, the producers (job, node, webhook objects, the proxy, the artifact
 * route), the text renderer and the Grafana dashboard's test all read, so a name cannot
 * drift between them. Every series also carries an `org` label, added by the org object.
 */

export type MetricType = "counter" | "gauge" | "histogram";

export interface MetricDefinition {
  type: MetricType;
  help: string;
  /** Label names besides `org`, in the order they are rendered. */
  labels: readonly string[];
  /** Histograms only: upper bounds of the buckets, ascending (`+Inf` is implied). */
  buckets?: readonly number[];
}

/** Seconds from a job's creation to its final state: a ping takes milliseconds, a state.apply minutes. */
const JOB_DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600] as const;
/** Seconds until the proxy had the response headers (the body may stream on for longer). */
const PROXY_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] as const;

export const METRICS = {
  zectre_nodes: {
    type: "gauge",
    help: "Enrolled nodes (approved or active) by presence, as the org's node directory has them at scrape time.",
    labels: ["presence"],
  },
  zectre_agents_connected: {
    type: "gauge",
    help: "Nodes whose agent holds its WebSocket now, by agent version.",
    labels: ["version"],
  },
  zectre_agent_connections_total: {
    type: "counter",
    help: "Agent WebSocket connections accepted (reconnects included).",
    labels: [],
  },
  zectre_agent_disconnections_total: {
    type: "counter",
    help: "Times a node went offline (socket closed or 3 missed heartbeats).",
    labels: [],
  },
  zectre_jobs_active: {
    type: "gauge",
    help: "Jobs not yet in a final state.",
    labels: [],
  },
  zectre_jobs_finished_total: {
    type: "counter",
    help: "Jobs that reached a final state, by that state.",
    labels: ["status"],
  },
  zectre_job_duration_seconds: {
    type: "histogram",
    help: "Seconds from a dispatched job's creation to its final state (schedule reports from agents are not counted).",
    labels: [],
    buckets: JOB_DURATION_BUCKETS,
  },
  zectre_job_returns_total: {
    type: "counter",
    help: "Real returns from agents held by finished jobs (counted when the job finishes), by result.",
    labels: ["result"],
  },
  zectre_proxy_requests_total: {
    type: "counter",
    help: "Requests the edge proxy answered for an app of the org, by app and HTTP status code.",
    labels: ["app", "code"],
  },
  zectre_proxy_request_duration_seconds: {
    type: "histogram",
    help: "Seconds until the edge proxy had the response headers, by app.",
    labels: ["app"],
    buckets: PROXY_DURATION_BUCKETS,
  },
  zectre_tunnel_bytes_total: {
    type: "counter",
    help: "Body and WebSocket message bytes carried through agents' tunnels, by direction.",
    labels: ["direction"],
  },
  zectre_tunnel_streams_total: {
    type: "counter",
    help: "Tunnel streams finished (one per proxied request or WebSocket), by kind.",
    labels: ["kind"],
  },
  zectre_artifact_stored_bytes_total: {
    type: "counter",
    help: "Bytes of artifact layers stored (new layers only; a layer already stored is not counted again), by layer.",
    labels: ["layer"],
  },
  zectre_artifacts_stored_total: {
    type: "counter",
    help: "Artifact layers stored, by layer.",
    labels: ["layer"],
  },
  zectre_webhook_deliveries_total: {
    type: "counter",
    help: "Webhook delivery attempts by result: delivered, retrying (failed, another attempt follows) or failed (the last attempt failed).",
    labels: ["result"],
  },
} as const satisfies Record<string, MetricDefinition>;

export type MetricName = keyof typeof METRICS;
export type CounterName = { [K in MetricName]: (typeof METRICS)[K]["type"] extends "counter" ? K : never }[MetricName];
export type HistogramName = { [K in MetricName]: (typeof METRICS)[K]["type"] extends "histogram" ? K : never }[MetricName];

/** Only in the installation-wide scrape (operator secret). */
export const INSTALLATION_METRICS = {
  zectre_orgs: {
    type: "gauge",
    help: "Orgs listed in the registry.",
    labels: [],
  },
  zectre_org_scrape_failures: {
    type: "gauge",
    help: "Orgs whose metrics could not be read during this scrape.",
    labels: [],
  },
} as const satisfies Record<string, MetricDefinition>;

export type InstallationMetricName = keyof typeof INSTALLATION_METRICS;

export type Labels = Record<string, string>;

/** One series' value: counters and gauges have `value`, histograms the rest. */
export interface ScalarSample {
  name: string;
  labels: Labels;
  value: number;
}

export interface HistogramSample {
  name: string;
  labels: Labels;
  /** Observations per bucket, not cumulative; one more entry than the bounds (the `+Inf` bucket). */
  buckets: number[];
  sum: number;
  count: number;
}

export type Sample = ScalarSample | HistogramSample;

export function isHistogramSample(sample: Sample): sample is HistogramSample {
  return "buckets" in sample;
}

/** What producers send to the org object in one `recordMetrics` call. */
export interface MetricDeltas {
  counters: ScalarSample[];
  histograms: HistogramSample[];
}

export function definitionOf(name: string): MetricDefinition | null {
  return (METRICS as Record<string, MetricDefinition>)[name] ?? (INSTALLATION_METRICS as Record<string, MetricDefinition>)[name] ?? null;
}

/** The bucket an observation falls in: the first bound it does not exceed, else the `+Inf` bucket. */
export function bucketIndex(bounds: readonly number[], value: number): number {
  const index = bounds.findIndex((bound) => value <= bound);
  return index === -1 ? bounds.length : index;
}

/** Why a delta cannot be applied (unknown metric, wrong labels, bad numbers), or null when it can. */
export function deltaProblem(sample: Sample): string | null {
  const definition = (METRICS as Record<string, MetricDefinition>)[sample.name];
  if (!definition) return `unknown metric ${sample.name}`;
  const keys = Object.keys(sample.labels).sort();
  const expected = [...definition.labels].sort();
  if (keys.length !== expected.length || keys.some((k, i) => k !== expected[i])) {
    return `${sample.name} takes labels [${expected.join(", ")}], got [${keys.join(", ")}]`;
  }
  if (Object.values(sample.labels).some((v) => typeof v !== "string" || v.length > MAX_LABEL_VALUE_LENGTH)) {
    return `${sample.name}: label values must be strings of at most ${MAX_LABEL_VALUE_LENGTH} characters`;
  }
  if (isHistogramSample(sample)) {
    if (definition.type !== "histogram") return `${sample.name} is a ${definition.type}, not a histogram`;
    const width = (definition.buckets?.length ?? 0) + 1;
    if (sample.buckets.length !== width) return `${sample.name} has ${width} buckets, got ${sample.buckets.length}`;
    const counts = [...sample.buckets, sample.count];
    if (counts.some((n) => !Number.isSafeInteger(n) || n < 0)) return `${sample.name}: bucket counts must be non-negative integers`;
    if (!Number.isFinite(sample.sum) || sample.sum < 0) return `${sample.name}: the sum must be a non-negative number`;
    return null;
  }
  if (definition.type !== "counter") return `${sample.name} is a ${definition.type}; only counters take deltas`;
  if (!Number.isFinite(sample.value) || sample.value < 0) return `${sample.name}: a counter only grows`;
  return null;
}

export const MAX_LABEL_VALUE_LENGTH = 128;

/** One canonical text per label set (sorted keys), so a series has one key whatever order its labels came in. */
export function labelsKey(labels: Labels): string {
  return JSON.stringify(Object.fromEntries(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));
}

/**
 * Adds up counter increments and histogram observations in memory, so a producer on a
 * hot path (the proxy, a node's tunnel) sends one delta per flush instead of one per event.
 */
export class MetricsAccumulator {
  readonly #counters = new Map<string, ScalarSample>();
  readonly #histograms = new Map<string, HistogramSample>();

  get empty(): boolean {
    return this.#counters.size === 0 && this.#histograms.size === 0;
  }

  count(name: CounterName, labels: Labels, value = 1): void {
    if (value === 0) return;
    const key = `${name}${labelsKey(labels)}`;
    const current = this.#counters.get(key);
    if (current) current.value += value;
    else this.#counters.set(key, { name, labels: { ...labels }, value });
  }

  observe(name: HistogramName, labels: Labels, value: number): void {
    const bounds = METRICS[name].buckets;
    const key = `${name}${labelsKey(labels)}`;
    let current = this.#histograms.get(key);
    if (!current) {
      current = { name, labels: { ...labels }, buckets: new Array<number>(bounds.length + 1).fill(0), sum: 0, count: 0 };
      this.#histograms.set(key, current);
    }
    const index = bucketIndex(bounds, value);
    current.buckets[index] = (current.buckets[index] ?? 0) + 1;
    current.sum += value;
    current.count += 1;
  }

  /** Everything added so far, and a fresh start. */
  drain(): MetricDeltas {
    const deltas = { counters: [...this.#counters.values()], histograms: [...this.#histograms.values()] };
    this.#counters.clear();
    this.#histograms.clear();
    return deltas;
  }
}
