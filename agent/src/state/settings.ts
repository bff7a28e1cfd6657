import { z } from "zod";
import { messageOf, readIfExists, writeFileAtomic } from "./files.ts";

/**
 * `settings.json`: the last settings the control plane sent, kept so a host
 * that boots while the control plane is unreachable still runs with its
 * last-known-good configuration.
 */

export const SettingsSnapshot = z.object({
  /** The server's content hash of `settings`. */
  version: z.string(),
  settings: z.record(z.string(), z.json()),
  receivedAt: z.string(),
});
export type SettingsSnapshot = z.infer<typeof SettingsSnapshot>;

export type SettingsListener = (snapshot: SettingsSnapshot) => void;

export class SettingsStore {
  readonly path: string;
  /** Why the file on disk could not be used, if it could not; the store then starts empty. */
  readonly loadProblem: string | undefined;
  #current: SettingsSnapshot | null;
  readonly #listeners = new Set<SettingsListener>();

  private constructor(path: string, current: SettingsSnapshot | null, loadProblem: string | undefined) {
    this.path = path;
    this.#current = current;
    this.loadProblem = loadProblem;
  }

  /**
   * Never throws on a bad file: a node must boot even if its snapshot was
   * damaged by hand, and the next update from the server replaces it.
   */
  static open(path: string): SettingsStore {
    let text: string | undefined;
    try {
      text = readIfExists(path);
    } catch (error) {
      return new SettingsStore(path, null, `cannot read ${path}: ${messageOf(error)}`);
    }
    if (text === undefined) return new SettingsStore(path, null, undefined);
    try {
      return new SettingsStore(path, SettingsSnapshot.parse(JSON.parse(text)), undefined);
    } catch (error) {
      return new SettingsStore(path, null, `${path} is not a valid settings snapshot (${messageOf(error).split("\n")[0]})`);
    }
  }

  /** The last-known-good snapshot, or null before the first update ever arrived. */
  currentSettings(): SettingsSnapshot | null {
    return this.#current;
  }

  /**
   * Persists an update before anyone sees it, so an ack sent after this returns
   * never acknowledges settings a crash could lose. Returns false (and writes
   * nothing) when the snapshot already has this version.
   */
  apply(update: { version: string; settings: SettingsSnapshot["settings"] }, now: Date = new Date()): boolean {
    if (this.#current?.version === update.version) return false;
    const snapshot: SettingsSnapshot = { version: update.version, settings: update.settings, receivedAt: now.toISOString() };
    writeFileAtomic(this.path, `${JSON.stringify(snapshot, null, 2)}\n`);
    this.#current = snapshot;
    for (const listener of this.#listeners) listener(snapshot);
    return true;
  }

  /** Called after each applied update; returns an unsubscribe function. */
  onChange(listener: SettingsListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
