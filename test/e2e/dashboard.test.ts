import { cpSync, mkdtempSync, readFileSync } from "node:fs";
import { createServer, request, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocketServer, type WebSocket } from "ws";
import type { DeploymentRecord } from "../../protocol/deployments.ts";
import { type RunningAgent, runAgentCommand, startAgent } from "../helpers/agent-process.ts";
import { type HeadlessBrowser, launchChromium, PHONE_VIEWPORT } from "../helpers/browser.ts";
import { type LocalControlPlane, removeControlPlane, startLocalControlPlane } from "../helpers/local-control-plane.ts";
import { runCli } from "../helpers/run-cli.ts";
import { eventually } from "../helpers/eventually.ts";

const FIXTURE = join(import.meta.dirname, "../fixtures/hello-app");
const NODE = "dash-1";
/** Would run if the dashboard ever put host or user data into HTML; the tests look for it as text instead. */
const HOSTILE = "<img/src=x/onerror=window.__pwned=1>";
/** Lives in the page's JavaScript state, so it is gone after any reload or full navigation. */
const NO_RELOAD_MARK = "__stillTheSamePage";


/** A raw request, so the path reaches the app (and its log) with `<` and `>` as they are. */
function rawGet(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.once("error", reject);
    req.end();
  });
}

async function signIn(page: Page, apiUrl: string, token: string): Promise<void> {
  await page.goto(`${apiUrl}/`);
  // Keyboard only: the token field has focus, Enter submits.
  await page.waitForSelector("#token:focus");
  await page.keyboard.type(token);
  await page.keyboard.press("Enter");
  await page.waitForSelector("#nav:not([hidden])");
}

async function markPage(page: Page): Promise<void> {
  await page.evaluate((mark) => Object.assign(window, { [mark]: true }), NO_RELOAD_MARK);
}

async function stillSamePage(page: Page): Promise<boolean> {
  return page.evaluate((mark) => (window as unknown as Record<string, unknown>)[mark] === true, NO_RELOAD_MARK);
}

/** The dashboard in real headless Chromium against a real control plane, a real agent and the real CLI. */
describe("dashboard in headless Chromium", () => {
  let plane: LocalControlPlane;
  let browser: HeadlessBrowser;
  let page: Page;
  let errors: string[];
  let agent: RunningAgent | undefined;
  let adminToken: string;
  const api = async (method: string, path: string, body?: unknown) => {
    const headers: Record<string, string> = { authorization: `Bearer ${adminToken}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(`${plane.apiUrl}/api/v1${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    return (await res.json()) as Record<string, unknown>;
  };

  beforeAll(async () => {
    plane = await startLocalControlPlane({ heartbeatSeconds: 1 });
    adminToken = plane.adminToken();
    browser = await launchChromium();
    ({ page, errors } = await browser.open());
  });

  afterAll(async () => {
    await browser?.close();
    await agent?.stop();
    await plane?.stop();
    if (plane) removeControlPlane(plane);
  });

  it("serves the dashboard as assets while the API, health check and unknown paths still reach the Worker", async () => {
    const index = await fetch(`${plane.apiUrl}/`);
    expect(index.headers.get("content-type")).toContain("text/html");
    expect(await index.text()).toContain('src="/js/main.js"');
    expect(((await (await fetch(`${plane.apiUrl}/healthz`)).json()) as { component: string }).component).toBe("api");
    const unauthorized = await fetch(`${plane.apiUrl}/api/v1/nodes`);
    expect(unauthorized.status).toBe(401);
    expect(((await unauthorized.json()) as { error: { code: string } }).error.code).toBe("unauthorized");
    const unknown = await fetch(`${plane.apiUrl}/no-such-page`);
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe("not_found");
  });

  it("a wrong token shows a clear message, keeps the form, and is not stored", async () => {
    await page.goto(`${plane.apiUrl}/`);
    await page.fill("#token", "zt_default_notatoken_000000000000");
    await page.press("#token", "Enter");
    const message = page.locator("#signin-error");
    await message.filter({ hasText: "not accepted" }).waitFor();
    expect(await message.textContent()).toMatch(/That token was not accepted/);
    expect(await page.isVisible("#token")).toBe(true);
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    expect(page.url()).not.toContain("zt_");
    await browser.screenshot(page, "01-wrong-token");
  });

  it("signs in and sees a node come online live, without a reload", async () => {
    await signIn(page, plane.apiUrl, adminToken);
    expect(page.url()).not.toContain(adminToken);
    await page.locator("#live-state", { hasText: /^live$/ }).waitFor();
    await page.locator("main", { hasText: "No nodes yet" }).waitFor();
    await markPage(page);

    const enrollment = (await api("POST", "/enrollment-tokens", { uses: 1, autoApprove: true, labels: { note: HOSTILE } })).token as string;
    const dataDir = mkdtempSync(join(tmpdir(), `zectre-${NODE}-`));
    const enrolled = await runAgentCommand(["enroll", "--url", plane.apiUrl, "--token", enrollment, "--id", NODE, "--data-dir", dataDir]);
    expect(enrolled.code, enrolled.stderr).toBe(0);
    agent = startAgent(dataDir, ["--fact", `motd=${HOSTILE}`]);

    await page.locator(`[data-node-presence="${NODE}"] .badge`, { hasText: "online" }).waitFor({ timeout: 60_000 });
    expect(await stillSamePage(page)).toBe(true);
    await browser.screenshot(page, "02-node-online");
  });

  it("shows a fact and a label holding HTML as text", async () => {
    await page.click(`a[href="#/nodes/${NODE}"]`);
    const fact = page.locator("tr", { has: page.locator("td", { hasText: /^custom\.motd$/ }) });
    await fact.waitFor();
    expect(await fact.locator("td").nth(1).textContent()).toBe(HOSTILE);
    const label = page.locator("section[aria-labelledby=labels-title] tr", { has: page.locator("td", { hasText: /^note$/ }) });
    expect(await label.locator("td").nth(1).textContent()).toBe(HOSTILE);
    // Markup would have made an element; text makes none.
    expect(await page.locator("main img").count()).toBe(0);
    expect(await page.evaluate(() => "__pwned" in window)).toBe(false);
    await browser.screenshot(page, "03-node-facts-escaped");
  });

  it("runs test.ping from the form with a live preview of matched nodes, and the return appears without a reload", async () => {
    await page.click('nav a[href="#/run"]');
    await page.fill("#run-target", "nobody-*");
    await page.locator("#target-preview", { hasText: "Matches 0 nodes" }).waitFor();
    await page.fill("#run-target", "dash-*");
    await page.locator("#target-preview li", { hasText: NODE }).waitFor();
    await page.fill("#run-target", "dash-* and");
    await page.locator("#target-preview .error", { hasText: "Target not valid" }).waitFor();
    await page.fill("#run-target", "dash-*");
    await page.locator("#target-preview li", { hasText: NODE }).waitFor();
    await browser.screenshot(page, "04-run-form");

    await page.fill("#run-function", "test.ping");
    await page.press("#run-function", "Enter");
    await page.waitForURL(/#\/jobs\/\d{23}$/);
    const jid = /#\/jobs\/(\d{23})$/.exec(page.url())?.[1] as string;
    await page.locator(`[data-return-node="${NODE}"] .badge`, { hasText: "succeeded" }).waitFor({ timeout: 30_000 });
    await page.locator("#job-status .badge", { hasText: "complete" }).waitFor();
    expect(await stillSamePage(page)).toBe(true);
    const job = (await api("GET", `/jobs/${jid}`)).job as { status: string; targets: Array<{ nodeId: string }> };
    expect(job.targets.map((t) => t.nodeId)).toEqual([NODE]);
    await browser.screenshot(page, "05-job-returned");

    await page.goto(`${plane.apiUrl}/#/jobs?state=complete`);
    await page.locator(`[data-job-status="${jid}"] .badge`, { hasText: "complete" }).waitFor();
    await page.selectOption("#state-filter", "failed");
    await page.locator("main", { hasText: "No failed jobs." }).waitFor();
    expect(await page.locator(`[data-job-status="${jid}"]`).count()).toBe(0);
  });

  it("kills a running job from its page and sees it canceled without a reload", async () => {
    const created = await api("POST", "/jobs", { target: NODE, function: "test.sleep", args: { _: [60] }, timeout: 120 });
    const jid = created.jid as string;
    await page.goto(`${plane.apiUrl}/#/jobs/${jid}`);
    await markPage(page);
    // Once the agent's ack has redrawn the page, the job is surely running on the node.
    await page.locator(`[data-return-node="${NODE}"]`, { hasText: "acked" }).waitFor();
    const kill = page.getByRole("button", { name: "Kill job" });
    await kill.focus();
    await page.keyboard.press("Enter");
    await page.locator("#job-status .badge", { hasText: "canceled" }).waitFor({ timeout: 30_000 });
    expect(await kill.count()).toBe(0);
    expect(((await api("GET", `/jobs/${jid}`)).job as { status: string }).status).toBe("canceled");
    expect(await stillSamePage(page)).toBe(true);
  });

  it("lists a deployment with its preview link, opens it, and follows its logs live with HTML shown as text", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "zectre-dash-")), "hello");
    cpSync(FIXTURE, dir, { recursive: true });
    const deployed = await runCli(["deploy", dir, "--app", "hello", "--health-path", "/healthz", "--format", "json"], {
      cwd: plane.root,
      env: { ZECTRE_CONFIG_DIR: join(plane.root, "config"), ZECTRE_URL: plane.apiUrl, ZECTRE_TOKEN: adminToken },
    });
    expect(deployed.code, deployed.stderr).toBe(0);
    const { deployment, previewUrl } = JSON.parse(deployed.stdout) as { deployment: DeploymentRecord; previewUrl: string };
    const healthy = await eventually(
      async () => (await api("GET", `/deployments/${deployment.id}`)).deployment as DeploymentRecord,
      (d) => d.tasks.some((t) => t.desired === "run" && t.state === "healthy"),
      "a healthy task",
    );

    await page.click('nav a[href="#/apps"]');
    await page.click('main a[href="#/apps/hello"]');
    const link = page.locator(`a[data-preview="${deployment.id}"]`);
    await link.waitFor();
    expect(await link.getAttribute("href")).toBe(previewUrl);
    expect(previewUrl).toContain(`${deployment.id}.hello.default.localhost`);
    await page.locator("main .tasks .badge", { hasText: "healthy" }).first().waitFor();
    await browser.screenshot(page, "06-app-deployments");

    // The preview opens in a new tab; its content is checked only when the edge proxy serves previews.
    const response = page.context().waitForEvent("response", { predicate: (r) => r.url().startsWith(previewUrl), timeout: 15_000 }).catch(() => null);
    const [preview] = await Promise.all([page.context().waitForEvent("page"), link.click()]);
    const answer = await response;
    if (answer?.status() === 200) {
      await preview.locator("body", { hasText: `hello from ${deployment.id}` }).waitFor();
      await browser.screenshot(preview, "07-preview");
    }
    await preview.close();

    await page.click(`a[href="#/apps/hello/deployments/${deployment.id}/logs"]`);
    await page.locator("main .notice", { hasText: "Following live" }).waitFor();
    await markPage(page);
    const port = healthy.tasks.find((t) => t.state === "healthy")?.hostPort as number;
    expect(await rawGet(port, `/${HOSTILE}`)).toBe(404); // the fixture's answer to unknown paths; the point is its log line
    const line = page.locator("#log-lines li", { hasText: HOSTILE });
    await line.waitFor({ timeout: 30_000 });
    expect(await line.textContent()).toContain(`GET /${HOSTILE}`);
    expect(await page.locator("main img").count()).toBe(0);
    expect(await stillSamePage(page)).toBe(true);
    await browser.screenshot(page, "08-logs-live");
  });

  it("is readable at phone width: no sideways scrolling of the page", async () => {
    const phone = await browser.open(PHONE_VIEWPORT);
    await signIn(phone.page, plane.apiUrl, adminToken);
    await phone.page.locator(`[data-node-presence="${NODE}"]`).waitFor();
    expect(await phone.page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(PHONE_VIEWPORT.width);
    await browser.screenshot(phone.page, "09-phone-nodes");
    await phone.context.close();
    // Nothing the pages did threw or was refused by the content security policy.
    expect(errors.filter((e) => !e.includes("Failed to load resource"))).toEqual([]);
    expect(phone.errors.filter((e) => !e.includes("Failed to load resource"))).toEqual([]);
  });
});

/**
 * The dashboard's events socket (web/js/events.js) in Chromium against a scripted loopback server: the token
 * goes in the first message, a reconnect asks for what came after the last id seen, repeats are dropped,
 * and 4001 ends it for good.
 */
describe("dashboard events socket in headless Chromium", () => {
  let server: Server;
  let sockets: WebSocketServer;
  let browser: HeadlessBrowser;
  const seen: Array<{ url: string; auth: unknown }> = [];
  const scripts: Array<(ws: WebSocket) => void> = [];

  const PAGE = `<!doctype html><script type="module">
    import { EventsSocket } from "/js/events.js";
    window.__log = [];
    new EventsSocket("zt_test_token", {
      onEvent: (e) => window.__log.push("event " + e.id),
      onState: (s) => window.__log.push("state " + s),
      onBadToken: (code) => window.__log.push("bad token " + code),
    }).start();
  </script>`;

  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url === "/js/events.js") {
        res.writeHead(200, { "content-type": "text/javascript" });
        res.end(readFileSync(join(import.meta.dirname, "../../web/js/events.js")));
      } else {
        res.writeHead(200, { "content-type": "text/html" });
        res.end(PAGE);
      }
    });
    sockets = new WebSocketServer({ server });
    sockets.on("connection", (ws, req) => {
      ws.once("message", (data) => {
        seen.push({ url: req.url ?? "", auth: JSON.parse(String(data)) });
        scripts.shift()?.(ws);
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    sockets?.close();
    server?.close();
  });

  it("reconnects with the last id, drops repeats, and stops on 4001", async () => {
    const send = (ws: WebSocket, message: unknown) => ws.send(JSON.stringify(message));
    const event = (id: number) => ({ type: "event", event: { id, ts: new Date().toISOString(), type: "job.created", data: {} } });
    scripts.push((ws) => {
      send(ws, { type: "ready", last: 5 });
      // An event at or before the ready mark is already reflected in what the page loaded.
      send(ws, event(5));
      send(ws, event(6));
      send(ws, event(6));
      setTimeout(() => ws.close(1011, "gone"), 100);
    });
    scripts.push((ws) => {
      send(ws, { type: "ready", last: 8 });
      send(ws, event(7));
      send(ws, event(8));
      send(ws, event(9));
      setTimeout(() => ws.close(4001, "token revoked"), 100);
    });
    const { page } = await browser.open();
    const address = server.address() as { port: number };
    await page.goto(`http://127.0.0.1:${address.port}/`);
    await page.waitForFunction(() => ((window as unknown as { __log?: string[] }).__log ?? []).includes("bad token 4001"), undefined, { timeout: 30_000 });
    const log = await page.evaluate(() => (window as unknown as { __log: string[] }).__log);
    expect(log.filter((l) => l.startsWith("event"))).toEqual(["event 6", "event 7", "event 8", "event 9"]);
    expect(log).toContain("state offline");
    expect(seen.map((s) => s.url)).toEqual(["/api/v1/events", "/api/v1/events?since=6"]);
    expect(seen.map((s) => s.auth)).toEqual([{ type: "auth", token: "zt_test_token" }, { type: "auth", token: "zt_test_token" }]);
    // No third connection after 4001: retrying a revoked token cannot help.
    await new Promise((r) => setTimeout(r, 2500));
    expect(sockets.clients.size).toBe(0);
    expect(seen).toHaveLength(2);
  });
});
