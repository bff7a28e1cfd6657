import { exports } from "cloudflare:workers";
import { toBase64Url } from "../../protocol/base64url.ts";
import { connectSigningInput, type Facts } from "../../protocol/nodes.ts";
import { call } from "./helpers.ts";

export const SAMPLE_FACTS: Facts = {
  os: "linux",
  osRelease: "Debian GNU/Linux 12 (bookworm)",
  arch: "x64",
  kernel: "6.1.0",
  hostname: "web-1",
  cpuCount: 4,
  cpuModel: "test cpu",
  memoryBytes: 8 * 1024 ** 3,
  disk: [{ mount: "/", totalBytes: 100, freeBytes: 50 }],
  ipAddresses: ["10.0.0.5"],
  agentVersion: "0.1.0",
  nodeVersion: "v22.23.3",
  custom: { role: "web" },
};

export interface TestAgent {
  nodeId: string;
  publicKey: string;
  sign(org: string, nonce: string): Promise<string>;
}

export async function makeAgent(nodeId: string): Promise<TestAgent> {
  const pair = (await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"])) as CryptoKeyPair;
  const raw = (await crypto.subtle.exportKey("raw", pair.publicKey)) as ArrayBuffer;
  return {
    nodeId,
    publicKey: toBase64Url(new Uint8Array(raw)),
    async sign(org, nonce) {
      const sig = await crypto.subtle.sign({ name: "Ed25519" }, pair.privateKey, connectSigningInput(org, nodeId, nonce));
      return toBase64Url(new Uint8Array(sig));
    },
  };
}

export async function enrollmentToken(adminToken: string, body: Record<string, unknown> = {}): Promise<string> {
  const res = await call<{ token: string }>("POST", "/api/v1/enrollment-tokens", { token: adminToken, body });
  if (res.status !== 201) throw new Error(`enrollment token: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.token;
}

export function enroll(agent: TestAgent, token: string, facts: Facts = SAMPLE_FACTS) {
  return call<{ org: string; nodeId: string; state: string; error?: { code: string; message: string } }>(
    "POST",
    "/api/v1/agent/enroll",
    { body: { v: 1, token, nodeId: agent.nodeId, publicKey: agent.publicKey, facts } },
  );
}

export async function challenge(org: string, nodeId: string) {
  return call<{ nonce: string; error?: { code: string; details?: { state: string } } }>("POST", "/api/v1/agent/challenge", {
    body: { v: 1, org, nodeId },
  });
}

/** A connected agent socket that records what the server sends and how it closes. */
export interface AgentSocket {
  ws: WebSocket;
  messages: Array<Record<string, unknown>>;
  closed: Promise<{ code: number; reason: string }>;
  next(type: string, from?: number): Promise<Record<string, unknown>>;
  send(value: unknown): void;
}

export async function connectRaw(org: string, nodeId: string, nonce: string, sig: string): Promise<Response> {
  const query = new URLSearchParams({ org, node: nodeId, nonce, sig });
  return exports.default.fetch(new Request(`http://api.test/api/v1/agent/connect?${query}`, { headers: { upgrade: "websocket" } }));
}

export async function connect(org: string, agent: TestAgent): Promise<AgentSocket> {
  const ch = await challenge(org, agent.nodeId);
  if (ch.status !== 200) throw new Error(`challenge: ${ch.status} ${JSON.stringify(ch.body)}`);
  const res = await connectRaw(org, agent.nodeId, ch.body.nonce, await agent.sign(org, ch.body.nonce));
  const ws = res.webSocket;
  if (res.status !== 101 || !ws) throw new Error(`connect: ${res.status} ${await res.text()}`);
  ws.accept();
  const messages: Array<Record<string, unknown>> = [];
  ws.addEventListener("message", (event) => messages.push(JSON.parse(event.data as string) as Record<string, unknown>));
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.addEventListener("close", (event) => resolve({ code: event.code, reason: event.reason })),
  );
  return {
    ws,
    messages,
    closed,
    async next(type, from = 0) {
      for (let i = 0; i < 200; i++) {
        const found = messages.slice(from).find((m) => m.type === type);
        if (found) return found;
        await new Promise((r) => setTimeout(r, 10));
      }
      throw new Error(`no '${type}' message; got ${JSON.stringify(messages)}`);
    },
    send(value) {
      ws.send(typeof value === "string" ? value : JSON.stringify(value));
    },
  };
}

/** Org, an approved agent, and its live socket. */
export async function onlineAgent(adminToken: string, org: string, nodeId: string) {
  const agent = await makeAgent(nodeId);
  const enrolled = await enroll(agent, await enrollmentToken(adminToken, { autoApprove: true }));
  if (enrolled.status !== 201) throw new Error(`enroll: ${JSON.stringify(enrolled.body)}`);
  const socket = await connect(org, agent);
  await socket.next("welcome");
  return { agent, socket };
}
