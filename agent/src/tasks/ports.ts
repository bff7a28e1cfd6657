import { createServer } from "node:net";

/** Loopback ports for tasks. Tasks only ever listen on 127.0.0.1; the tunnel is their only way in. */

export const TASK_HOST = "127.0.0.1";

/** Listens on `port` (0 = any) of 127.0.0.1 and closes again; resolves with the port, or null when it is taken. */
function tryListen(port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once("error", () => resolve(null));
    server.listen({ port, host: TASK_HOST, exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === "object" && address !== null ? address.port : null;
      server.close(() => resolve(bound));
    });
  });
}

/** A port the kernel just handed out, so nothing else listens on it right now. */
export async function pickFreePort(): Promise<number> {
  const port = await tryListen(0);
  if (port === null) throw new Error(`cannot bind any port on ${TASK_HOST}`);
  return port;
}

export async function isPortFree(port: number): Promise<boolean> {
  return (await tryListen(port)) === port;
}

const REUSE_WAIT_MS = 2_000;
const REUSE_POLL_MS = 50;

/**
 * The task's old port when it is free (the control plane already knows it), else a new one. A process
 * just ended (a crash, a leftover of an earlier agent run) may hold it a moment longer, so it gets a short wait.
 */
export async function reusePort(previous: number, waitMs: number = REUSE_WAIT_MS): Promise<number> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    if (await isPortFree(previous)) return previous;
    if (Date.now() >= deadline) return pickFreePort();
    await new Promise((resolve) => setTimeout(resolve, REUSE_POLL_MS));
  }
}
