import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type WebSocket from "ws";
import { bootstrapDefaultOrg, ensureOperatorSecret, freePort, localPaths, startWorkers, stopAll, waitForHealthy } from "../../scripts/lib/control-plane.ts";

export interface BenchPlane {
  apiUrl: string;
  adminToken: string;
  /** Sockets registered here are closed when the plane stops. */
  sockets: WebSocket[];
}

/**
 * Runs `body` against a fresh local control plane (a temp state dir under `parentDir`,
 * by default the OS temp dir), then stops it and removes its state.
 */
export async function withControlPlane<T>(body: (plane: BenchPlane) => Promise<T>, parentDir: string = tmpdir()): Promise<T> {
  const root = mkdtempSync(join(parentDir, "zectre-bench-"));
  const paths = localPaths(join(root, "state"));
  const secret = ensureOperatorSecret(paths);
  const [apiPort, proxyPort] = [await freePort(), await freePort()];
  const children = await startWorkers({ apiPort, proxyPort, stateDir: paths.stateDir }, secret);
  const apiUrl = `http://127.0.0.1:${apiPort}`;
  const sockets: WebSocket[] = [];
  try {
    await waitForHealthy(`${apiUrl}/healthz`, 60_000, () => children.every((c) => c.exitCode === null));
    const adminToken = (await bootstrapDefaultOrg(apiUrl, paths, secret)).token as string;
    return await body({ apiUrl, adminToken, sockets });
  } finally {
    for (const ws of sockets) ws.terminate();
    await stopAll(children);
    rmSync(root, { recursive: true, force: true });
  }
}
