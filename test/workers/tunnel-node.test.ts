import { describe, expect, it } from "vitest";
import {
  creditFrame,
  encodeFrame,
  FRAME,
  INITIAL_WINDOW_BYTES,
  MAX_CHUNK_BYTES,
  parseCredit,
  parseJsonPayload,
  ResetPayload,
  resetFrame,
  responseFrame,
  textOf,
  TUNNEL_ERROR_HEADER,
  tunnelRequestUrl,
  wsCloseFrame,
  wsMessageFrame,
} from "../../protocol/tunnel.ts";
import { createOrg } from "./helpers.ts";
import { answer, knowTask, nodeObject, openOf, tunnelAgent } from "./tunnel-agent.ts";

/** The node object's side of the tunnel, against a test agent that answers frames by hand. */

const TASK = "t0000000000aa";

async function setup(nodeId = "web-1") {
  const org = await createOrg("tun");
  const agent = await tunnelAgent(org.adminToken, org.name, nodeId);
  await knowTask(org.name, nodeId, TASK, "web");
  const node = nodeObject(org.name, nodeId);
  const url = (extra: Partial<{ app: string; taskId: string; port: number; timeoutMs: number; path: string }> = {}) =>
    tunnelRequestUrl({ app: "web", taskId: TASK, port: 41000, timeoutMs: 5000, path: "/hello?x=1", ...extra });
  return { org, agent, node, url };
}

describe("node object tunnel", () => {
  it("frames a GET as OPEN with method, path, headers, task and port, and streams the answer back", async () => {
    const { agent, node, url } = await setup();
    const pending = node.fetch(url(), { headers: { accept: "text/plain", connection: "keep-alive, x-hop", "x-hop": "1" } });
    const openFrame = await agent.frame(FRAME.open);
    const open = openOf(openFrame);
    expect(open).toMatchObject({ method: "GET", path: "/hello?x=1", taskId: TASK, port: 41000 });
    expect(open.headers).toContainEqual(["accept", "text/plain"]);
    expect(open.headers.map(([name]) => name)).not.toContain("x-hop");
    expect(open.headers.map(([name]) => name)).not.toContain("connection");
    // A GET has no body: END follows at once.
    await agent.frame(FRAME.end, openFrame.streamId);
    answer(agent, openFrame.streamId, 201, "hi there", [["x-app", "yes"], [TUNNEL_ERROR_HEADER, "offline"]]);
    const res = await pending;
    expect(res.status).toBe(201);
    expect(res.headers.get("x-app")).toBe("yes");
    // The app cannot pose as the tunnel.
    expect(res.headers.get(TUNNEL_ERROR_HEADER)).toBeNull();
    expect(await res.text()).toBe("hi there");
  });

  it("refuses tasks it never sent to this node, or sent for another app", async () => {
    const { agent, node, url } = await setup();
    const unknown = await node.fetch(url({ taskId: "t0000000000zz" }));
    expect(unknown.status).toBe(502);
    expect(unknown.headers.get(TUNNEL_ERROR_HEADER)).toBe("unknown_task");
    const otherApp = await node.fetch(url({ app: "other" }));
    expect(otherApp.headers.get(TUNNEL_ERROR_HEADER)).toBe("unknown_task");
    expect(agent.frames.filter((f) => f.type === FRAME.open)).toHaveLength(0);
  });

  it("answers offline when no agent is connected", async () => {
    const { agent, node, url } = await setup();
    agent.ws.close(1000, "bye");
    await agent.closed;
    await new Promise((r) => setTimeout(r, 50));
    const res = await node.fetch(url());
    expect(res.headers.get(TUNNEL_ERROR_HEADER)).toBe("offline");
  });

  it("passes the agent's refusal on as a typed error", async () => {
    const { agent, node, url } = await setup();
    const pending = node.fetch(url());
    const open = await agent.frame(FRAME.open);
    agent.send(resetFrame(open.streamId, "refused", "port 41000 is not a task's"));
    const res = await pending;
    expect(res.status).toBe(502);
    expect(res.headers.get(TUNNEL_ERROR_HEADER)).toBe("refused");
    expect(await res.text()).toContain("port 41000 is not a task's");
  });

  it("answers 504 and resets the stream when the app does not answer in time", async () => {
    const { agent, node, url } = await setup();
    const res = await node.fetch(url({ timeoutMs: 200 }));
    expect(res.status).toBe(504);
    expect(res.headers.get(TUNNEL_ERROR_HEADER)).toBe("timeout");
    const open = await agent.frame(FRAME.open);
    const reset = await agent.frame(FRAME.reset, open.streamId);
    expect(parseJsonPayload(ResetPayload, reset.payload)?.code).toBe("timeout");
  });

  it("does not time out an upload that keeps making progress; the timeout counts from its end", async () => {
    const { agent, node, url } = await setup();
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        await new Promise((r) => setTimeout(r, 100));
        if (sent++ === 6) return controller.close();
        controller.enqueue(new Uint8Array(10));
      },
    });
    const pending = node.fetch(url({ timeoutMs: 300, path: "/upload" }), { method: "POST", body });
    const open = await agent.frame(FRAME.open);
    await agent.frame(FRAME.end, open.streamId);
    // 600 ms of upload, twice the timeout, and no 504: now the app has 300 ms to answer.
    answer(agent, open.streamId, 200, "got it");
    const res = await pending;
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("got it");
  });

  it("sends a request body in chunks of at most 64 KiB, never beyond the credit the agent granted", async () => {
    const { agent, node, url } = await setup();
    const total = INITIAL_WINDOW_BYTES + 3 * MAX_CHUNK_BYTES + 17;
    const body = new Uint8Array(total).map((_, i) => i % 251);
    const pending = node.fetch(url({ path: "/upload" }), { method: "POST", body });
    const open = await agent.frame(FRAME.open);
    const sum = () => agent.frames.filter((f) => f.type === FRAME.data && f.streamId === open.streamId).reduce((n, f) => n + f.payload.byteLength, 0);
    // Stalls at the initial window until credit comes.
    for (let i = 0; i < 100 && sum() < INITIAL_WINDOW_BYTES; i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 50));
    expect(sum()).toBe(INITIAL_WINDOW_BYTES);
    agent.send(creditFrame(open.streamId, total - INITIAL_WINDOW_BYTES));
    await agent.frame(FRAME.end, open.streamId);
    const data = agent.frames.filter((f) => f.type === FRAME.data && f.streamId === open.streamId);
    expect(Math.max(...data.map((f) => f.payload.byteLength))).toBeLessThanOrEqual(MAX_CHUNK_BYTES);
    const received = new Uint8Array(total);
    let offset = 0;
    for (const f of data) {
      received.set(f.payload, offset);
      offset += f.payload.byteLength;
    }
    expect(offset).toBe(total);
    expect(received).toEqual(body);
    answer(agent, open.streamId, 200, "ok");
    expect(await (await pending).text()).toBe("ok");
  });

  it("grants credit for the response body only as it is read", async () => {
    const { agent, node, url } = await setup();
    const pending = node.fetch(url());
    const open = await agent.frame(FRAME.open);
    agent.send(responseFrame(open.streamId, { status: 200, headers: [] }));
    const res = await pending;
    const chunk = new Uint8Array(MAX_CHUNK_BYTES).fill(7);
    for (let i = 0; i < INITIAL_WINDOW_BYTES / MAX_CHUNK_BYTES; i++) agent.send(encodeFrame(FRAME.data, open.streamId, chunk));
    await new Promise((r) => setTimeout(r, 50));
    expect(agent.frames.filter((f) => f.type === FRAME.credit)).toHaveLength(0);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    let read = 0;
    while (read < INITIAL_WINDOW_BYTES / 2) read += (await reader.read()).value?.byteLength ?? 0;
    const credit = await agent.frame(FRAME.credit, open.streamId);
    expect(parseCredit(credit.payload)).toBeGreaterThanOrEqual(INITIAL_WINDOW_BYTES / 4);
    agent.send(encodeFrame(FRAME.end, open.streamId));
    while (!(await reader.read()).done) {
      // drain
    }
  });

  it("errors the response body when the agent disconnects mid-response (never a silent short body)", async () => {
    const { agent, node, url } = await setup();
    const pending = node.fetch(url());
    const open = await agent.frame(FRAME.open);
    agent.send(responseFrame(open.streamId, { status: 200, headers: [["content-type", "text/plain"]] }));
    agent.send(encodeFrame(FRAME.data, open.streamId, new TextEncoder().encode("partial")));
    const res = await pending;
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    expect(textOf((await reader.read()).value ?? new Uint8Array())).toBe("partial");
    agent.ws.close(1001, "agent going away");
    await expect(reader.read()).rejects.toThrow();
  });

  it("errors the response body when the agent resets it after the headers (app crashed)", async () => {
    const { agent, node, url } = await setup();
    const pending = node.fetch(url());
    const open = await agent.frame(FRAME.open);
    agent.send(responseFrame(open.streamId, { status: 200, headers: [["content-length", "100"]] }));
    agent.send(encodeFrame(FRAME.data, open.streamId, new TextEncoder().encode("only ten b")));
    const res = await pending;
    agent.send(resetFrame(open.streamId, "aborted", "the app's response broke off"));
    await expect(res.text()).rejects.toThrow();
  });

  it("carries many streams over one socket at once", async () => {
    const { agent, node, url } = await setup();
    const pendings = Array.from({ length: 20 }, (_, i) => node.fetch(url({ path: `/n/${i}` })));
    for (let i = 0; i < 200 && agent.frames.filter((f) => f.type === FRAME.open).length < 20; i++) await new Promise((r) => setTimeout(r, 10));
    const opens = agent.frames.filter((f) => f.type === FRAME.open);
    expect(new Set(opens.map((f) => f.streamId)).size).toBe(20);
    // Answered in reverse order: each response still finds its own request.
    for (const open of [...opens].reverse()) answer(agent, open.streamId, 200, openOf(open).path);
    const bodies = await Promise.all(pendings.map(async (p) => (await p).text()));
    expect(bodies).toEqual(Array.from({ length: 20 }, (_, i) => `/n/${i}`));
  });

  it("relays a WebSocket both ways once the agent reports the upgrade", async () => {
    const { agent, node, url } = await setup();
    const pending = node.fetch(url({ path: "/ws" }), { headers: { upgrade: "websocket" } });
    const open = await agent.frame(FRAME.open);
    expect(openOf(open).upgrade).toBe("websocket");
    agent.send(responseFrame(open.streamId, { status: 101, headers: [] }));
    const res = await pending;
    expect(res.status).toBe(101);
    const client = res.webSocket as WebSocket;
    client.accept();
    const received: string[] = [];
    client.addEventListener("message", (event) => received.push(event.data as string));
    const closed = new Promise<number>((resolve) => client.addEventListener("close", (event) => resolve(event.code)));
    client.send("ping");
    const message = await agent.frame(FRAME.wsMessage, open.streamId);
    expect(textOf(message.payload.subarray(1))).toBe("ping");
    agent.send(wsMessageFrame(open.streamId, "pong"));
    for (let i = 0; i < 100 && received.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(received).toEqual(["pong"]);
    agent.send(wsCloseFrame(open.streamId, 4000, "done"));
    expect(await closed).toBe(4000);
  });

  it("ignores frames for unknown streams, answers a malformed frame with a typed error, and keeps JSON messages working", async () => {
    const { agent } = await setup();
    const from = agent.messages.length;
    agent.send(encodeFrame(FRAME.data, 12345, new Uint8Array([1, 2, 3])));
    agent.send(new Uint8Array([1, 2]));
    agent.ws.send("not json");
    for (let i = 0; i < 100 && agent.messages.length < from + 2; i++) await new Promise((r) => setTimeout(r, 10));
    expect(agent.messages.slice(from)).toEqual([
      expect.objectContaining({ type: "error", code: "invalid_message", message: expect.stringContaining("malformed tunnel frame") }),
      expect.objectContaining({ type: "error", code: "invalid_json" }),
    ]);
  });
});
