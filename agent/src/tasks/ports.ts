import { createServer } from "node:net";

/**
 * Ports for tasks. By default tasks listen on 127.0.0.1 and the tunnel is their only way in; an agent on a
 * direct node binds them where the proxy can reach them (`--task-bind-address`), and reaches them there itself.
 */

export const DEFAULT_TASK_BIND_ADDRESS = "127.0.0.1";

/** Where the agent itself (health probes, the tunnel) reaches a task bound to `bindAddress`: a wildcard on loopback. */
export function taskConnectHost(bindAddress: string): string {
  if (bindAddress === "0.0.0.0") return "127.0.0.1";
  if (bindAddress === "::") return "::1";
  return bindAddress;
}

/** Listens on `port` (0 = any) of `host` and closes again; resolves with the port, or null when it is taken. */
function tryListen(port: number, host: string): Promise<number | null> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once("error", () => resolve(null));
    server.listen({ port, host, exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === "object" && address !== null ? address.port : null;
      server.close(() => resolve(bound));
    });
  });
}

/** A port the kernel just handed out, so nothing else listens on it right now. */
export async function pickFreePort(host: string = DEFAULT_TASK_BIND_ADDRESS): Promise<number> {
  const port = await tryListen(0, host);
  if (port === null) throw new Error(`cannot bind any port on ${host}`);
  return port;
}

export async function isPortFree(port: number, host: string = DEFAULT_TASK_BIND_ADDRESS): Promise<boolean> {
  return (await tryListen(port, host)) === port;
}

const REUSE_WAIT_MS = 2_000;
const REUSE_POLL_MS = 50;

/**
 * The task's old port when it is free (the control plane already knows it), else a new one. A process
 * just ended (a crash, a leftover of an earlier agent run) may hold it a moment longer, so it gets a short wait.
 */
export async function reusePort(previous: number, host: string = DEFAULT_TASK_BIND_ADDRESS, waitMs: number = REUSE_WAIT_MS): Promise<number> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    if (await isPortFree(previous, host)) return previous;
    if (Date.now() >= deadline) return pickFreePort(host);
    await new Promise((resolve) => setTimeout(resolve, REUSE_POLL_MS));
  }
}
