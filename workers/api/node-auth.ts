import type { MiddlewareHandler } from "hono";
import { orgStub } from "../../durable-objects/env.ts";
import { NODE_AUTH_HEADERS, NODE_REQUEST_MAX_SKEW_MS, nodeRequestSigningInput } from "../../protocol/artifacts.ts";
import { fromBase64Url } from "../../protocol/base64url.ts";
import { ORG_NAME_PATTERN } from "../../protocol/names.ts";
import { type EnrollmentState, NODE_ID_PATTERN } from "../../protocol/nodes.ts";
import type { ApiEnv, ApiVariables } from "./env.ts";
import { ApiError } from "./errors.ts";

/** Who signed a node request: set by nodeAuthenticate() for the handlers after it. */
export interface NodeIdentity {
  org: string;
  nodeId: string;
  state: EnrollmentState;
}

export interface NodeAuthContext {
  Bindings: ApiEnv;
  Variables: ApiVariables & { node: NodeIdentity };
}

/** Nodes that may fetch what the control plane gives them; pending, rejected and revoked ones may not. */
const TRUSTED_STATES: readonly EnrollmentState[] = ["approved", "active"];

interface SignedHeaders {
  org: string;
  nodeId: string;
  timestamp: number;
  signature: Uint8Array;
}

function readSignedHeaders(header: (name: string) => string | undefined): SignedHeaders {
  const org = header(NODE_AUTH_HEADERS.org) ?? "";
  const nodeId = header(NODE_AUTH_HEADERS.node) ?? "";
  const timestamp = header(NODE_AUTH_HEADERS.timestamp) ?? "";
  const signature = fromBase64Url(header(NODE_AUTH_HEADERS.signature) ?? "");
  if (!ORG_NAME_PATTERN.test(org) || !NODE_ID_PATTERN.test(nodeId) || nodeId.length > 128 || !/^\d{1,16}$/.test(timestamp)) {
    const names = Object.values(NODE_AUTH_HEADERS).join(", ");
    throw new ApiError("unauthorized", `a node request needs the headers ${names}`);
  }
  if (!signature || signature.byteLength !== 64) throw new ApiError("unauthorized", "malformed node signature");
  return { org, nodeId, timestamp: Number(timestamp), signature };
}

async function ed25519Valid(publicKey: string, signature: Uint8Array, data: Uint8Array): Promise<boolean> {
  const keyBytes = fromBase64Url(publicKey);
  if (!keyBytes || keyBytes.byteLength !== 32) return false;
  try {
    const key = await crypto.subtle.importKey("raw", keyBytes, { name: "Ed25519" }, false, ["verify"]);
    return await crypto.subtle.verify({ name: "Ed25519" }, key, signature, data);
  } catch {
    return false;
  }
}

/**
 * Authenticates a request signed with a node's own key (no API token): the
 * signature covers org, node, method, path with query, and a timestamp that
 * must be within five minutes of this clock. Within that window a captured
 * request can be repeated, so only idempotent routes should sit behind it.
 * The signature is checked before the node's state, so nothing about a node
 * leaks to a caller that cannot sign for it.
 */
export function nodeAuthenticate(now: () => number = Date.now): MiddlewareHandler<NodeAuthContext> {
  return async (c, next) => {
    const signed = readSignedHeaders((name) => c.req.header(name));
    if (Math.abs(now() - signed.timestamp) > NODE_REQUEST_MAX_SKEW_MS) {
      throw new ApiError("unauthorized", "the request's timestamp is more than 5 minutes from the server's clock; check the node's clock");
    }
    const entry = await orgStub(c.env, signed.org).nodeEntry(signed.nodeId);
    const url = new URL(c.req.url);
    const input = nodeRequestSigningInput(signed.org, signed.nodeId, c.req.method, `${url.pathname}${url.search}`, signed.timestamp);
    if (!entry || !(await ed25519Valid(entry.publicKey, signed.signature, input))) {
      throw new ApiError("unauthorized", "invalid node signature");
    }
    const state = entry.summary.state;
    if (!TRUSTED_STATES.includes(state)) {
      throw new ApiError("forbidden", `node '${signed.nodeId}' is ${state}`, { details: { state } });
    }
    c.set("node", { org: signed.org, nodeId: signed.nodeId, state });
    await next();
  };
}
