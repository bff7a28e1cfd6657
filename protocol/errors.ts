/** Error codes every Zectre API answers with, and the HTTP status each maps to. */
export const ERROR_STATUS = {
  bad_request: 400,
  invalid_json: 400,
  invalid_body: 400,
  /** An upload's bytes do not hash to the digest it was sent under. */
  digest_mismatch: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  length_required: 411,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  internal: 500,
  unavailable: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export interface ErrorBody {
  error: { code: ErrorCode; message: string; details?: unknown };
}

/**
 * A failure that crosses an RPC boundary as plain data: Durable Object RPC keeps
 * an Error's message but not its class, so objects return this instead of throwing.
 */
export interface Failure {
  ok: false;
  code: ErrorCode;
  message: string;
  retryAfterSeconds?: number;
  /** Machine-readable facts about the failure (e.g. a node's state); strings only, so it survives RPC typing. */
  details?: Record<string, string>;
}

export type Result<T> = ({ ok: true } & T) | Failure;

export function failure(code: ErrorCode, message: string, extra: Partial<Failure> = {}): Failure {
  return { ok: false, code, message, ...extra };
}

export function isErrorBody(value: unknown): value is ErrorBody {
  if (typeof value !== "object" || value === null || !("error" in value)) return false;
  const error = (value as { error: unknown }).error;
  return typeof error === "object" && error !== null && "code" in error && "message" in error;
}
