import type { z } from "zod";
import { isErrorBody } from "../../protocol/errors.ts";
import { networkReason, oneLine } from "../../lib/network-errors.ts";
import { agentVersion } from "./version.ts";

/** The agent's two HTTP calls (enroll, challenge) share this: JSON in, JSON out, typed failures. */

/** The server answered with an error status; `code`/`details` come from its `{"error":{...}}` body when it had one. */
export class HttpError extends Error {
  override readonly name: string = "HttpError";
  readonly status: number;
  readonly code: string;
  readonly details: unknown;

  constructor(status: number, code: string, message: string, details: unknown) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/** The server could not be reached, or did not answer in time, or answered something that is not the API. */
export class NetworkError extends Error {
  override readonly name: string = "NetworkError";
}

export interface HttpOptions {
  readonly fetch?: typeof fetch;
  readonly timeoutMs?: number;
  /** Aborts the request early, e.g. when the agent is stopping. */
  readonly signal?: AbortSignal;
}

export const DEFAULT_HTTP_TIMEOUT_MS = 15_000;

export async function postJson<S extends z.ZodType>(url: string, body: unknown, schema: S, options: HttpOptions = {}): Promise<z.infer<S>> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_HTTP_TIMEOUT_MS;
  let response: Response;
  let text: string;
  try {
    response = await (options.fetch ?? fetch)(url, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json", "user-agent": `zectre-agent/${agentVersion()}` },
      body: JSON.stringify(body),
      signal: options.signal ? AbortSignal.any([AbortSignal.timeout(timeoutMs), options.signal]) : AbortSignal.timeout(timeoutMs),
    });
    text = await response.text();
  } catch (error) {
    throw new NetworkError(`could not reach ${new URL(url).origin}: ${networkReason(error, timeoutMs)}`);
  }
  let json: unknown;
  try {
    json = text === "" ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  if (!response.ok) {
    if (isErrorBody(json)) throw new HttpError(response.status, json.error.code, oneLine(json.error.message), json.error.details);
    throw new HttpError(response.status, `http_${response.status}`, `POST ${new URL(url).pathname} answered HTTP ${response.status} without an API error body`, undefined);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    throw new NetworkError(`POST ${new URL(url).pathname} answered HTTP ${response.status} with an unexpected body; is ${new URL(url).origin} a Zectre API?`);
  }
  return parsed.data;
}

