import type { Context, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { z } from "zod";
import { ApiError } from "./errors.ts";

/** Rejects bodies over `maxBytes` with 413, from Content-Length or while streaming. */
export function limitBody(maxBytes: number): MiddlewareHandler {
  return bodyLimit({
    maxSize: maxBytes,
    onError: () => {
      throw new ApiError("payload_too_large", `request body exceeds the ${maxBytes}-byte limit of this route`);
    },
  });
}

/** Reads a JSON body and validates it; every failure is a typed 4xx, never a 500. */
export async function readJson<S extends z.ZodType>(c: Context, schema: S): Promise<z.infer<S>> {
  const type = c.req.header("content-type") ?? "";
  if (!/^application\/json\b/i.test(type)) {
    throw new ApiError("unsupported_media_type", "request body must be application/json");
  }
  const text = await c.req.text();
  let value: unknown;
  try {
    value = text === "" ? undefined : JSON.parse(text);
  } catch (error) {
    throw new ApiError("invalid_json", `request body is not valid JSON: ${(error as Error).message}`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => ({ path: issue.path.map(String).join("."), message: issue.message }));
    const first = issues[0];
    const where = first && first.path !== "" ? `${first.path}: ` : "";
    throw new ApiError("invalid_body", `invalid request body: ${where}${first?.message ?? "invalid"}`, { details: issues });
  }
  return parsed.data;
}
