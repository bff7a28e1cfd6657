import type { Context } from "hono";
import { ERROR_STATUS, type ErrorBody, type ErrorCode, type Failure } from "../../protocol/errors.ts";

/** Thrown anywhere in a request; the app's error handler turns it into the JSON error body. */
export class ApiError extends Error {
  readonly code: ErrorCode;
  readonly details: unknown;
  readonly retryAfterSeconds: number | undefined;

  constructor(code: ErrorCode, message: string, options: { details?: unknown; retryAfterSeconds?: number } = {}) {
    super(message);
    this.code = code;
    this.details = options.details;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }

  static from(failure: Failure): ApiError {
    const options: { details?: unknown; retryAfterSeconds?: number } = {};
    if (failure.retryAfterSeconds !== undefined) options.retryAfterSeconds = failure.retryAfterSeconds;
    if (failure.details !== undefined) options.details = failure.details;
    return new ApiError(failure.code, failure.message, options);
  }
}

export function errorResponse(c: Context, error: ApiError): Response {
  const body: ErrorBody = { error: { code: error.code, message: error.message } };
  if (error.details !== undefined) body.error.details = error.details;
  if (error.retryAfterSeconds !== undefined) c.header("Retry-After", String(error.retryAfterSeconds));
  return c.json(body, ERROR_STATUS[error.code]);
}

/** Unwraps an object's RPC result, throwing its failure as an ApiError. */
export function unwrap<R extends { ok: true } | Failure>(result: R): Exclude<R, Failure> {
  if (!result.ok) throw ApiError.from(result as Failure);
  return result as Exclude<R, Failure>;
}
