import { request } from "node:http";
import { connect } from "node:net";
import type { HealthCheck } from "../../../protocol/deployments.ts";
import { TASK_HOST } from "./ports.ts";

/**
 * One health probe of a task on its loopback port. HTTP: a GET whose status is
 * 2xx or 3xx (redirects are not followed: answering at all is what counts).
 * TCP: a connection is accepted. Anything else, or no answer in time, fails.
 */
export function probeHealth(check: HealthCheck, port: number, timeoutMs: number): Promise<boolean> {
  return check.type === "http" ? probeHttp(port, check.path, timeoutMs) : probeTcp(port, timeoutMs);
}

function probeHttp(port: number, path: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    // agent: false: a fresh connection each time, so a probe never rides on a socket the app already gave up on.
    const req = request({ host: TASK_HOST, port, path, method: "GET", agent: false, timeout: timeoutMs, headers: { "user-agent": "zectre-agent-health" } });
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

function probeTcp(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: TASK_HOST, port });
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
