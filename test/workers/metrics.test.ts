import { createExecutionContext, evictDurableObject, runDurableObjectAlarm, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { MAX_SERIES_PER_METRIC } from "../../durable-objects/org/metrics-store.ts";
import type { DeploymentRecord } from "../../protocol/deployments.ts";
import type { JobSummary } from "../../protocol/jobs.ts";
import { METRICS, MetricsAccumulator, type Sample } from "../../protocol/metrics.ts";
import { FRAME } from "../../protocol/tunnel.ts";
import proxy, { type ProxyEnv } from "../../workers/proxy/index.ts";
import { type ParsedSeries, parseMetricsText, sumOf, valueOf } from "../helpers/metrics-text.ts";
import { onlineAgent } from "./agent-helpers.ts";
import { call, createOrg, createToken, OPERATOR } from "./helpers.ts";
import { answer, openOf, type TunnelAgent, tunnelAgent } from "./tunnel-agent.ts";

/** `GET /metrics`, the org object's metric store, and the producers that feed it. */

const orgObject = (org: string) => env.ORG.get(env.ORG.idFromName(org));

async function scrape(token?: string): Promise<{ status: number; type: string | null; text: string }> {
  const headers: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` };
  const res = await exports.default.fetch(new Request("http://api.test/metrics", { headers }));
  return { status: res.status, type: res.headers.get("content-type"), text: await res.text() };
}

async function series(token: string): Promise<ParsedSeries[]> {
  const res = await scrape(token);
  expect(res.status).toBe(200);
  return parseMetricsText(res.text);
}

async function snapshot(org: string): Promise<Sample[]> {
  const taken = await orgObject(org).metricsSnapshot();
  if (!taken) throw new Error(`no snapshot for ${org}`);
  return taken.samples;
}

function counter(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return found && "value" in found ? found.value : undefined;
}

/** Polls until `done` holds: node objects flush their tunnel counts at most once a second. */
async function eventually<T>(read: () => Promise<T>, done: (value: T) => boolean, what: string): Promise<T> {
  for (let i = 0; i < 100; i++) {
    const value = await read();
    if (done(value)) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Created 0.7 s before it was last updated, recently (the index drops finished jobs past retention). */
function jobSummary(jid: string, status: JobSummary["status"], overrides: Partial<JobSummary> = {}): JobSummary {
  const now = Date.now();
  return {
    jid, function: "test.ping", target: "*", status, user: "token:t1(ci)",
    createdAt: new Date(now - 700).toISOString(), updatedAt: new Date(now).toISOString(),
    counts: { targets: 3, returned: 3, succeeded: 2, failed: 1, unreachable: 0 },
    ...overrides,
  };
}

describe("org metric store", () => {
  it("adds counter and histogram deltas per label set and labels every series with the org", async () => {
    const { name } = await createOrg("mx");
    const metrics = new MetricsAccumulator();
    metrics.count("zectre_proxy_requests_total", { app: "web", code: "200" }, 4);
    metrics.observe("zectre_proxy_request_duration_seconds", { app: "web" }, 0.02);
    await orgObject(name).recordMetrics(metrics.drain());
    metrics.count("zectre_proxy_requests_total", { code: "200", app: "web" }, 1);
    metrics.observe("zectre_proxy_request_duration_seconds", { app: "web" }, 3);
    expect(await orgObject(name).recordMetrics(metrics.drain())).toEqual({ applied: 2, rejected: 0 });
    const samples = await snapshot(name);
    expect(counter(samples, "zectre_proxy_requests_total", { app: "web", code: "200" })).toBe(5);
    const histogram = samples.find((s) => s.name === "zectre_proxy_request_duration_seconds");
    const bounds = METRICS.zectre_proxy_request_duration_seconds.buckets;
    expect(histogram).toMatchObject({ labels: { org: name, app: "web" }, count: 2 });
    if (!histogram || !("buckets" in histogram)) throw new Error("no histogram");
    expect(histogram.sum).toBeCloseTo(3.02);
    expect(histogram.buckets[2]).toBe(1); // 0.02 ≤ 0.025
    expect(histogram.buckets[bounds.indexOf(5)]).toBe(1); // 3 ≤ 5
    expect(samples.every((s) => s.labels.org === name)).toBe(true);
  });

  it("rejects bad deltas without losing the good ones in the same call", async () => {
    const { name } = await createOrg("mx");
    const result = await orgObject(name).recordMetrics({
      counters: [
        { name: "zectre_webhook_deliveries_total", labels: { result: "delivered" }, value: 1 },
        { name: "zectre_made_up_total", labels: {}, value: 1 },
        { name: "zectre_nodes", labels: { presence: "online" }, value: 9 },
        { name: "zectre_agent_connections_total", labels: {}, value: -5 },
      ],
      histograms: [{ name: "zectre_job_duration_seconds", labels: {}, buckets: [1, 2], sum: 1, count: 3 }],
    });
    expect(result).toEqual({ applied: 1, rejected: 4 });
    const samples = await snapshot(name);
    expect(counter(samples, "zectre_webhook_deliveries_total", { result: "delivered" })).toBe(1);
    expect(samples.some((s) => s.name === "zectre_made_up_total" || s.name === "zectre_job_duration_seconds")).toBe(false);
    expect(counter(samples, "zectre_nodes", { presence: "online" })).toBe(0);
    expect(counter(samples, "zectre_agent_connections_total")).toBe(0);
  });

  it("caps the series of one metric, so a runaway label cannot grow the org object", async () => {
    const { name } = await createOrg("mx");
    const counters = Array.from({ length: MAX_SERIES_PER_METRIC + 5 }, (_, i) => ({ name: "zectre_proxy_requests_total", labels: { app: `a${i}`, code: "200" }, value: 1 }));
    expect(await orgObject(name).recordMetrics({ counters, histograms: [] })).toEqual({ applied: MAX_SERIES_PER_METRIC, rejected: 5 });
    // An existing series still counts.
    await orgObject(name).recordMetrics({ counters: [{ name: "zectre_proxy_requests_total", labels: { app: "a0", code: "200" }, value: 1 }], histograms: [] });
    expect(counter(await snapshot(name), "zectre_proxy_requests_total", { app: "a0" })).toBe(2);
  });

  it("keeps counters and histograms when the object is evicted and restarted", async () => {
    const { name } = await createOrg("mx");
    const metrics = new MetricsAccumulator();
    metrics.count("zectre_tunnel_bytes_total", { direction: "from_agent" }, 12345);
    metrics.observe("zectre_job_duration_seconds", {}, 1.5);
    await orgObject(name).recordMetrics(metrics.drain());
    await orgObject(name).indexJob(jobSummary("00000000000000000000001", "complete"));
    await evictDurableObject(orgObject(name));
    // A fresh stub after the eviction reaches a new instance, which reads everything back from SQLite.
    const samples = await snapshot(name);
    expect(counter(samples, "zectre_tunnel_bytes_total", { direction: "from_agent" })).toBe(12345);
    expect(counter(samples, "zectre_jobs_finished_total", { status: "complete" })).toBe(1);
    expect(samples.find((s) => s.name === "zectre_job_duration_seconds")).toMatchObject({ count: 2 });
    // And the restarted object keeps adding to them.
    await orgObject(name).recordMetrics({ counters: [{ name: "zectre_tunnel_bytes_total", labels: { direction: "from_agent" }, value: 5 }], histograms: [] });
    expect(counter(await snapshot(name), "zectre_tunnel_bytes_total", { direction: "from_agent" })).toBe(12350);
  });

  it("an org never created has no snapshot", async () => {
    expect(await orgObject(`never-${Date.now()}`).metricsSnapshot()).toBeNull();
  });
});

describe("job metrics from the job index", () => {
  it("counts a job once, when its index update moves it into a final state", async () => {
    const { name } = await createOrg("mx");
    const org = orgObject(name);
    const jid = "00000000000000000000002";
    await org.indexJob(jobSummary(jid, "claimed", { counts: { targets: 3, returned: 0, succeeded: 0, failed: 0, unreachable: 0 } }));
    await org.indexJob(jobSummary(jid, "running", { counts: { targets: 3, returned: 1, succeeded: 1, failed: 0, unreachable: 0 } }));
    expect(counter(await snapshot(name), "zectre_jobs_active")).toBe(1);
    await org.indexJob(jobSummary(jid, "failed"));
    // A repeated final update (a retried RPC) changes nothing, and neither does a late active one that crossed it.
    await org.indexJob(jobSummary(jid, "failed"));
    await org.indexJob(jobSummary(jid, "running", { counts: { targets: 3, returned: 1, succeeded: 1, failed: 0, unreachable: 0 } }));
    expect((await org.listJobs(10)).find((j) => j.jid === jid)?.status).toBe("failed");
    expect(await org.activeJobs()).toEqual([]);
    const samples = await snapshot(name);
    expect(counter(samples, "zectre_jobs_active")).toBe(0);
    expect(counter(samples, "zectre_jobs_finished_total", { status: "failed" })).toBe(1);
    expect(counter(samples, "zectre_job_returns_total", { result: "succeeded" })).toBe(2);
    expect(counter(samples, "zectre_job_returns_total", { result: "failed" })).toBe(1);
    const duration = samples.find((s) => s.name === "zectre_job_duration_seconds");
    expect(duration).toMatchObject({ count: 1 });
    expect(duration && "sum" in duration ? duration.sum : NaN).toBeCloseTo(0.7);
  });

  it("counts an agent's schedule report as finished but not in the duration histogram", async () => {
    const { name } = await createOrg("mx");
    await orgObject(name).indexJob(jobSummary("00000000000000000000003", "complete", { user: "node:web-1", counts: { targets: 1, returned: 1, succeeded: 1, failed: 0, unreachable: 0 } }));
    const samples = await snapshot(name);
    expect(counter(samples, "zectre_jobs_finished_total", { status: "complete" })).toBe(1);
    expect(samples.some((s) => s.name === "zectre_job_duration_seconds")).toBe(false);
  });

  it("a real job through the API lands in the org's metrics when its agent returns", async () => {
    const { name, adminToken } = await createOrg("mx");
    const { socket } = await onlineAgent(adminToken, name, "mj-1");
    const created = await call<{ jid: string }>("POST", "/api/v1/jobs", { token: adminToken, body: { target: "mj-1", function: "test.ping" } });
    expect(created.status).toBe(202);
    const dispatch = await eventually(async () => socket.messages.find((m) => m.type === "action"), (m) => m !== undefined, "the dispatch");
    socket.send({ type: "ack", v: 1, ids: [(dispatch as { id: string }).id] });
    socket.send({ type: "return", v: 1, id: "r-1", jid: created.body.jid, epoch: 1, return: { success: true, retcode: 0, result: true, error: null, durationMs: 1, startedAt: null } });
    const samples = await eventually(() => snapshot(name), (s) => counter(s, "zectre_jobs_finished_total", { status: "complete" }) === 1, "the job to finish");
    expect(counter(samples, "zectre_job_returns_total", { result: "succeeded" })).toBe(1);
    expect(samples.find((s) => s.name === "zectre_job_duration_seconds")).toMatchObject({ count: 1 });
  });
});

describe("node and agent metrics", () => {
  it("gauges nodes by presence and agents by version, and counts connections and disconnections", async () => {
    const { name, adminToken } = await createOrg("mx");
    const { socket } = await onlineAgent(adminToken, name, "mn-1");
    await onlineAgent(adminToken, name, "mn-2");
    let samples = await snapshot(name);
    expect(counter(samples, "zectre_nodes", { presence: "online" })).toBe(2);
    expect(counter(samples, "zectre_nodes", { presence: "offline" })).toBe(0);
    expect(samples.filter((s) => s.name === "zectre_agents_connected")).toEqual([
      { name: "zectre_agents_connected", labels: { org: name, version: "0.1.0" }, value: 2 },
    ]);
    expect(counter(samples, "zectre_agent_connections_total")).toBe(2);
    socket.ws.close(1000, "bye");
    samples = await eventually(() => snapshot(name), (s) => counter(s, "zectre_nodes", { presence: "offline" }) === 1, "mn-1 offline");
    expect(counter(samples, "zectre_agent_disconnections_total")).toBe(1);
    expect(counter(samples, "zectre_agents_connected", { version: "0.1.0" })).toBe(1);
  });
});

const proxyEnv: ProxyEnv = { ORG: env.ORG, APP: env.APP, NODE: env.NODE, HOST_ROUTES: env.HOST_ROUTES, PREVIEW_DOMAIN: "localhost", PROXY_TIMEOUT_SECONDS: "5" };

async function servedApp(org: { name: string; adminToken: string }, agent: TunnelAgent) {
  expect((await call("POST", "/api/v1/apps", { token: org.adminToken, body: { name: "web" } })).status).toBe(201);
  const bytes = new TextEncoder().encode(`code ${Math.random()}`);
  const digest = [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))].map((b) => b.toString(16).padStart(2, "0")).join("");
  await env.ARTIFACTS.put(`${org.name}/sha256/${digest}`, bytes);
  const res = await call<{ deployment: DeploymentRecord }>("POST", "/api/v1/apps/web/deployments", {
    token: org.adminToken,
    body: { artifacts: [{ digest, size: bytes.byteLength, layer: "app" }], command: "node server.js" },
  });
  if (res.status !== 201) throw new Error(JSON.stringify(res.body));
  const deployment = res.body.deployment;
  const [taskId] = await env.APP.get(env.APP.idFromName(`${org.name}/web`)).assignTasks(deployment.id, [agent.nodeId]);
  const statusId = `s-${Math.random()}`;
  agent.ws.send(JSON.stringify({ type: "task.status", v: 1, id: statusId, taskId, app: "web", deploymentId: deployment.id, state: "healthy", hostPort: 41000, restarts: 0, exitCode: null, message: null, at: new Date().toISOString() }));
  await eventually(async () => agent.messages.some((m) => m.type === "ack" && (m.ids as string[]).includes(statusId)), Boolean, "task.status acked");
  return deployment;
}

describe("proxy and tunnel metrics", () => {
  it("counts proxied requests by app and status with their latency, and the tunnel's bytes, in batches", async () => {
    const org = await createOrg("mx");
    const agent = await tunnelAgent(org.adminToken, org.name, "mp-1");
    const deployment = await servedApp(org, agent);
    const host = `${deployment.id}.web.${org.name}.localhost:47000`;
    const ctx = createExecutionContext();
    for (let i = 0; i < 3; i++) {
      const pending = proxy.fetch(new Request(`http://${host}/page`, { method: "POST", body: "ping!", headers: { host } }), proxyEnv, ctx);
      const open = await agent.frame(FRAME.open, undefined, agent.frames.length);
      expect(openOf(open).path).toBe("/page");
      await agent.frame(FRAME.end, open.streamId);
      answer(agent, open.streamId, 200, "hello, world");
      const res = await pending;
      expect(await res.text()).toBe("hello, world");
    }
    // No app at this host: not counted for any org.
    const unknown = await proxy.fetch(new Request("http://nothing.localhost:47000/", { headers: { host: "nothing.localhost:47000" } }), proxyEnv, ctx);
    expect(unknown.status).toBe(404);
    // The app exists but this deployment does not: counted as the app's 404.
    const missing = `dzzzzzzzzzzzz.web.${org.name}.localhost:47000`;
    expect((await proxy.fetch(new Request(`http://${missing}/`, { headers: { host: missing } }), proxyEnv, ctx)).status).toBe(404);
    // The proxy's batch goes out through waitUntil, at most a second after the first request.
    await waitOnExecutionContext(ctx);
    const samples = await eventually(() => snapshot(org.name), (s) => (counter(s, "zectre_tunnel_streams_total", { kind: "http" }) ?? 0) >= 3, "the node's tunnel counts");
    expect(counter(samples, "zectre_proxy_requests_total", { app: "web", code: "200" })).toBe(3);
    expect(counter(samples, "zectre_proxy_requests_total", { app: "web", code: "404" })).toBe(1);
    expect(samples.find((s) => s.name === "zectre_proxy_request_duration_seconds")).toMatchObject({ labels: { org: org.name, app: "web" }, count: 4 });
    expect(counter(samples, "zectre_tunnel_bytes_total", { direction: "to_agent" })).toBe(3 * "ping!".length);
    expect(counter(samples, "zectre_tunnel_bytes_total", { direction: "from_agent" })).toBe(3 * "hello, world".length);
  });
});

describe("artifact and webhook metrics", () => {
  it("counts a newly stored artifact layer's bytes once", async () => {
    const { name, adminToken } = await createOrg("mx");
    const bytes = new TextEncoder().encode("layer bytes ".repeat(100));
    const digest = [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))].map((b) => b.toString(16).padStart(2, "0")).join("");
    for (let i = 0; i < 2; i++) {
      const res = await exports.default.fetch(
        new Request(`http://api.test/api/v1/artifacts/${digest}?layer=app`, { method: "PUT", body: bytes, headers: { authorization: `Bearer ${adminToken}`, "content-length": String(bytes.byteLength) } }),
      );
      expect(res.status).toBe(i === 0 ? 201 : 200);
    }
    const samples = await snapshot(name);
    expect(counter(samples, "zectre_artifact_stored_bytes_total", { layer: "app" })).toBe(bytes.byteLength);
    expect(counter(samples, "zectre_artifacts_stored_total", { layer: "app" })).toBe(1);
  });

  it("counts webhook delivery attempts by result", async () => {
    // Outbound fetch from the object runs in this isolate: the receiver answers 500, then 204.
    const answers = [500, 204];
    const spy = vi.spyOn(globalThis, "fetch").mockImplementation(async () => new Response(null, { status: answers.shift() ?? 204 }));
    try {
      const { name } = await createOrg("mx");
      const hooks = env.WEBHOOKS.get(env.WEBHOOKS.idFromName(name));
      const added = await hooks.add(name, { url: "http://receiver.test/hook", events: ["job.*"], createdBy: "test" });
      if (!added.ok) throw new Error(added.message);
      expect((await hooks.enqueueTest(name, added.webhook.id)).ok).toBe(true);
      let samples = await eventually(() => snapshot(name), (s) => counter(s, "zectre_webhook_deliveries_total", { result: "retrying" }) === 1, "the failed attempt counted");
      expect(counter(samples, "zectre_webhook_deliveries_total", { result: "delivered" })).toBeUndefined();
      // The retry is due later; run it now.
      await runInDurableObject(hooks, (_instance, state) => state.storage.sql.exec("UPDATE deliveries SET next_attempt_at = 0 WHERE status = 'pending'"));
      await runDurableObjectAlarm(hooks);
      samples = await eventually(() => snapshot(name), (s) => counter(s, "zectre_webhook_deliveries_total", { result: "delivered" }) === 1, "the retry counted");
      expect(counter(samples, "zectre_webhook_deliveries_total", { result: "retrying" })).toBe(1);
      expect(counter(samples, "zectre_webhook_deliveries_total", { result: "failed" })).toBeUndefined();
    } finally {
      spy.mockRestore();
    }
  });
});

describe("GET /metrics", () => {
  it("needs a token: none or a bad one is 401 in the API's error shape", async () => {
    for (const token of [undefined, "zt_nope", "not-a-token-at-all", `${OPERATOR}x`]) {
      const res = await scrape(token);
      expect(res.status).toBe(401);
      expect(JSON.parse(res.text)).toMatchObject({ error: { code: "unauthorized" } });
    }
  });

  it("gives a read token its own org only, in Prometheus text", async () => {
    const mine = await createOrg("mx");
    const theirs = await createOrg("mx");
    await orgObject(mine.name).recordMetrics({ counters: [{ name: "zectre_webhook_deliveries_total", labels: { result: "delivered" }, value: 7 }], histograms: [] });
    await orgObject(theirs.name).recordMetrics({ counters: [{ name: "zectre_webhook_deliveries_total", labels: { result: "delivered" }, value: 9 }], histograms: [] });
    const res = await scrape(await createToken(mine.adminToken, "prometheus", "read"));
    expect(res.status).toBe(200);
    expect(res.type).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(res.text).toContain("# TYPE zectre_job_duration_seconds histogram");
    expect(res.text).not.toContain("zectre_orgs");
    const parsed = parseMetricsText(res.text);
    expect(new Set(parsed.map((s) => s.labels.org))).toEqual(new Set([mine.name]));
    expect(valueOf(parsed, "zectre_webhook_deliveries_total", { result: "delivered" })).toBe(7);
    expect(res.text).not.toContain(theirs.name);
  });

  it("gives the operator every org, each series labelled with its org", async () => {
    const a = await createOrg("mx");
    const b = await createOrg("mx");
    await orgObject(a.name).recordMetrics({ counters: [{ name: "zectre_tunnel_streams_total", labels: { kind: "http" }, value: 2 }], histograms: [] });
    await orgObject(b.name).recordMetrics({ counters: [{ name: "zectre_tunnel_streams_total", labels: { kind: "http" }, value: 3 }], histograms: [] });
    const parsed = await series(OPERATOR);
    expect(valueOf(parsed, "zectre_tunnel_streams_total", { org: a.name, kind: "http" })).toBe(2);
    expect(valueOf(parsed, "zectre_tunnel_streams_total", { org: b.name, kind: "http" })).toBe(3);
    expect(valueOf(parsed, "zectre_nodes", { org: b.name, presence: "online" })).toBe(0);
    expect(valueOf(parsed, "zectre_orgs")).toBeGreaterThanOrEqual(2);
    expect(valueOf(parsed, "zectre_org_scrape_failures")).toBe(0);
    expect(sumOf(parsed, "zectre_tunnel_streams_total", { kind: "http" })).toBeGreaterThanOrEqual(5);
    expect(parsed.filter((s) => s.name !== "zectre_orgs" && s.name !== "zectre_org_scrape_failures").every((s) => typeof s.labels.org === "string")).toBe(true);
  });
});
