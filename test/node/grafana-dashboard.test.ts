import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { INSTALLATION_METRICS, METRICS, type MetricDefinition } from "../../protocol/metrics.ts";

/** The shipped Grafana dashboard may only query series the exporter emits, and shows every metric it emits. */

const DASHBOARD = join(import.meta.dirname, "../../ops/grafana/zectre-dashboard.json");

interface Panel {
  type: string;
  title: string;
  datasource?: { uid?: string };
  targets?: Array<{ expr: string; datasource?: { uid?: string } }>;
}

interface Dashboard {
  __inputs: Array<{ name: string; type: string; pluginId: string }>;
  panels: Panel[];
  templating: { list: Array<{ query: { query: string } | string; datasource?: { uid?: string } }> };
}

const FAMILIES: Record<string, MetricDefinition> = { ...METRICS, ...INSTALLATION_METRICS };

/** Every series name the exporter writes: the families, and for histograms their _bucket, _sum and _count. */
function emittedSeriesNames(): Set<string> {
  const names = new Set<string>();
  for (const [name, definition] of Object.entries(FAMILIES)) {
    if (definition.type === "histogram") for (const suffix of ["_bucket", "_sum", "_count"]) names.add(`${name}${suffix}`);
    else names.add(name);
  }
  return names;
}

function familyOf(series: string): string {
  return series.replace(/_(bucket|sum|count)$/, (suffix) => (FAMILIES[series] ? suffix : ""));
}

const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8")) as Dashboard;
const queries = [
  ...dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) => target.expr)),
  ...dashboard.templating.list.map((variable) => (typeof variable.query === "string" ? variable.query : variable.query.query)),
];
const used = new Set(queries.flatMap((query) => query.match(/\bzectre_[a-z0-9_]+/g) ?? []));

describe("Grafana dashboard", () => {
  it("uses a DS_PROMETHEUS datasource input everywhere", () => {
    expect(dashboard.__inputs).toEqual([expect.objectContaining({ name: "DS_PROMETHEUS", type: "datasource", pluginId: "prometheus" })]);
    for (const panel of dashboard.panels.filter((p) => p.type !== "row")) {
      expect(panel.datasource?.uid, panel.title).toBe("${DS_PROMETHEUS}");
      for (const target of panel.targets ?? []) expect(target.datasource?.uid, panel.title).toBe("${DS_PROMETHEUS}");
    }
  });

  it("queries only series the exporter emits", () => {
    expect(used.size).toBeGreaterThan(0);
    const emitted = emittedSeriesNames();
    expect([...used].filter((name) => !emitted.has(name))).toEqual([]);
  });

  it("has a panel for every metric the exporter emits", () => {
    const families = new Set([...used].map(familyOf));
    expect(Object.keys(FAMILIES).filter((name) => !families.has(name))).toEqual([]);
  });
});
