import { directTaskUrl } from "../../protocol/direct.ts";
import { endToEndHeaders, type RouteTask } from "../../protocol/tunnel.ts";
import { log } from "../lib/log.ts";
import type { ProxyEnv } from "./env.ts";
import { TtlCache } from "./resolve.ts";

/**
 * Direct nodes: the proxy fetches their tasks itself, at the address an admin
 * gave the node, instead of asking the node object to carry the request through
 * the agent's tunnel. The host and port always come from the control plane (the
 * org's node directory and the app's route answer), never from the request.
 */

/** Node id → address, per org; like routes, at most 2 s stale, so `zectre node direct --off` lands within that. */
const directNodes = new TtlCache<Readonly<Record<string, string>>>(10_000);
const NONE: Readonly<Record<string, string>> = Object.freeze({});

/**
 * The org's direct nodes. A failed lookup means none (and is not cached): every
 * task is then reached through its tunnel, which is always correct, only slower.
 */
export async function directAddresses(env: ProxyEnv, org: string, now: number = Date.now()): Promise<Readonly<Record<string, string>>> {
  const cached = directNodes.get(org, now);
  if (cached !== undefined) return cached;
  try {
    const found = await env.ORG.get(env.ORG.idFromName(org)).directNodes();
    const value = Object.keys(found).length === 0 ? NONE : found;
    directNodes.set(org, value, now);
    return value;
  } catch (error) {
    log("warn", "proxy", "direct nodes lookup failed; using the tunnels", { org, error: String(error) });
    return NONE;
  }
}

export type DirectOutcome =
  | { kind: "response"; response: Response }
  /** No response headers within the timeout: the app has the request and is slow. */
  | { kind: "timeout" }
  /** The fetch failed before any response (nothing listening, no route, connection lost): the tunnel may be tried. */
  | { kind: "unreachable"; error: string };

/**
 * One request to a task on a direct node, with the same forwarded headers the
 * tunnel sends. Bodies stream both ways; the timeout covers the wait for the
 * response headers only. The app sees the node's address as Host (a Worker's
 * fetch sets Host from the URL); the client's host is in X-Forwarded-Host.
 */
export async function fetchDirect(address: string, task: RouteTask, request: Request, headers: Headers, timeoutMs: number): Promise<DirectOutcome> {
  const url = new URL(request.url);
  const target = directTaskUrl(address, task.hostPort, `${url.pathname}${url.search}`);
  if (target === null) return { kind: "unreachable", error: `address '${address}' and port ${task.hostPort} make no URL` };
  const sent = new Headers(headers);
  sent.delete("host");
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const response = await fetch(target, { method: request.method, headers: sent, body: request.body, redirect: "manual", signal: controller.signal });
    return { kind: "response", response: withoutHopByHop(response) };
  } catch (error) {
    return controller.signal.aborted ? { kind: "timeout" } : { kind: "unreachable", error: String(error) };
  } finally {
    clearTimeout(timer);
  }
}

/** The app's answer without hop-by-hop fields, as the tunnel passes it; a WebSocket handshake goes on as it is. */
function withoutHopByHop(response: Response): Response {
  if (response.status === 101 || response.webSocket) return response;
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers: new Headers(endToEndHeaders(response.headers)) });
}
