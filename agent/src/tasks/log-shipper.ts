import { randomBytes } from "node:crypto";
import { MAX_FRAME_BYTES, WIRE_VERSION } from "../../../protocol/agent-wire.ts";
import { type LogLine, MAX_LOG_BATCH, type TaskLogsMessage } from "../../../protocol/deployments.ts";
import type { Logger } from "../log.ts";
import { messageOf } from "../state/files.ts";
import { droppedMarker, type DroppedLines, type LogOutbox } from "../state/log-outbox.ts";

/**
 * Task output on its way to the control plane: lines are collected into
 * `task.logs` batches (at most 500 lines, or whatever a second brought),
 * stored in the bounded log outbox, then sent if connected. Lines the outbox
 * had to drop are announced by a marker line at the head of the next batch.
 */

export const DEFAULT_LOG_FLUSH_MS = 1_000;
/** Room for the message envelope around the lines. */
const ENVELOPE_BYTES = 1_024;

export interface LogShipperOptions {
  readonly outbox: LogOutbox;
  /** Sends now when connected (true); otherwise the batch waits in the outbox for the next welcome. */
  readonly send: (message: TaskLogsMessage) => boolean;
  readonly logger: Logger;
  readonly flushMs?: number;
  readonly maxLines?: number;
  readonly now?: () => Date;
}

export class LogShipper {
  readonly #options: LogShipperOptions;
  readonly #maxLines: number;
  readonly #now: () => Date;
  #buffer: LogLine[] = [];
  /** Lines the outbox dropped since the last batch, per task: they become marker lines. */
  readonly #dropped = new Map<string, DroppedLines>();
  #timer: NodeJS.Timeout | undefined;

  constructor(options: LogShipperOptions) {
    this.#options = options;
    this.#maxLines = Math.min(MAX_LOG_BATCH, Math.max(1, options.maxLines ?? MAX_LOG_BATCH));
    this.#now = options.now ?? (() => new Date());
  }

  push(line: LogLine): void {
    this.#buffer.push(line);
    // Pending markers take room in the next batch too, so a full batch never leaves a straggler batch behind.
    if (this.#buffer.length + Math.min(this.#dropped.size, this.#maxLines - 1) >= this.#maxLines) this.flush();
    else this.#timer ??= setTimeout(() => this.flush(), this.#options.flushMs ?? DEFAULT_LOG_FLUSH_MS);
  }

  /** Lines dropped so far that no batch has announced yet. */
  get unannounced(): number {
    return [...this.#dropped.values()].reduce((sum, tally) => sum + tally.lines, 0);
  }

  /** Stores (and sends) everything buffered. Markers only ride along with real lines, so a full outbox is not churned by markers alone. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    while (this.#buffer.length > 0) {
      const markers = this.#takeMarkers();
      const lines = [...markers, ...this.#takeLines(this.#maxLines - markers.length)];
      this.#store({ type: "task.logs", v: WIRE_VERSION, id: `logs.${Date.now().toString(36)}.${randomBytes(6).toString("hex")}`, lines });
    }
  }

  /** Flushes and disarms the timer (agent stopping). */
  stop(): void {
    this.flush();
  }

  #takeMarkers(): LogLine[] {
    const ts = this.#now().toISOString();
    const markers = [...this.#dropped.values()].slice(0, this.#maxLines - 1).map(
      (tally): LogLine => ({ taskId: tally.taskId, app: tally.app, deploymentId: tally.deploymentId, stream: "stderr", ts, line: droppedMarker(tally.lines) }),
    );
    for (const marker of markers) this.#dropped.delete(marker.taskId);
    return markers;
  }

  /** As many buffered lines as fit one batch, by count and by frame size (at least one). */
  #takeLines(room: number): LogLine[] {
    let bytes = ENVELOPE_BYTES;
    let count = 0;
    for (const line of this.#buffer) {
      if (count >= Math.max(1, room)) break;
      bytes += Buffer.byteLength(JSON.stringify(line)) + 1;
      if (count > 0 && bytes > MAX_FRAME_BYTES - ENVELOPE_BYTES) break;
      count++;
    }
    return this.#buffer.splice(0, count);
  }

  #store(message: TaskLogsMessage): void {
    let dropped: DroppedLines[];
    try {
      dropped = this.#options.outbox.enqueue(message);
    } catch (error) {
      // A full or failing disk must not take the tasks down with it; these lines are lost and said to be.
      this.#options.logger.error("could not store task log lines", { lines: message.lines.length, error: messageOf(error) });
      return;
    }
    for (const tally of dropped) {
      const known = this.#dropped.get(tally.taskId);
      if (known) known.lines += tally.lines;
      else this.#dropped.set(tally.taskId, { ...tally });
    }
    if (dropped.length > 0) {
      this.#options.logger.warn("log backlog full; dropped the oldest task log lines", {
        lines: dropped.reduce((sum, tally) => sum + tally.lines, 0),
        backlogBytes: this.#options.outbox.bytes,
        backlogBatches: this.#options.outbox.size,
      });
    }
    this.#options.send(message);
  }
}
