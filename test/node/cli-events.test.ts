import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type WebSocket, WebSocketServer } from "ws";
import type { Io } from "../../cli/src/io.ts";
import { main } from "../../cli/src/main.ts";
import type { AuditEntry, NewOrgEvent, OrgEvent } from "../../protocol/events.ts";
import { until } from "./helpers/deploy-cli.ts";
import { type CliResult, expectOk, expectOneErrorLine, isolatedEnv, lines, runInProcess, startBinary, useTempDirs } from "./helpers/run-cli.ts";

/** `zectre events` and `zectre audit` against a small stand-in for the events socket and the audit route. */

const TOKEN = `zt_acme_0123456789abcdef_${"a".repeat(64)}`;

interface FakeEventsServer {
  url: string;
  events: OrgEvent[];
  /** The `since` of each connection, null when absent. */
  connections: Array<string | null>;
  sockets: Set<WebSocket>;
  auditQueries: URLSearchParams[];
  audit: AuditEntry[];
  push(event: Omit<NewOrgEvent, "ts">): void;
  /** Drops every open socket without a close frame, as a network break does. */
  drop(): void;
  close(): Promise<void>;
}

async function startFake(): Promise<FakeEventsServer> {
  const fake = {
    events: [] as OrgEvent[],
    connections: [] as Array<string | null>,
    sockets: new Set<WebSocket>(),
    auditQueries: [] as URLSearchParams[],
    audit: [] as AuditEntry[],
  };
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      res.writeHead(401, { "content-type": "application/json" }).end(JSON.stringify({ error: { code: "unauthorized", message: "invalid, expired or revoked API token" } }));
    } else if (url.pathname === "/api/v1/audit") {
      fake.auditQueries.push(url.searchParams);
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ entries: fake.audit }));
    } else {
      res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: { code: "not_found", message: "no route" } }));
    }
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on("upgrade", (req: IncomingMessage, socket, head) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (url.pathname !== "/api/v1/events" || req.headers.authorization !== `Bearer ${TOKEN}`) {
      const body = JSON.stringify({ error: { code: "unauthorized", message: "invalid, expired or revoked API token" } });
      socket.end(`HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const since = url.searchParams.get("since");
      fake.connections.push(since);
      fake.sockets.add(ws);
      ws.on("close", () => fake.sockets.delete(ws));
      ws.send(JSON.stringify({ type: "ready", last: fake.events.at(-1)?.id ?? 0 }));
      if (since !== null) for (const event of fake.events.filter((e) => e.id > Number(since))) ws.send(JSON.stringify({ type: "event", event }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return Object.assign(fake, {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    push(event: Omit<NewOrgEvent, "ts">) {
      const stored: OrgEvent = { id: fake.events.length + 1, ts: "2026-11-23T10:00:00.000Z", ...event };
      fake.events.push(stored);
      for (const ws of fake.sockets) ws.send(JSON.stringify({ type: "event", event: stored }));
    },
    drop() {
      for (const ws of fake.sockets) ws.terminate();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const ws of fake.sockets) ws.terminate();
        wss.close();
        server.close(() => resolve());
      }),
  });
}

let fake: FakeEventsServer;
const tempDir = useTempDirs();
beforeEach(async () => {
  fake = await startFake();
});
afterEach(() => fake.close());

const args = (...rest: string[]) => ["--url", fake.url, "--token", TOKEN, ...rest];

/** Runs `main` in-process with a Ctrl-C the test can press; `seen` grows as the CLI writes. */
function runFollowing(argv: readonly string[]): { press(): void; result: Promise<CliResult>; seen(): string } {
  let stdout = "";
  let stderr = "";
  let handler: (() => void) | undefined;
  const io: Io = {
    stdout: { write: (chunk: string) => (stdout += chunk), isTTY: false },
    stderr: { write: (chunk: string) => (stderr += chunk), isTTY: false },
    env: isolatedEnv({ ZECTRE_CONFIG_DIR: tempDir() }),
    cwd: tempDir(),
    onInterrupt: (h) => {
      handler = h;
      return () => (handler = undefined);
    },
  };
  const result = main(argv, io).then((code) => ({ code, stdout, stderr }));
  return { press: () => handler?.(), result, seen: () => stdout };
}

describe("zectre events", () => {
  it("prints ID TIME TYPE summary lines, reconnects after a drop with the last id and misses nothing, and Ctrl-C exits 0", async () => {
    const run = runFollowing(args("events"));
    await until(() => fake.sockets.size === 1, "the socket to open");
    fake.push({ type: "node.online", data: { nodeId: "web-1" } });
    fake.push({ type: "job.created", data: { jid: "20261123100000000001", function: "test.ping", target: "web-*", targets: 2, user: "ci" } });
    await until(() => run.seen().includes("job.created"), "the live events");
    fake.drop();
    // Events while the client is away come from the server's backlog after the last id printed.
    fake.push({ type: "job.return", data: { jid: "20261123100000000001", nodeId: "web-1", success: true, synthetic: false } });
    await until(() => fake.sockets.size === 1 && fake.connections.length === 2, "the reconnect");
    fake.push({ type: "job.finished", data: { jid: "20261123100000000001", status: "failed", counts: { targets: 2, succeeded: 1 } } });
    fake.push({ type: "task.state", data: { app: "web", deploymentId: "dmwtta1wu3k9x", taskId: "tmwtta1wu3k9x", nodeId: "web-2", state: "healthy", hostPort: 41000 } });
    await until(() => run.seen().includes("task.state"), "events after the reconnect");
    run.press();
    const result = await run.result;
    expect(expectOk(result)).toBe(
      [
        "1 2026-11-23T10:00:00Z node.online web-1",
        "2 2026-11-23T10:00:00Z job.created 20261123100000000001 test.ping on web-* (2 targets) by ci",
        "3 2026-11-23T10:00:00Z job.return 20261123100000000001 web-1 ok",
        "4 2026-11-23T10:00:00Z job.finished 20261123100000000001 failed 1/2 succeeded",
        "5 2026-11-23T10:00:00Z task.state web/tmwtta1wu3k9x on web-2: healthy :41000",
        "",
      ].join("\n"),
    );
    expect(fake.connections).toEqual([null, "2"]);
  });

  it("reconnects from the id the first ready named when no event was printed yet", async () => {
    fake.push({ type: "node.online", data: { nodeId: "old" } });
    const run = runFollowing(args("events"));
    await until(() => fake.sockets.size === 1, "the socket to open");
    fake.drop();
    fake.push({ type: "node.offline", data: { nodeId: "gone-while-away" } });
    await until(() => run.seen().includes("gone-while-away"), "the missed event");
    run.press();
    expect(lines(expectOk(await run.result))).toEqual(["2 2026-11-23T10:00:00Z node.offline gone-while-away"]);
    expect(fake.connections).toEqual([null, "1"]);
  });

  it("--since asks for the backlog, --filter keeps matching types, --format json prints NDJSON, values are escaped", async () => {
    fake.push({ type: "node.online", data: { nodeId: "a" } });
    fake.push({ type: "job.created", data: { jid: "j1", function: "test.ping", target: "*", targets: 1, user: "ci" } });
    fake.push({ type: "deploy.scaled", data: { app: "web", deploymentId: "dmwtta1wu3k9x", replicas: 3, by: "ci" } });
    fake.push({ type: "node.offline", data: { nodeId: "evil\u001b[31m" } });
    const json = runFollowing(args("events", "--since", "0", "--filter", "deploy.*", "--filter", "node.off?ine", "--format", "json"));
    await until(() => json.seen().split("\n").length === 3, "two filtered events");
    json.press();
    const printed = lines(expectOk(await json.result)).map((line) => JSON.parse(line) as OrgEvent);
    expect(printed.map((e) => [e.id, e.type])).toEqual([[3, "deploy.scaled"], [4, "node.offline"]]);
    expect(fake.connections).toEqual(["0"]);

    const text = runFollowing(args("events", "--since", "2"));
    await until(() => text.seen().split("\n").length === 3, "the backlog");
    text.press();
    expect(lines(expectOk(await text.result))).toEqual([
      "3 2026-11-23T10:00:00Z deploy.scaled web dmwtta1wu3k9x replicas=3 by=ci",
      "4 2026-11-23T10:00:00Z node.offline evil\\x1b[31m",
    ]);
  });

  it("fails in one line on a refused token and on a bad --since", async () => {
    expectOneErrorLine(
      await runInProcess(["--url", fake.url, "--token", `zt_acme_0123456789abcdef_${"b".repeat(64)}`, "events"], { env: { ZECTRE_CONFIG_DIR: tempDir() } }),
      "zectre: error: invalid, expired or revoked API token (unauthorized)",
    );
    expectOneErrorLine(await runInProcess(args("events", "--since", "last"), { env: { ZECTRE_CONFIG_DIR: tempDir() } }), /invalid --since 'last': give an event id/);
    expect(fake.connections).toEqual([]);
  });

  it("in the shipped binary, stops on SIGINT with exit 0", async () => {
    const { child, result } = startBinary(args("events"), { env: { ZECTRE_CONFIG_DIR: tempDir() } });
    await until(() => fake.sockets.size === 1, "the socket to open", 10_000);
    fake.push({ type: "node.online", data: { nodeId: "web-1" } });
    let seen = "";
    child.stdout?.on("data", (chunk: Buffer | string) => (seen += String(chunk)));
    await until(() => seen.includes("node.online"), "the event", 10_000);
    child.kill("SIGINT");
    const done = await result;
    expect(done.code).toBe(0);
    expect(lines(done.stdout)).toEqual(["1 2026-11-23T10:00:00Z node.online web-1"]);
  });
});

describe("zectre audit", () => {
  const entry = (over: Partial<AuditEntry>): AuditEntry => ({
    id: 1, at: "2026-11-23T10:00:00.000Z", actor: "token:0123456789abcdef(ci)", tokenId: "0123456789abcdef", tokenName: "ci",
    action: "POST /jobs", target: "20261123100000000001", details: {}, ip: "203.0.113.9", requestId: "r1", status: 202, ...over,
  });

  it("prints TIME ACTOR ACTION TARGET STATUS IP and passes --since and --limit on", async () => {
    fake.audit = [entry({ id: 2 }), entry({ id: 1, actor: "node:web-1", tokenId: null, tokenName: null, action: "node.activate", target: "web-1", ip: null, status: null })];
    const out = expectOk(await runInProcess(args("audit", "--since", "1h", "-n", "5"), { env: { ZECTRE_CONFIG_DIR: tempDir() } }));
    expect(lines(out)).toEqual([
      "TIME                  ACTOR                  ACTION         TARGET                STATUS  IP",
      "2026-11-23T10:00:00Z  ci (0123456789abcdef)  POST /jobs     20261123100000000001  202     203.0.113.9",
      "2026-11-23T10:00:00Z  node:web-1             node.activate  web-1                 -       -",
    ]);
    expect(Object.fromEntries(fake.auditQueries[0] ?? [])).toEqual({ since: "1h", limit: "5" });
    const json = JSON.parse(expectOk(await runInProcess(args("audit", "--format", "json"), { env: { ZECTRE_CONFIG_DIR: tempDir() } }))) as { entries: AuditEntry[] };
    expect(json.entries.map((e) => e.id)).toEqual([2, 1]);
  });

  it("says so when there is nothing, and checks its options before asking", async () => {
    expect(expectOk(await runInProcess(args("audit"), { env: { ZECTRE_CONFIG_DIR: tempDir() } }))).toBe("No audit entries.\n");
    expectOneErrorLine(await runInProcess(args("audit", "--since", "yesterday"), { env: { ZECTRE_CONFIG_DIR: tempDir() } }), /invalid --since 'yesterday'/);
    expectOneErrorLine(await runInProcess(args("audit", "-n", "0"), { env: { ZECTRE_CONFIG_DIR: tempDir() } }), /invalid --limit '0': give a whole number from 1 to 1000/);
    expect(fake.auditQueries).toHaveLength(1);
  });
});
