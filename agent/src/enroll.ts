import { renameSync } from "node:fs";
import { hostname } from "node:os";
import { z } from "zod";
import { EnrollmentState, NodeId, sanitizeNodeId } from "../../protocol/nodes.ts";
import { type CustomFacts, loadAgentConfig } from "./config.ts";
import { AgentError } from "./errors.ts";
import { collectFacts } from "./facts.ts";
import { HttpError, NetworkError, postJson } from "./http.ts";
import { generateNodeKey, publicKeyOf } from "./keys.ts";
import { type DataDirPaths, dataDirPaths } from "./state/data-dir.ts";
import { ensurePrivateDir, fsyncDir } from "./state/files.ts";
import { type Identity, readIdentity, readPrivateKey, writeIdentity, writePrivateKey } from "./state/identity.ts";

/**
 * `zectre-agent enroll`: make a key pair, register its public half with the
 * control plane using a one-time enrollment token, and remember the answer.
 *
 * The key is written before the request and reused by a retry, so an enroll
 * whose answer was lost (the server registered the key, the agent never heard)
 * can simply be run again instead of colliding with itself (409).
 */

export interface EnrollOptions {
  readonly url: string;
  readonly token: string;
  /** Defaults to the host name, made into a valid node id. */
  readonly nodeId?: string | undefined;
  readonly dataDir: string;
  /** Replace an existing identity (with a new key). */
  readonly force?: boolean;
  /** `--fact` flags, on top of config.json's facts. */
  readonly facts?: CustomFacts;
  readonly fetch?: typeof fetch;
  readonly now?: Date;
}

export interface EnrollResult {
  readonly identity: Identity;
  readonly paths: DataDirPaths;
  /** True when a key left by an interrupted enroll was used instead of a new one. */
  readonly reusedKey: boolean;
}

const EnrollResponse = z.object({ org: z.string().min(1).max(64), nodeId: NodeId, state: EnrollmentState });

export async function enroll(options: EnrollOptions): Promise<EnrollResult> {
  const url = normalizeUrl(options.url);
  const nodeId = options.nodeId ?? sanitizeNodeId(hostname());
  const validId = NodeId.safeParse(nodeId);
  if (!validId.success) throw new AgentError(`invalid node id '${nodeId}': ${validId.error.issues[0]?.message ?? "invalid"}`);
  if (options.token === "" || options.token.length > 256) throw new AgentError("invalid --token: expected the enrollment token an admin created");

  const paths = dataDirPaths(options.dataDir);
  ensurePrivateDir(paths.dir);
  const existing = readIdentity(paths);
  if (existing && options.force !== true) {
    throw new AgentError(
      `already enrolled as node '${existing.nodeId}' in org '${existing.org}' at ${existing.url} (${paths.identity}); pass --force to enroll again with a new key`,
    );
  }
  // Re-enrolling keeps the working key until the server has accepted the new one.
  const keyPath = existing ? paths.newKey : paths.key;
  let privateKey = readPrivateKey(keyPath);
  const reusedKey = privateKey !== undefined;
  if (!privateKey) {
    privateKey = generateNodeKey().privateKey;
    writePrivateKey(keyPath, privateKey);
  }
  const publicKey = publicKeyOf(privateKey);
  const facts = collectFacts({ ...loadAgentConfig(paths.config).facts, ...options.facts });

  let answer: z.infer<typeof EnrollResponse>;
  try {
    answer = await postJson(`${url}/api/v1/agent/enroll`, { v: 1, token: options.token, nodeId, publicKey, facts }, EnrollResponse, {
      ...(options.fetch ? { fetch: options.fetch } : {}),
    });
  } catch (error) {
    throw enrollError(error, nodeId);
  }

  if (keyPath !== paths.key) {
    renameSync(keyPath, paths.key);
    fsyncDir(paths.dir);
  }
  const identity: Identity = {
    v: 1,
    url,
    org: answer.org,
    nodeId: answer.nodeId,
    publicKey,
    enrolledAt: (options.now ?? new Date()).toISOString(),
    state: answer.state,
  };
  writeIdentity(paths, identity);
  return { identity, paths, reusedKey };
}

/** Lines for people: what happened and the one thing to do next. */
export function enrollSummary(result: EnrollResult, dataDirFlag: string): string[] {
  const { identity, paths } = result;
  const lines = [
    `Enrolled node '${identity.nodeId}' in org '${identity.org}' at ${identity.url} (state: ${identity.state}).`,
    `Identity: ${paths.identity}; private key: ${paths.key} (it never leaves this host).`,
  ];
  const start = `zectre-agent run${dataDirFlag}`;
  if (identity.state === "pending") {
    lines.push(`Next: an admin must approve it: zectre node enroll approve ${identity.nodeId}`);
    lines.push(`Meanwhile start the agent; it connects as soon as the node is approved: ${start} (or as a service: zectre-agent install${dataDirFlag} --write)`);
  } else {
    lines.push(`Next: start the agent: ${start} (or as a service: zectre-agent install${dataDirFlag} --write)`);
  }
  return lines;
}

function enrollError(error: unknown, nodeId: string): AgentError {
  if (error instanceof HttpError) {
    const base = `enrollment refused: ${error.message} (${error.code})`;
    if (error.status === 409) return new AgentError(`${base}; node id '${nodeId}' belongs to another key: choose another with --id`);
    if (error.status === 401) return new AgentError(`${base}; ask an admin for a new enrollment token`);
    return new AgentError(base);
  }
  if (error instanceof NetworkError) return new AgentError(error.message);
  return new AgentError(error instanceof Error ? error.message : String(error));
}

function normalizeUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new AgentError(`invalid --url '${text}': expected an http or https URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new AgentError(`invalid --url '${text}': expected an http or https URL`);
  if (url.search !== "" || url.hash !== "") throw new AgentError(`invalid --url '${text}': the URL must not carry a query or fragment`);
  return url.toString().replace(/\/+$/, "");
}
