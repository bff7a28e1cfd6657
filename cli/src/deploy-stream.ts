import { CliError } from "./errors.ts";
import { describeBreak, MAX_RECONNECTS, retryable } from "./jobs.ts";
import { readSse } from "./sse.ts";

/**
 * Reads a long-lived event stream (an app's events, live logs) and reopens it when
 * it breaks. Unlike a job's stream these never end on their own: they last until the
 * caller has what it wants or the signal ends them.
 */

export interface StreamSource {
  /** Opens the stream; called again after each break, so it should resume where the data left off. */
  open(signal: AbortSignal): Promise<ReadableStream<Uint8Array>>;
  /** Handles one message's data; returns true when nothing more is wanted. */
  onData(data: string): boolean;
  /** Names the stream in the error after too many failed reconnects, e.g. `the event stream of app web`. */
  readonly label: string;
  /** Tells the reader how to pick up again, e.g. `zectre logs web -f`. */
  readonly resumeHint: string;
}

const RECONNECT_DELAYS_MS = [250, 500, 1000, 2000, 2000];

/** Resolves "done" when onData asked to stop, "aborted" when the signal fired first. */
export async function readWithReconnects(source: StreamSource, signal: AbortSignal): Promise<"done" | "aborted"> {
  let failures = 0;
  for (;;) {
    let reason: string;
    try {
      const body = await source.open(signal);
      for await (const message of readSse(body)) {
        if (message.data === "") continue;
        failures = 0;
        if (source.onData(message.data)) return "done";
      }
      reason = "the server closed the stream";
    } catch (error) {
      if (signal.aborted) return "aborted";
      if (!retryable(error)) throw error;
      reason = describeBreak(error);
    }
    if (signal.aborted) return "aborted";
    failures++;
    if (failures > MAX_RECONNECTS) {
      throw new CliError(`lost ${source.label} (${reason}) and ${MAX_RECONNECTS} reconnects failed; pick it up again with '${source.resumeHint}'`);
    }
    if (!(await pause(RECONNECT_DELAYS_MS[failures - 1] ?? 2000, signal))) return "aborted";
  }
}

/** Waits `ms`; false when the signal fired first. */
function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(false);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** Parses one message's JSON, or fails with a line that names the stream. */
export function parseStreamJson(data: string, label: string): unknown {
  try {
    return JSON.parse(data);
  } catch {
    throw new CliError(`${label} sent data that is not JSON: ${data.replace(/\s+/g, " ").slice(0, 80)}`);
  }
}
