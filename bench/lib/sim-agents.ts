import { createPublicKey, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import WebSocket from "ws";
import { PING_FRAME } from "../../protocol/agent-wire.ts";
import { connectSigningInput, type Facts } from "../../protocol/nodes.ts";
import { mapPool } from "./pool.ts";

/** Simulated agents: the real enrollment and handshake, and instant answers to `test.ping`. */

export interface SimAgent {
  nodeId: string;
  key: KeyObject;
  publicKey: string;
}

const FACTS: Facts = {
  os: "linux", osRelease: "bench", arch: "x64", kernel: "bench", hostname: "bench", cpuCount: 2, cpuModel: "bench",
  memoryBytes: 1, disk: [], ipAddresses: [], agentVersion: "bench", nodeVersion: process.version, custom: {},
};

export function makeAgents(n: number, prefix = "sim"): SimAgent[] {
  return Array.from({ length: n }, (_, i) => {
    const { privateKey } = generateKeyPairSync("ed25519");
    const x = createPublicKey(privateKey).export({ format: "jwk" }).x as string;
    return { nodeId: `${prefix}-${String(i).padStart(5, "0")}`, key: privateKey, publicKey: x };
  });
}

export async function postJson<T>(url: string, body: unknown, token?: string): Promise<T> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

export async function enrollAll(apiUrl: string, adminToken: string, agents: readonly SimAgent[]): Promise<void> {
  const { token } = await postJson<{ token: string }>(`${apiUrl}/api/v1/enrollment-tokens`, { uses: agents.length, autoApprove: true }, adminToken);
  await mapPool(agents, 16, (a) => postJson(`${apiUrl}/api/v1/agent/enroll`, { v: 1, token, nodeId: a.nodeId, publicKey: a.publicKey, facts: FACTS }));
}

/** Opens the socket; resolves on the server's first message, and heartbeats from then on as the real agent does. */
export function openUntilFirstMessage(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once("message", (data) => {
      keepAlive(ws, data);
      resolve(ws);
    });
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
}

/**
 * Without heartbeats a node object marks its agent offline after three missed
 * intervals, and a slow enrollment of a thousand agents takes longer than that.
 * Only `welcome` carries the interval; other first messages (a plain echo server) need none.
 */
function keepAlive(ws: WebSocket, first: WebSocket.RawData): void {
  let seconds = 0;
  try {
    seconds = Number((JSON.parse(String(first)) as { heartbeatSeconds?: number }).heartbeatSeconds ?? 0);
  } catch {
    return;
  }
  if (!(seconds > 0)) return;
  const timer = setInterval(() => {
    if (ws.readyState === WebSocket.OPEN) ws.send(PING_FRAME);
  }, seconds * 1000);
  timer.unref();
  ws.once("close", () => clearInterval(timer));
}

export async function challengeAndConnect(apiUrl: string, org: string, agent: SimAgent): Promise<WebSocket> {
  const { nonce } = await postJson<{ nonce: string }>(`${apiUrl}/api/v1/agent/challenge`, { v: 1, org, nodeId: agent.nodeId });
  const sig = sign(null, connectSigningInput(org, agent.nodeId, nonce), agent.key).toString("base64url");
  const query = new URLSearchParams({ org, node: agent.nodeId, nonce, sig });
  return openUntilFirstMessage(`${apiUrl.replace(/^http/, "ws")}/api/v1/agent/connect?${query}`);
}

let returnCounter = 0;

/**
 * Acks every action; answers a `job.dispatch` with a successful return at once, like `test.ping`.
 * Like the real agent (agent/src/pending-acks.ts), a dispatch's ack rides on its return.
 */
export function answerPings(ws: WebSocket): void {
  ws.on("message", (data) => {
    const message = JSON.parse(String(data)) as { type: string; id?: string; action?: { kind: string; jid?: string; epoch?: number } };
    if (message.type !== "action" || !message.id || !message.action) return;
    if (message.action.kind !== "job.dispatch") {
      ws.send(JSON.stringify({ type: "ack", v: 1, ids: [message.id] }));
      return;
    }
    ws.send(
      JSON.stringify({
        type: "return", v: 1, id: `sim-ret-${++returnCounter}`, jid: message.action.jid, epoch: message.action.epoch,
        return: { success: true, retcode: 0, result: true, error: null, durationMs: 0, startedAt: null },
        acks: [message.id],
      }),
    );
  });
}
