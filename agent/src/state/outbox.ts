import { readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { MAX_FRAME_BYTES } from "../../../protocol/agent-wire.ts";
import { ensurePrivateDir, fsyncDir, isTempFile, readIfExists, safeJson, writeFileAtomic } from "./files.ts";

/**
 * `outbox/`: messages to the control plane that must not be lost (job returns,
 * including those produced while offline). Each is its own file, named by a
 * sequence number, written atomically before it is sent and deleted only when
 * the server acks its id; the connection resends whatever is left after every
 * welcome. One file per message keeps an ack a single unlink, with no log to compact.
 */

const ID_MAX = 128;
const OutboxEntry = z.looseObject({ id: z.string().min(1).max(ID_MAX), type: z.string().min(1) });

/** A wire message with an `id` the server acks once it has stored it. */
export type OutboxMessage = z.infer<typeof OutboxEntry>;

const FILE_PATTERN = /^(\d{12})\.json$/;

export class Outbox {
  readonly dir: string;
  /** Pending messages in enqueue order (the Map keeps insertion order), by id. */
  readonly #pending = new Map<string, { file: string; message: OutboxMessage }>();
  #nextSeq = 1;
  /** Files that could not be read back; left in place (not deleted) for a human to look at, and skipped. */
  readonly unreadable: string[] = [];

  private constructor(dir: string) {
    this.dir = dir;
  }

  static open(dir: string): Outbox {
    ensurePrivateDir(dir);
    const outbox = new Outbox(dir);
    const names = readdirSync(dir).sort();
    for (const name of names) {
      if (isTempFile(name)) {
        // A crash between write and rename: the message was never enqueued, so its caller never relied on it.
        rmSync(join(dir, name), { force: true });
        continue;
      }
      const match = FILE_PATTERN.exec(name);
      if (!match) continue;
      outbox.#nextSeq = Math.max(outbox.#nextSeq, Number(match[1]) + 1);
      const parsed = safeJson(readIfExists(join(dir, name)));
      const entry = OutboxEntry.safeParse(parsed);
      if (!entry.success) {
        outbox.unreadable.push(name);
        continue;
      }
      // Two files with one id can only come from a crash between enqueue and ack bookkeeping; the first wins.
      if (!outbox.#pending.has(entry.data.id)) outbox.#pending.set(entry.data.id, { file: name, message: entry.data });
    }
    return outbox;
  }

  /**
   * Durable before it returns. Enqueueing an id that is still pending is a
   * no-op, so a producer that retries after a crash cannot send a message twice.
   */
  enqueue(message: OutboxMessage): string {
    const entry = OutboxEntry.parse(message);
    if (this.#pending.has(entry.id)) return entry.id;
    const text = JSON.stringify(entry);
    // The server closes the socket on an oversize frame; queued, it would be resent (and refused) forever.
    if (Buffer.byteLength(text) > MAX_FRAME_BYTES) {
      throw new RangeError(`outbox message ${entry.id} is ${Buffer.byteLength(text)} bytes; frames are limited to ${MAX_FRAME_BYTES}`);
    }
    const file = `${String(this.#nextSeq++).padStart(12, "0")}.json`;
    writeFileAtomic(join(this.dir, file), text);
    this.#pending.set(entry.id, { file, message: entry });
    return entry.id;
  }

  /** Unacked messages, oldest first. */
  pending(): OutboxMessage[] {
    return [...this.#pending.values()].map((entry) => entry.message);
  }

  has(id: string): boolean {
    return this.#pending.has(id);
  }

  get size(): number {
    return this.#pending.size;
  }

  /** Removes the acked messages; unknown ids (a second ack for a resend) are ignored. Returns how many were removed. */
  ack(ids: Iterable<string>): number {
    let removed = 0;
    for (const id of ids) {
      const entry = this.#pending.get(id);
      if (!entry) continue;
      rmSync(join(this.dir, entry.file), { force: true });
      this.#pending.delete(id);
      removed++;
    }
    if (removed > 0) fsyncDir(this.dir);
    return removed;
  }
}
