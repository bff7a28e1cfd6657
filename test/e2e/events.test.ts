import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import type { EventsServerMessage, OrgEvent } from "../../protocol/events.ts";
import { PROJECT_ROOT } from "../../scripts/lib/control-plane.ts";
import { type RunningAgent, runAgentCommand, startAgent } from "../helpers/agent-process.ts";
import { type LocalControlPlane, removeControlPlane, startLocalControlPlane } from "../helpers/local-control-plane.ts";
import { runCli } from "../helpers/run-cli.ts";

/** A subscriber on a real WebSocket: what it received, in order. */
interface Subscriber {
  messages: EventsServerMessage[];
  events(): OrgEvent[];
  close(): Promise<void>;
}

async function waitUntil(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `auth: "header"` is the CLI's way; `"message"` the browser's (first message, no header). */
async function subscribe(apiUrl: string, token: string, auth: "header" | "message", since?: number): Promise<Subscriber> {
  const url = `${apiUrl.replace(/^http/, "ws")}/api/v1/events${since === undefined ? "" : `?since=${since}`}`;
  const ws = new WebSocket(url, auth === "header" ? { headers: { authorization: `Bearer ${token}` } } : {});
  const messages: EventsServerMessage[] = [];
  ws.on("message", (data) => messages.push(JSON.parse(String(data)) as EventsServerMessage));
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  if (auth === "message") ws.send(JSON.stringify({ type: "auth", token }));
  await waitUntil(() => messages.some((m) => m.type === "ready"), "ready");
  return {
    messages,
    events: () => messages.flatMap((m) => (m.type === "event" ? [m.event] : [])),
    close: () =>
      new Promise<void>((resolve) => {
        ws.once("close", () => resolve());
        ws.close(1000);
      }),
  };
}

const jobEvents = (events: OrgEvent[], jid: string) => events.filter((e) => e.data["jid"] === jid).map((e) => e.type);

describe("org events and audit end to end", () => {
  let plane: LocalControlPlane;
  let agent: RunningAgent | undefined;
  let ciToken = "";
  const cli = (...args: string[]) => runCli(args, { cwd: plane.root, env: { ZECTRE_CONFIG_DIR: join(plane.root, "config") } });
  const ping = async () => {
    const res = await cli("--token", ciToken, "run", "ev-node", "test.ping", "--async", "--format", "json");
    expect(res.code, res.stderr).toBe(0);
    return (JSON.parse(res.stdout) as { jid: string }).jid;
  };

  beforeAll(async () => {
    plane = await startLocalControlPlane({ heartbeatSeconds: 1 });
    const created = await cli("token", "create", "--name", "e2e-ci", "--scope", "operate", "--format", "json");
    if (created.code !== 0) throw new Error(created.stderr);
    ciToken = (JSON.parse(created.stdout) as { token: string }).token;
  });

  afterAll(async () => {
    await agent?.stop();
    await plane?.stop();
    if (plane) removeControlPlane(plane);
  });

  it("streams node.online for a real agent, then a ping's job.created, job.return and job.finished", async () => {
    const header = await subscribe(plane.apiUrl, plane.adminToken(), "header");
    const browser = await subscribe(plane.apiUrl, ciToken, "message");
    const enrollment = await cli("node", "token", "create", "--auto-approve", "--format", "json");
    const dir = mkdtempSync(join(tmpdir(), "zectre-ev-node-"));
    const enrolled = await runAgentCommand(["enroll", "--url", plane.apiUrl, "--token", (JSON.parse(enrollment.stdout) as { token: string }).token, "--id", "ev-node", "--data-dir", dir]);
    expect(enrolled.code, enrolled.stderr).toBe(0);
    agent = startAgent(dir);
    await waitUntil(() => header.events().some((e) => e.type === "node.online"), "node.online");
    expect(header.events().find((e) => e.type === "node.online")?.data).toEqual({ nodeId: "ev-node" });

    const jid = await ping();
    await waitUntil(() => jobEvents(header.events(), jid).includes("job.finished"), "job.finished");
    expect(jobEvents(header.events(), jid)).toEqual(["job.created", "job.return", "job.finished"]);
    const [created, ret, finished] = header.events().filter((e) => e.data["jid"] === jid);
    expect(created?.data).toMatchObject({ function: "test.ping", target: "ev-node", targets: 1, user: "e2e-ci" });
    expect(ret?.data).toEqual({ jid, nodeId: "ev-node", success: true, synthetic: false });
    expect(finished?.data).toMatchObject({ status: "complete" });
    // The browser-style socket (first-message auth, relayed by the Worker) saw the same events with the same ids.
    await waitUntil(() => jobEvents(browser.events(), jid).includes("job.finished"), "job.finished on the browser socket");
    expect(browser.events().filter((e) => e.data["jid"] === jid)).toEqual(header.events().filter((e) => e.data["jid"] === jid));
    await header.close();
    await browser.close();
  });

  it("a subscriber that reconnects with the last id it saw misses nothing", async () => {
    const first = await subscribe(plane.apiUrl, ciToken, "header");
    const jidOne = await ping();
    await waitUntil(() => jobEvents(first.events(), jidOne).includes("job.finished"), "the first job");
    const lastSeen = first.events().at(-1)?.id as number;
    await first.close();

    const jidTwo = await ping();
    // Wait for the finish to be recorded before reconnecting, so the backlog has to carry all of it.
    await waitUntil(async () => {
      const res = await cli("job", "show", jidTwo, "--format", "json");
      return (JSON.parse(res.stdout) as { job: { status: string } }).job.status === "complete";
    }, "the second job to finish");
    const again = await subscribe(plane.apiUrl, ciToken, "message", lastSeen);
    await waitUntil(() => jobEvents(again.events(), jidTwo).includes("job.finished"), "the missed job's events");
    const ids = again.events().map((e) => e.id);
    expect(ids[0]).toBe(lastSeen + 1);
    expect(ids).toEqual(ids.map((_, i) => lastSeen + 1 + i));
    expect(jobEvents(again.events(), jidTwo)).toEqual(["job.created", "job.return", "job.finished"]);
    await again.close();
  });

  it("zectre events prints the kept events as NDJSON until SIGINT", async () => {
    const child = spawn(process.execPath, [join(PROJECT_ROOT, "cli/bin/zectre.ts"), "--token", ciToken, "events", "--since", "0", "--filter", "job.*", "--format", "json"], {
      cwd: plane.root,
      env: { PATH: process.env.PATH ?? "", HOME: plane.root, NO_COLOR: "1", ZECTRE_CONFIG_DIR: join(plane.root, "config") },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    await waitUntil(() => stdout.split("\n").filter(Boolean).length >= 9, "three jobs' events", 20_000);
    child.kill("SIGINT");
    expect(await exited, stderr).toBe(0);
    const printed = stdout.split("\n").filter(Boolean).map((line) => JSON.parse(line) as OrgEvent);
    expect(printed.every((e) => e.type.startsWith("job."))).toBe(true);
    expect(printed.filter((e) => e.type === "job.finished")).toHaveLength(3);
  });

  it("zectre audit lists the job creation with the token's name", async () => {
    const res = await cli("audit", "--since", "1h");
    expect(res.code, res.stderr).toBe(0);
    const [header, ...rows] = res.stdout.split("\n").filter(Boolean);
    expect(header).toMatch(/^TIME\s+ACTOR\s+ACTION\s+TARGET\s+STATUS\s+IP$/);
    const jobRows = rows.filter((row) => row.includes("POST /jobs "));
    expect(jobRows).toHaveLength(3);
    for (const row of jobRows) expect(row).toMatch(/^\S+Z\s+e2e-ci \([0-9a-f]{16}\)\s+POST \/jobs\s+\d+\s+202\s+\S+$/);
    expect(rows.some((row) => /POST \/tokens\s+[0-9a-f]{16}\s+201/.test(row))).toBe(true);
    const json = JSON.parse((await cli("audit", "--format", "json")).stdout) as { entries: Array<{ action: string; tokenName: string | null }> };
    expect(json.entries.filter((e) => e.action === "POST /jobs").every((e) => e.tokenName === "e2e-ci")).toBe(true);
  });
});
