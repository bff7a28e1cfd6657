import { MAX_FRAME_BYTES } from "../../../protocol/agent-wire.ts";
import type { JsonObject, JsonValue } from "../../../protocol/json.ts";
import { oneLine } from "../errors.ts";
import { messageOf } from "../state/files.ts";

/**
 * The return message a finished job leaves in the outbox, made to fit: its
 * result is plain JSON, its error one line, and the whole message one frame.
 */

export interface JobReturnBody {
  success: boolean;
  retcode: number | null;
  result: JsonValue;
  error: string | null;
  durationMs: number;
  startedAt: string | null;
}

/** A type alias, not an interface, so it is an `OutboxMessage` as it stands. */
export type ReturnEnvelope = {
  type: "return";
  v: 1;
  id: string;
  jid: string;
  epoch: number;
  return: JobReturnBody;
};

/** Room left in a frame for fields a newer agent or envelope may add. */
export const FRAME_HEADROOM = 4096;
export const FRAME_BUDGET = MAX_FRAME_BYTES - FRAME_HEADROOM;
/** Appended to text cut so that the whole return fits one frame (stdout and stderr of 1 MiB each cannot). */
export const FRAME_TRUNCATION_MARKER = "\n[output truncated to fit the return message]";
/** Errors are one line, and short: the result is where output goes. */
export const MAX_ERROR_CHARS = 4096;

/** One outbox id per (jid, epoch): the ledger runs each pair once, so the id is unique and a retry cannot duplicate it. */
export function returnId(jid: string, epoch: number): string {
  return `return.${jid}.${epoch}`;
}

/** A function's result as plain JSON: bigints become text, undefined and non-finite numbers null; cycles throw. */
export function toJson(value: unknown): JsonValue {
  let text: string | undefined;
  try {
    text = JSON.stringify(value, (_key, item: unknown) => (typeof item === "bigint" ? item.toString() : item));
  } catch (error) {
    throw new Error(`the result is not JSON: ${messageOf(error)}`);
  }
  return text === undefined ? null : (JSON.parse(text) as JsonValue);
}

export function errorText(error: unknown): string {
  const text = oneLine(messageOf(error)) || "unknown error";
  return text.length > MAX_ERROR_CHARS ? `${text.slice(0, MAX_ERROR_CHARS - 1)}…` : text;
}

export function frameBytes(message: object): number {
  return Buffer.byteLength(JSON.stringify(message));
}

/**
 * Shrinks the result until the message fits `budget` bytes: every string longer
 * than a common cap is cut to it (with a marker), the cap chosen as large as
 * possible, so two big streams each keep a fair share. A result that does not
 * fit even with every string emptied (a huge array) is dropped for an error.
 */
export function fitToFrame<M extends { return: JobReturnBody }>(message: M, budget: number = FRAME_BUDGET): M {
  if (frameBytes(message) <= budget) return message;
  const result = message.return.result;
  const withCap = (cap: number): M => ({ ...message, return: { ...message.return, result: capStrings(result, cap) } });
  if (frameBytes(withCap(0)) > budget) {
    const bytes = frameBytes(message);
    return { ...message, return: { ...message.return, success: false, result: null, error: `the result is too large to return (${bytes} bytes)` } };
  }
  let low = 0;
  let high = longestString(result);
  // Invariant: a cap of `low` fits, a cap of `high` does not.
  while (high - low > 1) {
    const middle = Math.floor((low + high) / 2);
    if (frameBytes(withCap(middle)) <= budget) low = middle;
    else high = middle;
  }
  return withCap(low);
}

function capStrings(value: JsonValue, cap: number): JsonValue {
  if (typeof value === "string") return value.length > cap ? `${cutString(value, cap)}${FRAME_TRUNCATION_MARKER}` : value;
  if (Array.isArray(value)) return value.map((item: JsonValue) => capStrings(item, cap));
  if (typeof value === "object" && value !== null) {
    const out: JsonObject = {};
    for (const [key, item] of Object.entries(value as JsonObject)) {
      Object.defineProperty(out, key, { value: capStrings(item, cap), enumerable: true, writable: true, configurable: true });
    }
    return out;
  }
  return value;
}

function longestString(value: JsonValue): number {
  if (typeof value === "string") return value.length;
  if (Array.isArray(value)) return value.reduce((max: number, item: JsonValue) => Math.max(max, longestString(item)), 0);
  if (typeof value === "object" && value !== null) return Object.values(value as JsonObject).reduce((max: number, item) => Math.max(max, longestString(item)), 0);
  return 0;
}

/** The first `length` UTF-16 units, without splitting a surrogate pair. */
function cutString(text: string, length: number): string {
  const cut = text.slice(0, length);
  const last = cut.charCodeAt(cut.length - 1);
  return last >= 0xd800 && last <= 0xdbff ? cut.slice(0, -1) : cut;
}
