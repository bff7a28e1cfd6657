import { z } from "zod";

/** Org names appear inside API tokens, so they may not contain the token separator `_`. */
export const ORG_NAME_PATTERN = /^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$/;

export const OrgName = z
  .string()
  .regex(ORG_NAME_PATTERN, "org names are 1-40 lowercase letters, digits or '-', not starting or ending with '-'");

export const TokenName = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9][A-Za-z0-9 ._@:-]*$/, "token names use letters, digits, space and . _ @ : -");
