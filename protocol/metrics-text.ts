import { isHistogramSample, type Labels, type MetricDefinition, type Sample } from "./metrics.ts";

/**
 * The Prometheus text exposition format (version 0.0.4): for each family in catalog order,
 * `# HELP` and `# TYPE`, then all its series together (the format wants one group per family).
 * Histograms become cumulative `_bucket{le=...}` series ending in `+Inf`, then `_sum` and `_count`.
 * Pure: the API Worker hands it what the org objects returned.
 */

export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export function renderMetrics(samples: readonly Sample[], families: Readonly<Record<string, MetricDefinition>>): string {
  const byName = new Map<string, Sample[]>();
  for (const sample of samples) byName.set(sample.name, [...(byName.get(sample.name) ?? []), sample]);
  const lines: string[] = [];
  for (const [name, definition] of Object.entries(families)) {
    lines.push(`# HELP ${name} ${escapeHelp(definition.help)}`, `# TYPE ${name} ${definition.type}`);
    const series = [...(byName.get(name) ?? [])].sort((a, b) => compare(labelText(a.labels, definition), labelText(b.labels, definition)));
    for (const sample of series) lines.push(...renderSample(name, sample, definition));
  }
  return `${lines.join("\n")}\n`;
}

function renderSample(name: string, sample: Sample, definition: MetricDefinition): string[] {
  if (!isHistogramSample(sample)) return [`${name}${braces(labelText(sample.labels, definition))} ${formatNumber(sample.value)}`];
  const bounds = definition.buckets ?? [];
  const lines: string[] = [];
  let cumulative = 0;
  bounds.forEach((bound, i) => {
    cumulative += sample.buckets[i] ?? 0;
    lines.push(`${name}_bucket${braces(labelText({ ...sample.labels, le: formatNumber(bound) }, definition))} ${cumulative}`);
  });
  // `+Inf` is the count itself, so the two always agree even if a bucket array came short.
  lines.push(`${name}_bucket${braces(labelText({ ...sample.labels, le: "+Inf" }, definition))} ${sample.count}`);
  const plain = braces(labelText(sample.labels, definition));
  lines.push(`${name}_sum${plain} ${formatNumber(sample.sum)}`, `${name}_count${plain} ${sample.count}`);
  return lines;
}

/** `org` first, then the definition's labels in order, then anything else (`le` last). */
function labelText(labels: Labels, definition: MetricDefinition): string {
  const order = ["org", ...definition.labels];
  const rank = (key: string) => (key === "le" ? Number.MAX_SAFE_INTEGER : order.includes(key) ? order.indexOf(key) : order.length);
  const keys = Object.keys(labels).sort((a, b) => rank(a) - rank(b) || compare(a, b));
  return keys.map((key) => `${key}="${escapeLabelValue(labels[key] as string)}"`).join(",");
}

function braces(text: string): string {
  return text === "" ? "" : `{${text}}`;
}

export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

export function formatNumber(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
