import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeploymentRecord } from "../../protocol/deployments.ts";
import { type Fleet, startFleet } from "../helpers/fleet.ts";
import { type ParsedSeries, parseMetricsText, sumOf, valueOf } from "../helpers/metrics-text.ts";
import { runCli } from "../helpers/run-cli.ts";
import { eventually } from "../helpers/eventually.ts";

/**
 * `GET /metrics` of a real control plane (wrangler dev, real agent, the fixture app behind the
 * proxy) after a job, a proxied request, an artifact upload and a webhook delivery: checked by
 * Debian's `promtool check metrics`, read for plausible values, and read again after the
 * control plane restarted (the counters live in the org object's SQLite, not in an isolate).
 */

const PROMTOOL = "/usr/bin/promtool";
const FIXTURE = join(import.meta.dirname, "../fixtures/hello-app");
const NODE = "mx-1";


/** A GET to the proxy with `host` as the Host header (Node does not resolve *.localhost). */
function viaProxy(port: number, host: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, headers: { host } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

/** A webhook receiver on loopback that accepts everything. */
async function startReceiver(): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => res.writeHead(204).end());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, server };
}

/** Writes the exposition to a temp file and runs `promtool check metrics` on it; the file stays only if the check failed. */
function promtoolCheck(text: string): { code: number | null; output: string; file: string } {
  const dir = mkdtempSync(join(tmpdir(), "zectre-metrics-"));
  const file = join(dir, "metrics.prom");
  writeFileSync(file, text);
  const run = spawnSync(PROMTOOL, ["check", "metrics"], { input: readFileSync(file), encoding: "utf8" });
  const output = `${run.stdout ?? ""}${run.stderr ?? ""}${run.error ? String(run.error) : ""}`;
  if (run.status === 0 && output === "") rmSync(dir, { recursive: true, force: true });
  return { code: run.status, output, file };
}

describe("Prometheus metrics end to end", () => {
  let fleet: Fleet;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let readToken: string;
  let appDir: string;
  const cli = (...args: string[]) => runCli(args, { cwd: fleet.plane.root, env: { ZECTRE_CONFIG_DIR: join(fleet.plane.root, "config") } });

  async function scrape(token: string): Promise<{ status: number; type: string | null; text: string }> {
    const res = await fetch(`${fleet.plane.apiUrl}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    return { status: res.status, type: res.headers.get("content-type"), text: await res.text() };
  }

  async function orgSeries(): Promise<ParsedSeries[]> {
    const res = await scrape(readToken);
    if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}: ${res.text}`);
    return parseMetricsText(res.text);
  }

  beforeAll(async () => {
    receiver = await startReceiver();
    fleet = await startFleet([NODE], { heartbeatSeconds: 1 });
    readToken = (await fleet.api("POST", "/api/v1/tokens", { name: "prometheus", scope: "read" })).body.token as string;
    await eventually(async () => (await fleet.api("GET", `/api/v1/nodes/${NODE}`)).body, (b) => (b.node as { online?: boolean })?.online === true, `${NODE} online`);
    expect((await fleet.api("POST", "/api/v1/webhooks", { url: receiver.url, events: ["job.*"] })).status).toBe(201);

    const started = await fleet.api("POST", "/api/v1/jobs", { targets: [NODE], function: "test.ping" });
    expect(started.status).toBe(202);
    const jid = started.body.jid as string;
    await eventually(async () => (await fleet.api("GET", `/api/v1/jobs/${jid}`)).body.job as { status: string }, (job) => job.status === "complete", "the ping to complete");

    appDir = mkdtempSync(join(tmpdir(), "zectre-metrics-app-"));
    const dir = join(appDir, "hello");
    cpSync(FIXTURE, dir, { recursive: true });
    const deployed = await cli("deploy", dir, "--app", "hello", "--health-path", "/healthz", "--format", "json");
    if (deployed.code !== 0) throw new Error(deployed.stderr);
    const deployment = (JSON.parse(deployed.stdout) as { deployment: DeploymentRecord }).deployment;
    const host = `${deployment.id}.hello.default.localhost:${fleet.plane.proxyPort}`;
    const answer = await eventually(() => viaProxy(fleet.plane.proxyPort, host, "/"), (a) => a.status === 200, "the preview URL serving");
    expect(answer.body).toBe(`hello from ${deployment.id}\n`);
  });

  afterAll(async () => {
    await fleet?.stop();
    receiver?.server.close();
    if (appDir) rmSync(appDir, { recursive: true, force: true });
  });

  it("answers a read token with its org's metrics, which promtool accepts and which count what happened", async () => {
    // The proxy and the node's tunnel flush their counts within about a second; webhooks deliver from an alarm.
    const series = await eventually(
      orgSeries,
      (s) =>
        (valueOf(s, "zectre_proxy_requests_total", { app: "hello", code: "200" }) ?? 0) >= 1 &&
        sumOf(s, "zectre_tunnel_bytes_total", { direction: "from_agent" }) > 0 &&
        (valueOf(s, "zectre_webhook_deliveries_total", { result: "delivered" }) ?? 0) >= 1,
      "the proxy, tunnel and webhook counts",
    );
    const res = await scrape(readToken);
    expect(res.type).toBe("text/plain; version=0.0.4; charset=utf-8");
    const check = promtoolCheck(res.text);
    expect(check.output, check.file).toBe("");
    expect(check.code, check.file).toBe(0);

    expect(new Set(series.map((s) => s.labels.org))).toEqual(new Set(["default"]));
    expect(valueOf(series, "zectre_nodes", { presence: "online" })).toBe(1);
    expect(valueOf(series, "zectre_agents_connected")).toBe(1);
    expect(valueOf(series, "zectre_agent_connections_total")).toBeGreaterThanOrEqual(1);
    expect(valueOf(series, "zectre_jobs_finished_total", { status: "complete" })).toBeGreaterThanOrEqual(1);
    expect(valueOf(series, "zectre_job_returns_total", { result: "succeeded" })).toBeGreaterThanOrEqual(1);
    expect(valueOf(series, "zectre_job_duration_seconds_count")).toBeGreaterThanOrEqual(1);
    expect(valueOf(series, "zectre_job_duration_seconds_bucket", { le: "+Inf" })).toBe(valueOf(series, "zectre_job_duration_seconds_count"));
    expect(valueOf(series, "zectre_job_duration_seconds_sum")).toBeGreaterThan(0);
    expect(valueOf(series, "zectre_proxy_request_duration_seconds_count", { app: "hello" })).toBeGreaterThanOrEqual(1);
    expect(valueOf(series, "zectre_tunnel_streams_total", { kind: "http" })).toBeGreaterThanOrEqual(1);
    // The fixture app's layer went up with `zectre deploy`.
    expect(sumOf(series, "zectre_artifact_stored_bytes_total")).toBeGreaterThan(0);
    expect(sumOf(series, "zectre_artifacts_stored_total")).toBeGreaterThanOrEqual(1);
  });

  it("answers the operator secret with every org, labelled, also accepted by promtool", async () => {
    const res = await scrape(fleet.plane.operatorSecret());
    expect(res.status).toBe(200);
    const check = promtoolCheck(res.text);
    expect(check.output, check.file).toBe("");
    expect(check.code, check.file).toBe(0);
    const series = parseMetricsText(res.text);
    expect(valueOf(series, "zectre_orgs")).toBe(1);
    expect(valueOf(series, "zectre_org_scrape_failures")).toBe(0);
    expect(valueOf(series, "zectre_jobs_finished_total", { org: "default", status: "complete" })).toBeGreaterThanOrEqual(1);
  });

  it("refuses a scrape without a valid token", async () => {
    expect((await fetch(`${fleet.plane.apiUrl}/metrics`)).status).toBe(401);
    expect((await scrape("zt_default_nope_nope")).status).toBe(401);
  });

  it("keeps the counters across a restart of the control plane", async () => {
    const before = await orgSeries();
    await fleet.plane.restart();
    const after = await orgSeries();
    for (const [name, labels] of [
      ["zectre_jobs_finished_total", { status: "complete" }],
      ["zectre_job_duration_seconds_count", {}],
      ["zectre_artifact_stored_bytes_total", { layer: "app" }],
      ["zectre_webhook_deliveries_total", { result: "delivered" }],
    ] as const) {
      const was = valueOf(before, name, labels);
      expect(was, name).toBeGreaterThan(0);
      expect(valueOf(after, name, labels), name).toBe(was);
    }
    expect(valueOf(after, "zectre_proxy_requests_total", { app: "hello", code: "200" })).toBeGreaterThanOrEqual(valueOf(before, "zectre_proxy_requests_total", { app: "hello", code: "200" }) ?? 1);
    expect(sumOf(after, "zectre_tunnel_bytes_total")).toBeGreaterThanOrEqual(sumOf(before, "zectre_tunnel_bytes_total"));
  });
});
