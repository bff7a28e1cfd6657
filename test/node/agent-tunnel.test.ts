import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocketServer } from "ws";
import {
  creditFrame,
  encodeFrame,
  FRAME,
  INITIAL_WINDOW_BYTES,
  MAX_CHUNK_BYTES,
  type OpenPayload,
  openFrame,
  parseJsonPayload,
  parseWsClose,
  parseWsMessage,
  ResetPayload,
  ResponsePayload,
  textOf,
  wsCloseFrame,
  wsMessageFrame,
} from "../../protocol/tunnel.ts";
import { collectingTunnel } from "./helpers/agent-tunnel.ts";

/** The agent's tunnel against a real local HTTP server standing in for a task. */

const TASK = "t0000000000aa";
let server: Server;
let port: number;
let closedPort: number;
const seen: Array<{ method: string; url: string; headers: IncomingMessage["headers"] }> = [];
const aborted: string[] = [];
const appCloses: number[] = [];

function handle(req: IncomingMessage, res: ServerResponse): void {
  seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers });
  req.on("close", () => {
    if (!res.writableEnded) aborted.push(req.url ?? "");
  });
  if (req.url === "/upload") {
    const hash = createHash("sha256");
    let bytes = 0;
    req.on("data", (chunk: Buffer) => {
      bytes += chunk.byteLength;
      hash.update(chunk);
    });
    req.on("end", () => res.end(JSON.stringify({ bytes, sha256: hash.digest("hex") })));
    return;
  }
  if (req.url === "/big") {
    res.writeHead(200, { "content-length": String(3 * INITIAL_WINDOW_BYTES) });
    res.end(Buffer.alloc(3 * INITIAL_WINDOW_BYTES, 7));
    return;
  }
  if (req.url === "/crash") {
    res.writeHead(200, { "content-type": "text/plain" });
    res.write("half of it");
    setTimeout(() => res.socket?.destroy(), 50);
    return;
  }
  if (req.url === "/hang") return;
  res.writeHead(200, { "content-type": "text/plain", "x-app": "yes", connection: "keep-alive" });
  res.end(`hello ${req.url}`);
}

beforeAll(async () => {
  server = createServer(handle);
  const wss = new WebSocketServer({ server });
  wss.on("connection", (socket, req) => {
    socket.on("message", (data, isBinary) => {
      if (!isBinary && data.toString() === "close me") return socket.close(4001, "as asked");
      socket.send(isBinary ? data : `echo ${req.url} ${data.toString()}`, { binary: isBinary });
    });
    socket.on("close", (code) => appCloses.push(code));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  port = (server.address() as AddressInfo).port;
  const spare = createServer();
  await new Promise<void>((r) => spare.listen(0, "127.0.0.1", r));
  closedPort = (spare.address() as AddressInfo).port;
  await new Promise<void>((r) => spare.close(() => r()));
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

/** A tunnel whose frames to the node object are collected; `allowed` are the (task, port) pairs it may reach. */
function harness(allowed: Array<[string, number]>) {
  const { tunnel, frames } = collectingTunnel({ allows: (taskId, p) => allowed.some(([t, q]) => t === taskId && q === p) });
  let nextId = 1;
  const open = (fields: Partial<OpenPayload> = {}) => {
    const id = nextId++;
    tunnel.handleFrame(openFrame(id, { method: "GET", path: "/", headers: [["host", "app.example"]], taskId: TASK, port, ...fields }));
    return id;
  };
  const waitFor = async (type: number, id: number) => {
    for (let i = 0; i < 500; i++) {
      const found = frames.find((f) => f.type === type && f.streamId === id);
      if (found) return found;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`no frame ${type} on stream ${id}; got ${frames.map((f) => `${f.type}@${f.streamId}`).join(",")}`);
  };
  const body = (id: number) => Buffer.concat(frames.filter((f) => f.type === FRAME.data && f.streamId === id).map((f) => f.payload));
  return { tunnel, frames, open, waitFor, body };
}

describe("agent tunnel", () => {
  it("makes the request to 127.0.0.1:<port>, keeps the client's Host, and streams the answer back without hop-by-hop fields", async () => {
    const h = harness([[TASK, port]]);
    const id = h.open({ path: "/hi?x=1", headers: [["host", "app.example"], ["accept", "text/plain"]] });
    h.tunnel.handleFrame(encodeFrame(FRAME.end, id));
    const response = parseJsonPayload(ResponsePayload, (await h.waitFor(FRAME.response, id)).payload);
    await h.waitFor(FRAME.end, id);
    expect(response?.status).toBe(200);
    expect(response?.headers).toContainEqual(["x-app", "yes"]);
    expect(response?.headers.map(([name]) => name)).not.toContain("connection");
    expect(h.body(id).toString()).toBe("hello /hi?x=1");
    expect(seen.find((s) => s.url === "/hi?x=1")?.headers.host).toBe("app.example");
    expect(h.tunnel.openStreams).toBe(0);
  });

  it("refuses a port that is not the task's, and an unknown task, without touching the port", async () => {
    const h = harness([[TASK, port + 1]]);
    const before = seen.length;
    const wrongPort = h.open({ path: "/should-not-arrive" });
    const wrongTask = h.open({ taskId: "t0000000000zz", port: port + 1 });
    for (const id of [wrongPort, wrongTask]) {
      const reset = parseJsonPayload(ResetPayload, (await h.waitFor(FRAME.reset, id)).payload);
      expect(reset?.code).toBe("refused");
    }
    await new Promise((r) => setTimeout(r, 50));
    expect(seen.length).toBe(before);
  });

  it("reports connect_failed when nothing listens on the task's port", async () => {
    const h = harness([[TASK, closedPort]]);
    const id = h.open({ port: closedPort });
    h.tunnel.handleFrame(encodeFrame(FRAME.end, id));
    expect(parseJsonPayload(ResetPayload, (await h.waitFor(FRAME.reset, id)).payload)?.code).toBe("connect_failed");
  });

  it("streams a request body in, crediting it back as the app's socket takes it", async () => {
    const h = harness([[TASK, port]]);
    const total = 5 * 1024 * 1024 + 3;
    const data = Buffer.alloc(total);
    for (let i = 0; i < total; i++) data[i] = (i * 31) % 256;
    const id = h.open({ method: "POST", path: "/upload", headers: [["host", "a"], ["content-length", String(total)]] });
    let sent = 0;
    let credit = INITIAL_WINDOW_BYTES;
    while (sent < total) {
      const credited = h.frames.filter((f) => f.type === FRAME.credit && f.streamId === id).reduce((n, f) => n + new DataView(f.payload.buffer).getUint32(0), 0);
      const room = INITIAL_WINDOW_BYTES + credited - sent;
      if (room <= 0) {
        await new Promise((r) => setTimeout(r, 2));
        continue;
      }
      credit = Math.max(credit, INITIAL_WINDOW_BYTES + credited);
      const n = Math.min(room, MAX_CHUNK_BYTES, total - sent);
      h.tunnel.handleFrame(encodeFrame(FRAME.data, id, data.subarray(sent, sent + n)));
      sent += n;
    }
    h.tunnel.handleFrame(encodeFrame(FRAME.end, id));
    await h.waitFor(FRAME.end, id);
    expect(JSON.parse(h.body(id).toString())).toEqual({ bytes: total, sha256: createHash("sha256").update(data).digest("hex") });
    expect(credit).toBeGreaterThan(INITIAL_WINDOW_BYTES);
  });

  it("sends a response body no faster than the node object grants credit", async () => {
    const h = harness([[TASK, port]]);
    const id = h.open({ path: "/big" });
    h.tunnel.handleFrame(encodeFrame(FRAME.end, id));
    await h.waitFor(FRAME.response, id);
    await new Promise((r) => setTimeout(r, 200));
    expect(h.body(id).byteLength).toBe(INITIAL_WINDOW_BYTES);
    expect(Math.max(...h.frames.filter((f) => f.type === FRAME.data).map((f) => f.payload.byteLength))).toBeLessThanOrEqual(MAX_CHUNK_BYTES);
    h.tunnel.handleFrame(creditFrame(id, 2 * INITIAL_WINDOW_BYTES));
    await h.waitFor(FRAME.end, id);
    expect(h.body(id).byteLength).toBe(3 * INITIAL_WINDOW_BYTES);
  });

  it("resets the stream (aborted) when the app dies mid-response, after the bytes it did send", async () => {
    const h = harness([[TASK, port]]);
    const id = h.open({ path: "/crash" });
    h.tunnel.handleFrame(encodeFrame(FRAME.end, id));
    const reset = parseJsonPayload(ResetPayload, (await h.waitFor(FRAME.reset, id)).payload);
    expect(reset?.code).toBe("aborted");
    expect(h.body(id).toString()).toBe("half of it");
    expect(h.frames.some((f) => f.type === FRAME.end && f.streamId === id)).toBe(false);
  });

  it("abandons the app's request on RESET, and every request when the connection drops", async () => {
    const h = harness([[TASK, port]]);
    const one = h.open({ path: "/hang" });
    h.tunnel.handleFrame(encodeFrame(FRAME.end, one));
    const two = h.open({ path: "/hang" });
    h.tunnel.handleFrame(encodeFrame(FRAME.end, two));
    for (let i = 0; i < 100 && seen.filter((s) => s.url === "/hang").length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    h.tunnel.handleFrame(encodeFrame(FRAME.reset, one, new TextEncoder().encode('{"code":"timeout","message":"x"}')));
    expect(h.tunnel.openStreams).toBe(1);
    h.tunnel.closeAll();
    expect(h.tunnel.openStreams).toBe(0);
    for (let i = 0; i < 100 && aborted.filter((u) => u === "/hang").length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    expect(aborted.filter((u) => u === "/hang")).toHaveLength(2);
  });

  it("relays a WebSocket to ws://127.0.0.1:<port><path>, text and binary, and its close", async () => {
    const h = harness([[TASK, port]]);
    const id = h.open({ path: "/chat", upgrade: "websocket", headers: [["host", "a"], ["sec-websocket-key", "client-key=="]] });
    const response = parseJsonPayload(ResponsePayload, (await h.waitFor(FRAME.response, id)).payload);
    expect(response?.status).toBe(101);
    h.tunnel.handleFrame(wsMessageFrame(id, "hi"));
    h.tunnel.handleFrame(wsMessageFrame(id, new Uint8Array([1, 2, 3])));
    for (let i = 0; i < 200 && h.frames.filter((f) => f.type === FRAME.wsMessage).length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    const messages = h.frames.filter((f) => f.type === FRAME.wsMessage).map((f) => parseWsMessage(f.payload));
    expect(messages[0]?.binary).toBe(false);
    expect(textOf(messages[0]?.data ?? new Uint8Array())).toBe("echo /chat hi");
    expect(messages[1]?.binary).toBe(true);
    expect([...(messages[1]?.data ?? [])]).toEqual([1, 2, 3]);
    // The app closes: the close reaches the node object.
    h.tunnel.handleFrame(wsMessageFrame(id, "close me"));
    expect(parseWsClose((await h.waitFor(FRAME.wsClose, id)).payload)).toEqual({ code: 4001, reason: "as asked" });
    expect(h.tunnel.openStreams).toBe(0);
  });

  it("closes the app's socket with the client's code when the client closes", async () => {
    const h = harness([[TASK, port]]);
    const id = h.open({ path: "/chat", upgrade: "websocket" });
    await h.waitFor(FRAME.response, id);
    const before = appCloses.length;
    h.tunnel.handleFrame(wsCloseFrame(id, 4000, "bye"));
    for (let i = 0; i < 200 && appCloses.length === before; i++) await new Promise((r) => setTimeout(r, 10));
    expect(appCloses.slice(before)).toEqual([4000]);
  });

  it("never opens a WebSocket to a port that is not the task's", async () => {
    const h = harness([[TASK, port + 1]]);
    const id = h.open({ path: "/chat", upgrade: "websocket" });
    expect(parseJsonPayload(ResetPayload, (await h.waitFor(FRAME.reset, id)).payload)?.code).toBe("refused");
  });
});
