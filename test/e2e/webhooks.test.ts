import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CreatedWebhook, WebhookDeliveryRecord, WebhookPayload } from "../../protocol/webhooks.ts";
import { type Fleet, startFleet } from "../helpers/fleet.ts";
import { runCli } from "../helpers/run-cli.ts";

/** One POST as the receiver saw it, and the status it answered. */
interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  answered: number;
}

/**
 * A receiver on loopback: `/ok/...` answers 200; `/flaky/...` answers 500 to the first
 * two POSTs of each delivery id, then 200.
 */
async function startReceiver(): Promise<{ url: string; received: Received[]; server: Server }> {
  const received: Received[] = [];
  const seen = new Map<string, number>();
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const delivery = String(req.headers["zectre-delivery"]);
    const count = (seen.get(delivery) ?? 0) + 1;
    seen.set(delivery, count);
    const answered = req.url?.startsWith("/flaky/") && count <= 2 ? 500 : 200;
    received.push({ path: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8"), answered });
    res.writeHead(answered, { "content-type": "text/plain" }).end(answered === 200 ? "ok" : "try again");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received, server };
}

/** What a receiver does, in Node: recompute the HMAC over "<timestamp>.<body>" and compare in constant time. */
function signatureValid(secret: string, post: Received): boolean {
  const expected = Buffer.from(`v1=${createHmac("sha256", secret).update(`${post.headers["zectre-timestamp"]}.${post.body}`).digest("hex")}`);
  const given = Buffer.from(String(post.headers["zectre-signature"]));
  return expected.length === given.length && timingSafeEqual(expected, given);
}

/** Real control plane, real agent, real CLI; deliveries go to a real HTTP server. */
describe("webhooks end to end", () => {
  let fleet: Fleet;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  const cli = (...args: string[]) => runCli(args, { cwd: fleet.plane.root, env: { ZECTRE_CONFIG_DIR: join(fleet.plane.root, "config") } });
  const json = async <T>(...args: string[]): Promise<T> => {
    const result = await cli(...args, "--format", "json");
    if (result.code !== 0) throw new Error(`zectre ${args.join(" ")} failed: ${result.stderr}`);
    return JSON.parse(result.stdout) as T;
  };
  const addWebhook = (url: string, events: string) => json<CreatedWebhook>("webhook", "add", url, "--events", events);
  const deliveriesOf = async (id: string) => (await json<{ deliveries: WebhookDeliveryRecord[] }>("webhook", "deliveries", id)).deliveries;
  const runPing = async (): Promise<string> => {
    const started = await fleet.api("POST", "/api/v1/jobs", { targets: ["web-1"], function: "test.ping" });
    expect(started.status).toBe(202);
    return started.body.jid as string;
  };

  beforeAll(async () => {
    receiver = await startReceiver();
    // Retries after ~1 s and ~4 s instead of 10 s and 40 s: the launcher passes this on to the control plane.
    process.env.WEBHOOK_RETRY_BASE_SECONDS = "1";
    try {
      fleet = await startFleet(["web-1"], { heartbeatSeconds: 1 });
    } finally {
      delete process.env.WEBHOOK_RETRY_BASE_SECONDS;
    }
    const online = async () => (await fleet.api("GET", "/api/v1/nodes/web-1")).body.node as { online?: boolean } | undefined;
    const deadline = Date.now() + 30_000;
    while (!(await online())?.online) {
      if (Date.now() > deadline) throw new Error("web-1 did not come online");
      await new Promise((r) => setTimeout(r, 300));
    }
  });

  afterAll(async () => {
    await fleet?.stop();
    await new Promise((r) => receiver?.server.close(r));
  });

  it("a finished job reaches the receiver as a signed job.finished delivery", async () => {
    const hook = await addWebhook(`${receiver.url}/ok/jobs`, "job.*,deploy.*");
    expect(hook.secret).toMatch(/^whsec_/);
    const list = await json<{ webhooks: { id: string }[] }>("webhook", "list");
    expect(list.webhooks.map((w) => w.id)).toContain(hook.webhook.id);

    const jid = await runPing();
    await expect.poll(() => receiver.received.filter((r) => r.path === "/ok/jobs").length, { timeout: 30_000 }).toBe(1);
    const post = receiver.received.find((r) => r.path === "/ok/jobs") as Received;
    expect(post.headers["content-type"]).toBe("application/json");
    expect(post.headers["zectre-webhook-id"]).toBe(hook.webhook.id);
    expect(post.headers["zectre-event"]).toBe("job.finished");
    expect(signatureValid(hook.secret, post)).toBe(true);
    expect(signatureValid(`${hook.secret}x`, post)).toBe(false);
    const payload = JSON.parse(post.body) as WebhookPayload;
    expect(payload).toMatchObject({ type: "job.finished", org: "default", data: { jid, function: "test.ping", status: "complete" } });

    await expect.poll(async () => (await deliveriesOf(hook.webhook.id))[0]?.status, { timeout: 10_000 }).toBe("delivered");
    const [record] = await deliveriesOf(hook.webhook.id);
    expect(record).toMatchObject({ id: post.headers["zectre-delivery"], eventId: payload.id, event: "job.finished" });
    expect(record?.attempts.map((a) => a.statusCode)).toEqual([200]);
  });

  it("a receiver that answers 500 twice gets the delivery on the third attempt, all three recorded", async () => {
    const hook = await addWebhook(`${receiver.url}/flaky/jobs`, "job.finished");
    const jid = await runPing();
    await expect.poll(async () => (await deliveriesOf(hook.webhook.id))[0]?.status, { timeout: 60_000, interval: 500 }).toBe("delivered");

    const posts = receiver.received.filter((r) => r.path === "/flaky/jobs");
    expect(posts.map((p) => p.answered)).toEqual([500, 500, 200]);
    expect(new Set(posts.map((p) => p.headers["zectre-delivery"])).size).toBe(1);
    expect(new Set(posts.map((p) => p.body)).size).toBe(1);
    expect(posts.every((p) => signatureValid(hook.secret, p))).toBe(true);
    expect((JSON.parse((posts[0] as Received).body) as WebhookPayload).data).toMatchObject({ jid });

    const [record] = await deliveriesOf(hook.webhook.id);
    expect(record?.attempts.map((a) => [a.n, a.statusCode])).toEqual([[1, 500], [2, 500], [3, 200]]);
    // The backoff was honored: the retries waited, the second longer than the first (base 1 s, ×4, ±20%).
    const at = (record?.attempts ?? []).map((a) => Date.parse(a.at));
    expect((at[1] as number) - (at[0] as number)).toBeGreaterThanOrEqual(800);
    expect((at[2] as number) - (at[1] as number)).toBeGreaterThanOrEqual(3200);

    const text = await cli("webhook", "deliveries", hook.webhook.id);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`${record?.id}\\s+job\\.finished\\s+${hook.webhook.id}\\s+delivered\\s+3\\s+200, \\d+s ago`));
  });

  it("removing a webhook stops its deliveries", async () => {
    const hook = await addWebhook(`${receiver.url}/ok/removed`, "*");
    expect((await cli("webhook", "remove", hook.webhook.id)).code).toBe(0);
    const test = await cli("webhook", "test", hook.webhook.id);
    expect(test.code).toBe(1);
    expect(test.stderr).toMatch(/not found/);
    const before = receiver.received.filter((r) => r.path === "/ok/jobs").length;
    await runPing();
    // The job's event reaches the webhooks still subscribed, and never the removed one.
    await expect.poll(() => receiver.received.filter((r) => r.path === "/ok/jobs").length, { timeout: 30_000 }).toBe(before + 1);
    expect(receiver.received.filter((r) => r.path === "/ok/removed")).toEqual([]);
  });
});
