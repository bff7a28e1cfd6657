import { readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { MAX_FRAME_BYTES } from "../../../protocol/agent-wire.ts";
import { type LogLine, TaskLogsMessage } from "../../../protocol/deployments.ts";
import { ensurePrivateDir, fsyncDir, isTempFile, readIfExists, safeJson, writeFileAtomic } from "./files.ts";

/**
 * `log-outbox/`: batches of task output waiting for a server ack. Like the
 * outbox (one file per message, written atomically, unlinked on ack, resent
 * after every welcome) but bounded: task output is plentiful and a host may be
 * offline for days, so past the caps the OLDEST batches are dropped. Only
 * logs are ever dropped; task status and job returns live in the real outbox.
 */

export const DEFAULT_LOG_BACKLOG_BYTES = 20 * 1024 * 1024;
export const DEFAULT_LOG_BACKLOG_BATCHES = 2_000;

export interface LogOutboxOptions {
  readonly maxBytes?: number;
  readonly maxBatches?: number;
}

/** How many lines of one task a cap dropped. */
export interface DroppedLines {
  readonly taskId: string;
  readonly app: string;
  readonly deploymentId: string;
  lines: number;
}

const FILE_PATTERN = /^(\d{12})\.json$/;

/** The line that stands in for dropped lines, at the head of the next batch of the task they came from. */
export function droppedMarker(count: number): string {
  return `[zectre] ${count} log lines dropped while the control plane was unreachable`;
}

const MARKER_PATTERN = /^\[zectre\] (\d+) log lines dropped while the control plane was unreachable$/;

/** How many lines a dropped line stands for: a marker carries its count forward, so dropping it loses no tally. */
function linesIn(line: LogLine): number {
  const match = line.stream === "stderr" ? MARKER_PATTERN.exec(line.line) : null;
  return match ? Number(match[1]) : 1;
}

interface Entry {
  readonly file: string;
  readonly bytes: number;
}

export class LogOutbox {
  readonly dir: string;
  readonly maxBytes: number;
  readonly maxBatches: number;
  /** Pending batches in enqueue order, by id. */
  readonly #entries = new Map<string, Entry>();
  #bytes = 0;
  #nextSeq = 1;

  private constructor(dir: string, options: LogOutboxOptions) {
    this.dir = dir;
    this.maxBytes = Math.max(1, options.maxBytes ?? DEFAULT_LOG_BACKLOG_BYTES);
    this.maxBatches = Math.max(1, options.maxBatches ?? DEFAULT_LOG_BACKLOG_BATCHES);
  }

  static open(dir: string, options: LogOutboxOptions = {}): LogOutbox {
    ensurePrivateDir(dir);
    const outbox = new LogOutbox(dir, options);
    for (const name of readdirSync(dir).sort()) {
      const match = FILE_PATTERN.exec(name);
      if (isTempFile(name) || !match) {
        // A write cut short by a crash, or something that is not ours: either way nothing waits on it.
        if (isTempFile(name)) rmSync(join(dir, name), { force: true });
        continue;
      }
      outbox.#nextSeq = Math.max(outbox.#nextSeq, Number(match[1]) + 1);
      const text = readIfExists(join(dir, name));
      const parsed = text === undefined ? undefined : TaskLogsMessage.safeParse(safeJson(text));
      // Unlike job returns, an unreadable log batch is not worth keeping for a human: it is dropped.
      if (!parsed?.success || outbox.#entries.has(parsed.data.id)) {
        rmSync(join(dir, name), { force: true });
        continue;
      }
      outbox.#add(parsed.data.id, { file: name, bytes: Buffer.byteLength(text ?? "") });
    }
    return outbox;
  }

  get size(): number {
    return this.#entries.size;
  }

  get bytes(): number {
    return this.#bytes;
  }

  has(id: string): boolean {
    return this.#entries.has(id);
  }

  /**
   * Durable before it returns. Makes room first by dropping the oldest batches
   * until both caps hold, and says whose lines it dropped, so the caller can
   * tell the reader of those logs that something is missing.
   */
  enqueue(message: TaskLogsMessage): DroppedLines[] {
    const parsed = TaskLogsMessage.parse(message);
    if (this.#entries.has(parsed.id)) return [];
    const text = JSON.stringify(parsed);
    const bytes = Buffer.byteLength(text);
    if (bytes > MAX_FRAME_BYTES) throw new RangeError(`log batch ${parsed.id} is ${bytes} bytes; frames are limited to ${MAX_FRAME_BYTES}`);
    const dropped = new Map<string, DroppedLines>();
    while (this.#entries.size > 0 && (this.#entries.size + 1 > this.maxBatches || this.#bytes + bytes > this.maxBytes)) {
      this.#dropOldest(dropped);
    }
    const file = `${String(this.#nextSeq++).padStart(12, "0")}.json`;
    writeFileAtomic(join(this.dir, file), text);
    this.#add(parsed.id, { file, bytes });
    return [...dropped.values()];
  }

  /** Unacked batches, oldest first (read from disk: the backlog may be large, so it is not kept in memory). */
  pending(): TaskLogsMessage[] {
    const messages: TaskLogsMessage[] = [];
    for (const entry of this.#entries.values()) {
      const parsed = TaskLogsMessage.safeParse(safeJson(readIfExists(join(this.dir, entry.file))));
      if (parsed.success) messages.push(parsed.data);
    }
    return messages;
  }

  /** Removes acked batches; ids that are not log batches (job returns, statuses) are ignored. */
  ack(ids: Iterable<string>): number {
    let removed = 0;
    for (const id of ids) {
      const entry = this.#entries.get(id);
      if (!entry) continue;
      this.#remove(id, entry);
      removed++;
    }
    if (removed > 0) fsyncDir(this.dir);
    return removed;
  }

  #add(id: string, entry: Entry): void {
    this.#entries.set(id, entry);
    this.#bytes += entry.bytes;
  }

  #remove(id: string, entry: Entry): void {
    rmSync(join(this.dir, entry.file), { force: true });
    this.#entries.delete(id);
    this.#bytes -= entry.bytes;
  }

  #dropOldest(dropped: Map<string, DroppedLines>): void {
    const oldest = this.#entries.entries().next().value;
    if (!oldest) return;
    const [id, entry] = oldest;
    const parsed = TaskLogsMessage.safeParse(safeJson(readIfExists(join(this.dir, entry.file))));
    for (const line of parsed.success ? parsed.data.lines : []) {
      const tally = dropped.get(line.taskId) ?? { taskId: line.taskId, app: line.app, deploymentId: line.deploymentId, lines: 0 };
      tally.lines += linesIn(line);
      dropped.set(line.taskId, tally);
    }
    this.#remove(id, entry);
  }
}
