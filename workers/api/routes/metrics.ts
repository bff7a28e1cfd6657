import { Hono } from "hono";
import { orgStub, registryStub } from "../../../durable-objects/env.ts";
import { INSTALLATION_METRICS, METRICS, type Sample } from "../../../protocol/metrics.ts";
import { METRICS_CONTENT_TYPE, renderMetrics } from "../../../protocol/metrics-text.ts";
import { log } from "../../lib/log.ts";
import { authenticate, isOperator, requireScope } from "../auth.ts";
import type { ApiContext, ApiEnv } from "../env.ts";
import { ApiError } from "../errors.ts";

/** The operator's scrape reads this many org objects at once. */
const ORG_BATCH = 16;

function metricsResponse(text: string): Response {
  return new Response(text, { headers: { "content-type": METRICS_CONTENT_TYPE, "cache-control": "no-store" } });
}

/** Every org in the registry, read from its own object; an org that fails is counted, not fatal. */
async function installationSamples(env: ApiEnv): Promise<Sample[]> {
  const orgs = await registryStub(env).orgs();
  const samples: Sample[] = [];
  let failures = 0;
  for (let i = 0; i < orgs.length; i += ORG_BATCH) {
    const batch = orgs.slice(i, i + ORG_BATCH);
    const snapshots = await Promise.allSettled(batch.map((org) => orgStub(env, org).metricsSnapshot()));
    snapshots.forEach((result, k) => {
      if (result.status === "fulfilled") samples.push(...(result.value?.samples ?? []));
      else {
        failures++;
        log("warn", "metrics", "could not read an org's metrics", { org: batch[k] ?? "", error: String(result.reason) });
      }
    });
  }
  samples.push({ name: "zectre_orgs", labels: {}, value: orgs.length }, { name: "zectre_org_scrape_failures", labels: {}, value: failures });
  return samples;
}

/**
 * `GET /metrics`, Prometheus text: with the operator secret as the bearer, every org (each
 * series labelled with its org); with an API token of `read` scope or more, the token's org.
 */
export const metricsRoutes = new Hono<ApiContext>().get(
  "/metrics",
  async (c, next) => {
    if (await isOperator(c.env, c.req.header("authorization"))) {
      return metricsResponse(renderMetrics(await installationSamples(c.env), { ...METRICS, ...INSTALLATION_METRICS }));
    }
    await next();
  },
  authenticate(),
  requireScope("read"),
  async (c) => {
    const snapshot = await orgStub(c.env, c.get("identity").org).metricsSnapshot();
    if (!snapshot) throw new ApiError("not_found", "org not found");
    return metricsResponse(renderMetrics(snapshot.samples, METRICS));
  },
);
