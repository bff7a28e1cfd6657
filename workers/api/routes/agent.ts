import { Hono } from "hono";
import { nodeStub, orgStub } from "../../../durable-objects/env.ts";
import { ChallengeBody, EnrollBody, NODE_ID_PATTERN } from "../../../protocol/nodes.ts";
import { ENROLLMENT_TOKEN_PREFIX, parseToken } from "../../../protocol/tokens.ts";
import { ORG_NAME_PATTERN } from "../../../protocol/names.ts";
import { limitBody, readJson } from "../body.ts";
import type { ApiContext } from "../env.ts";
import { ApiError, unwrap } from "../errors.ts";

/** Enrollment carries facts, so it gets more room than the small JSON routes. */
const ENROLL_BODY_LIMIT = 256 * 1024;
const CHALLENGE_BODY_LIMIT = 1024;

/**
 * Agent-facing routes. They take no API token: enrollment is authorized by the
 * enrollment token, connecting by a signature with the node's own key.
 */
export const agentRoutes = new Hono<ApiContext>()
  .post("/agent/enroll", limitBody(ENROLL_BODY_LIMIT), async (c) => {
    const body = await readJson(c, EnrollBody);
    const token = parseToken(body.token, ENROLLMENT_TOKEN_PREFIX);
    if (!token) throw new ApiError("unauthorized", "malformed enrollment token (expected zet_<org>_<id>_<secret>)");
    const result = unwrap(await orgStub(c.env, token.org).enroll(token.id, token.secret, body));
    return c.json({ org: result.org, nodeId: result.nodeId, state: result.state }, 201);
  })
  .post("/agent/challenge", limitBody(CHALLENGE_BODY_LIMIT), async (c) => {
    const body = await readJson(c, ChallengeBody);
    if (!ORG_NAME_PATTERN.test(body.org)) throw new ApiError("unauthorized", `node '${body.nodeId}' is not enrolled`);
    const result = unwrap(await nodeStub(c.env, body.org, body.nodeId).challenge(body.org, body.nodeId));
    return c.json({ nonce: result.nonce, expiresAt: result.expiresAt });
  })
  .get("/agent/connect", async (c) => {
    const org = c.req.query("org") ?? "";
    const node = c.req.query("node") ?? "";
    if (!ORG_NAME_PATTERN.test(org) || !NODE_ID_PATTERN.test(node) || node.length > 128) throw new ApiError("bad_request", "connect needs org, node, nonce and sig");
    // The node object verifies nonce and signature and owns the socket from here on.
    return nodeStub(c.env, org, node).fetch(c.req.raw);
  });
