import { deltaProblem, type HistogramSample, type Labels, labelsKey, type MetricDeltas, type Sample, type ScalarSample } from "../../protocol/metrics.ts";
import { log } from "../../workers/lib/log.ts";

/**
 * The org's counters and histograms, one row per series, in the org object's SQLite:
 * a delta is written when it is recorded, so values survive restarts and evictions.
 * `value` is a counter's value or a histogram's sum; `buckets` (JSON, not cumulative)
 * and `count` are for histograms only. Created only if missing, so the migration is harmless should it run twice.
 */
export const METRICS_MIGRATION = `CREATE TABLE IF NOT EXISTS metrics (
     name TEXT NOT NULL,
     labels TEXT NOT NULL,
     value REAL NOT NULL DEFAULT 0,
     count INTEGER NOT NULL DEFAULT 0,
     buckets TEXT,
     PRIMARY KEY (name, labels)
   );`;

/** Series per metric name an org may have; beyond it new label sets are dropped (a runaway label must not grow the object). */
export const MAX_SERIES_PER_METRIC = 500;

interface MetricRow extends Record<string, SqlStorageValue> {
  name: string;
  labels: string;
  value: number;
  count: number;
  buckets: string | null;
}

export class MetricsStore {
  private readonly sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.sql = sql;
  }

  /** Applies every valid delta; invalid ones are logged and skipped, so one bad entry does not lose the rest. */
  apply(deltas: MetricDeltas): { applied: number; rejected: number } {
    let applied = 0;
    let rejected = 0;
    for (const sample of [...deltas.counters, ...deltas.histograms]) {
      const problem = deltaProblem(sample) ?? this.capacityProblem(sample);
      if (problem) {
        rejected++;
        log("warn", "metrics", "dropped a metric delta", { problem });
        continue;
      }
      if ("buckets" in sample) this.addHistogram(sample);
      else this.addCounter(sample);
      applied++;
    }
    return { applied, rejected };
  }

  samples(): Sample[] {
    return this.sql.exec<MetricRow>("SELECT * FROM metrics ORDER BY name, labels").toArray().map(toSample);
  }

  private addCounter(sample: ScalarSample): void {
    this.sql.exec(
      `INSERT INTO metrics (name, labels, value) VALUES (?, ?, ?)
       ON CONFLICT (name, labels) DO UPDATE SET value = value + excluded.value`,
      sample.name,
      labelsKey(sample.labels),
      sample.value,
    );
  }

  /** Read, add, write: SQL calls are synchronous, so nothing interleaves between them. */
  private addHistogram(sample: HistogramSample): void {
    const key = labelsKey(sample.labels);
    const row = this.sql.exec<MetricRow>("SELECT * FROM metrics WHERE name = ? AND labels = ?", sample.name, key).toArray()[0];
    const before = row?.buckets ? (JSON.parse(row.buckets) as number[]) : [];
    const buckets = sample.buckets.map((n, i) => n + (before[i] ?? 0));
    this.sql.exec(
      `INSERT INTO metrics (name, labels, value, count, buckets) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (name, labels) DO UPDATE SET value = value + excluded.value, count = count + excluded.count, buckets = excluded.buckets`,
      sample.name,
      key,
      sample.sum,
      sample.count,
      JSON.stringify(buckets),
    );
  }

  private capacityProblem(sample: Sample): string | null {
    const key = labelsKey(sample.labels);
    if (this.sql.exec("SELECT 1 FROM metrics WHERE name = ? AND labels = ?", sample.name, key).toArray().length > 0) return null;
    const series = this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM metrics WHERE name = ?", sample.name).one().n;
    return series >= MAX_SERIES_PER_METRIC ? `${sample.name} already has ${MAX_SERIES_PER_METRIC} series; new label set ${key} dropped` : null;
  }
}

function toSample(row: MetricRow): Sample {
  const labels = JSON.parse(row.labels) as Labels;
  if (row.buckets === null) return { name: row.name, labels, value: row.value };
  return { name: row.name, labels, buckets: JSON.parse(row.buckets) as number[], sum: row.value, count: row.count };
}
