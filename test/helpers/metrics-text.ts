/** A reader for the Prometheus text the exporter writes, enough for tests: series lines to values. */

export interface ParsedSeries {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const SERIES_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL_PAIR = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parseMetricsText(text: string): ParsedSeries[] {
  const series: ParsedSeries[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = SERIES_LINE.exec(line);
    if (!match) throw new Error(`not a series line: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? "").matchAll(LABEL_PAIR)) {
      labels[pair[1] as string] = (pair[2] as string).replace(/\\n/g, "\n").replace(/\\"/g, '"').replace(/\\\\/g, "\\");
    }
    const raw = match[3] as string;
    series.push({ name: match[1] as string, labels, value: raw === "+Inf" ? Infinity : Number(raw) });
  }
  return series;
}

/** The value of the one series with that name whose labels include `labels`; undefined when there is none. */
export function valueOf(series: readonly ParsedSeries[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = series.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length > 1) throw new Error(`${found.length} series match ${name} ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

/** The sum over every series with that name whose labels include `labels`. */
export function sumOf(series: readonly ParsedSeries[], name: string, labels: Record<string, string> = {}): number {
  return series.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((total, s) => total + s.value, 0);
}
