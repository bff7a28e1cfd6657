import { request } from "node:http";
import { connect } from "node:net";
import type { HealthCheck } from "../../../protocol/deployments.ts";
/**
 * One health probe of a task on its port at `host` (loopback unless tasks bind elsewhere). HTTP: a GET whose status is
 * 2xx or 3xx (redirects are not followed: answering at all is what counts).
 * TCP: a connection is accepted. Anything else, or no answer in time, fails.
 */
export function probeHealth(check: HealthCheck, port: number, timeoutMs: number, host: string = "127.0.0.1"): Promise<boolean> {
  return check.type === "http" ? probeHttp(host, port, check.path, timeoutMs) : probeTcp(host, port, timeoutMs);
}

function probeHttp(host: string, port: number, path: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    // agent: false: a fresh connection each time, so a probe never rides on a socket the app already gave up on.
    const req = request({ host, port, path, method: "GET", agent: false, timeout: timeoutMs, headers: { "user-agent": "zectre-agent-health" } });
    const timer = setTimeout(() => req.destroy(new Error("health check timed out")), timeoutMs);
    req.on("response", (response) => {
      clearTimeout(timer);
      const status = response.statusCode ?? 0;
      response.resume();
      req.destroy();
      resolve(status >= 200 && status < 400);
    });
    req.on("timeout", () => req.destroy(new Error("health check timed out")));
    req.on("error", () => {
      clearTimeout(timer);
      resolve(false);
    });
    req.end();
  });
}

function probeTcp(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}
