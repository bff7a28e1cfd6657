import { type MetricDeltas, MetricsAccumulator } from "../../protocol/metrics.ts";
import { log } from "./log.ts";

/** At most one flush per org this often: the org object sees one RPC a second, whatever the traffic. */
export const FLUSH_INTERVAL_MS = 1000;

export type SendDeltas = (org: string, deltas: MetricDeltas) => Promise<unknown>;
export type WaitUntil = (promise: Promise<unknown>) => void;

/**
 * Per-isolate (or per-object) batching of metric deltas for hot paths: the proxy's requests and
 * a node's tunnel streams add to an in-memory accumulator per org, and a flush sends it to the
 * org object in one `recordMetrics` call at most once per interval, kept alive by the caller's
 * `waitUntil`. The one window that is not durable: deltas added since the last flush are lost if
 * the isolate or object dies before the next one (at most about a second of them).
 */
export class MetricsBatcher {
  readonly #send: SendDeltas;
  readonly #intervalMs: number;
  readonly #pending = new Map<string, MetricsAccumulator>();
  readonly #lastFlush = new Map<string, number>();
  readonly #scheduled = new Set<string>();

  constructor(send: SendDeltas, intervalMs: number = FLUSH_INTERVAL_MS) {
    this.#send = send;
    this.#intervalMs = intervalMs;
  }

  /** Adds to the org's pending deltas and makes sure a flush is on its way. */
  record(org: string, waitUntil: WaitUntil, update: (metrics: MetricsAccumulator) => void): void {
    let metrics = this.#pending.get(org);
    if (!metrics) {
      metrics = new MetricsAccumulator();
      this.#pending.set(org, metrics);
    }
    update(metrics);
    if (this.#scheduled.has(org)) return;
    this.#scheduled.add(org);
    const wait = Math.max(0, (this.#lastFlush.get(org) ?? 0) + this.#intervalMs - Date.now());
    waitUntil(sleep(wait).then(() => this.#flush(org)));
  }

  async #flush(org: string): Promise<void> {
    this.#scheduled.delete(org);
    this.#lastFlush.set(org, Date.now());
    const metrics = this.#pending.get(org);
    this.#pending.delete(org);
    if (!metrics || metrics.empty) return;
    const deltas = metrics.drain();
    try {
      await this.#send(org, deltas);
    } catch (error) {
      log("warn", "metrics", "a batch of metric deltas was lost", { org, error: String(error) });
    }
  }
}

function sleep(ms: number): Promise<void> {
  return ms <= 0 ? Promise.resolve() : new Promise((resolve) => setTimeout(resolve, ms));
}
