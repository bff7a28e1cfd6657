import type { KeyObject } from "node:crypto";
import { z } from "zod";
import { EnrollmentState, NodeId, PublicKey } from "../../../protocol/nodes.ts";
import { AgentError } from "../errors.ts";
import { parsePrivateKey, privateKeyPem, publicKeyOf } from "../keys.ts";
import type { DataDirPaths } from "./data-dir.ts";
import { messageOf, readIfExists, writeFileAtomic } from "./files.ts";

/** `identity.json`: who this node is and where its control plane lives. Written once by `enroll`. */
export const IdentityFile = z.object({
  v: z.literal(1),
  url: z.string().min(1),
  org: z.string().min(1).max(64),
  nodeId: NodeId,
  publicKey: PublicKey,
  enrolledAt: z.string(),
  /** The state the server answered at enrollment; the live state is the server's. */
  state: EnrollmentState,
});
export type Identity = z.infer<typeof IdentityFile>;

export function readIdentity(paths: DataDirPaths): Identity | undefined {
  const text = readOrFail(paths.identity);
  if (text === undefined) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new AgentError(`${paths.identity} is not valid JSON (${messageOf(error)}); re-enroll with 'zectre-agent enroll --force'`);
  }
  const parsed = IdentityFile.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? ` at '${issue.path.join(".")}'` : "";
    throw new AgentError(`${paths.identity} is malformed${where}: ${issue?.message ?? "invalid"}`);
  }
  return parsed.data;
}

export function writeIdentity(paths: DataDirPaths, identity: Identity): void {
  writeFileAtomic(paths.identity, `${JSON.stringify(identity, null, 2)}\n`);
}

/** Returns undefined when there is no key file. */
export function readPrivateKey(path: string): KeyObject | undefined {
  const pem = readOrFail(path);
  if (pem === undefined) return undefined;
  try {
    return parsePrivateKey(pem);
  } catch (error) {
    throw new AgentError(`${path} is not a usable private key (${messageOf(error)})`);
  }
}

export function writePrivateKey(path: string, privateKey: KeyObject): void {
  writeFileAtomic(path, privateKeyPem(privateKey));
}

export interface NodeCredentials {
  readonly identity: Identity;
  readonly privateKey: KeyObject;
}

/** Everything `run` needs to prove who it is, or a clear reason why it cannot. */
export function loadCredentials(paths: DataDirPaths): NodeCredentials {
  const identity = readIdentity(paths);
  if (identity === undefined) {
    throw new AgentError(`not enrolled: no identity in ${paths.dir}; run 'zectre-agent enroll --url URL --token TOKEN' first`);
  }
  const privateKey = readPrivateKey(paths.key);
  if (privateKey === undefined) {
    throw new AgentError(`${paths.key} is missing; the node cannot prove its identity: re-enroll with 'zectre-agent enroll --force'`);
  }
  // A mismatch means the key and identity come from different enrollments; every connect would fail.
  if (publicKeyOf(privateKey) !== identity.publicKey) {
    throw new AgentError(`${paths.key} does not match the public key in ${paths.identity}; re-enroll with 'zectre-agent enroll --force'`);
  }
  return { identity, privateKey };
}

function readOrFail(path: string): string | undefined {
  try {
    return readIfExists(path);
  } catch (error) {
    throw new AgentError(`cannot read ${path}: ${messageOf(error)}`);
  }
}
