import {
  endToEndHeaders,
  RETRYABLE_TUNNEL_ERRORS,
  type RouteTask,
  TUNNEL_ERROR_HEADER,
  tunnelRequestUrl,
} from "../../protocol/tunnel.ts";
import { log } from "../lib/log.ts";
import { nodeStub } from "../../durable-objects/env.ts";
import { directAddresses, fetchDirect } from "./direct.ts";
import { type ProxyEnv, timeoutMs } from "./env.ts";
import { page } from "./pages.ts";
import type { HostTarget } from "./resolve.ts";

/** Methods that may be sent to a second task when the first could not be reached. */
const SAFE_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS"]);
/** Fields the client may not set for the app: the proxy sets them itself. */
const FORWARDED = ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded"];

/** The request as the app should see it: end-to-end headers, and who really asked. */
export function forwardedHeaders(request: Request, url: URL): Headers {
  const headers = new Headers(endToEndHeaders(request.headers));
  for (const name of FORWARDED) headers.delete(name);
  headers.set("x-forwarded-for", request.headers.get("cf-connecting-ip") ?? "127.0.0.1");
  headers.set("x-forwarded-proto", url.protocol.replace(":", ""));
  headers.set("x-forwarded-host", request.headers.get("host") ?? url.host);
  if (request.headers.get("upgrade")?.toLowerCase() === "websocket") headers.set("upgrade", "websocket");
  return headers;
}

/**
 * Tries the tasks in order: a task whose node or agent could not take the
 * request is skipped for the next one, but only for safe methods (anything else
 * may have had side effects, or its body is already spent). A task on a direct
 * node is fetched at its node's address first; when that cannot connect, a safe
 * request goes on through the same task's tunnel.
 */
export async function forward(env: ProxyEnv, request: Request, target: HostTarget, tasks: readonly RouteTask[]): Promise<Response> {
  const url = new URL(request.url);
  const headers = forwardedHeaders(request, url);
  const safe = SAFE_METHODS.has(request.method);
  const attempts = safe ? tasks.slice(0, 3) : tasks.slice(0, 1);
  const direct = await directAddresses(env, target.org);
  let last: Response | null = null;
  for (const task of attempts) {
    // Own keys only: a node may be called "constructor".
    const address = Object.hasOwn(direct, task.nodeId) ? direct[task.nodeId] : undefined;
    if (address !== undefined) {
      const outcome = await fetchDirect(address, task, request, headers, timeoutMs(env));
      if (outcome.kind === "response") return outcome.response;
      if (outcome.kind === "timeout") return page("timeout", `the app did not answer within ${timeoutMs(env) / 1000} s`);
      log("warn", "proxy", safe ? "direct fetch failed; trying the tunnel" : "direct fetch failed", { org: target.org, nodeId: task.nodeId, address, taskId: task.taskId, error: outcome.error });
      if (!safe) return page("bad_gateway", "the app's task could not be reached at its node's direct address");
    }
    const node = nodeStub(env, target.org, task.nodeId);
    const internal = tunnelRequestUrl({ app: target.app, taskId: task.taskId, port: task.hostPort, timeoutMs: timeoutMs(env), path: `${url.pathname}${url.search}` });
    let response: Response;
    try {
      response = await node.fetch(internal, { method: request.method, headers, body: request.body });
    } catch (error) {
      log("warn", "proxy", "node object unreachable", { org: target.org, nodeId: task.nodeId, error: String(error) });
      continue;
    }
    const tunnelError = response.headers.get(TUNNEL_ERROR_HEADER);
    if (tunnelError === null) return passOn(response);
    log("warn", "proxy", "tunnel error", { org: target.org, app: target.app, taskId: task.taskId, error: tunnelError });
    last = response;
    if (!RETRYABLE_TUNNEL_ERRORS.has(tunnelError)) break;
  }
  const code = last?.headers.get(TUNNEL_ERROR_HEADER);
  if (code === "timeout") return page("timeout", `the app did not answer within ${timeoutMs(env) / 1000} s`);
  return page("bad_gateway", "the app's tasks could not be reached through their nodes");
}

function passOn(response: Response): Response {
  // A WebSocket handshake is passed on as it is: the socket travels with the response.
  if (response.status === 101 || response.webSocket) return response;
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers: response.headers });
}
