import { MetricsBatcher } from "../../workers/lib/metrics-batcher.ts";
import { type ObjectsEnv, orgStub } from "../env.ts";
import type { StreamBytes } from "./tunnel-common.ts";
import type { StreamKind } from "./tunnel.ts";

/**
 * The node object's tunnel metrics: each finished stream's bytes are added in memory and reach
 * the org object in at most one `recordMetrics` call a second (MetricsBatcher), never one per
 * chunk or per request. Counts not yet flushed are lost if the object is evicted first.
 */
export function tunnelMetrics(ctx: DurableObjectState, env: ObjectsEnv, orgOf: () => string | null): (kind: StreamKind, bytes: StreamBytes) => void {
  const batcher = new MetricsBatcher((org, deltas) => orgStub(env, org).recordMetrics(deltas));
  return (kind, bytes) => {
    const org = orgOf();
    if (org === null) return;
    batcher.record(org, (promise) => ctx.waitUntil(promise), (metrics) => {
      metrics.count("zectre_tunnel_bytes_total", { direction: "to_agent" }, bytes.toAgent);
      metrics.count("zectre_tunnel_bytes_total", { direction: "from_agent" }, bytes.fromAgent);
      metrics.count("zectre_tunnel_streams_total", { kind });
    });
  };
}
