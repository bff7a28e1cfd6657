import * as fs from "node:fs";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { DedupLedger } from "../../agent/src/state/ledger.ts";
import { Outbox } from "../../agent/src/state/outbox.ts";
import { SettingsStore } from "../../agent/src/state/settings.ts";
import { useTempDirs } from "./helpers/run-cli.ts";

/**
 * Crashes in the middle of a write, simulated: the write puts half its bytes on
 * disk and then the "process dies" (throws). What is on disk afterwards is
 * what a rebooted agent would find.
 */

vi.mock("node:fs", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:fs")>();
  return { ...actual, writeSync: vi.fn(actual.writeSync) };
});

const tempDir = useTempDirs();
const realWriteSync = (await vi.importActual<typeof import("node:fs")>("node:fs")).writeSync;

/** The next write stores only its first half, then fails like a power cut would. */
function crashDuringNextWrite(): void {
  // The state modules only ever write strings.
  const halfThenDie = (fd: number, data: string): never => {
    realWriteSync(fd, data.slice(0, Math.floor(data.length / 2)));
    throw new Error("simulated crash");
  };
  vi.mocked(fs.writeSync).mockImplementationOnce(halfThenDie as unknown as typeof fs.writeSync);
}

afterEach(() => {
  vi.mocked(fs.writeSync).mockReset();
  vi.mocked(fs.writeSync).mockImplementation(realWriteSync);
});

describe("a crash in the middle of a write", () => {
  it("leaves the previous settings snapshot whole", () => {
    const path = join(tempDir(), "settings.json");
    const store = SettingsStore.open(path);
    store.apply({ version: "v1", settings: { a: "x".repeat(10_000) } });
    const before = readFileSync(path, "utf8");

    crashDuringNextWrite();
    expect(() => store.apply({ version: "v2", settings: { a: "y".repeat(10_000) } })).toThrow("simulated crash");
    expect(readFileSync(path, "utf8")).toBe(before);
    const rebooted = SettingsStore.open(path);
    expect(rebooted.loadProblem).toBeUndefined();
    expect(rebooted.currentSettings()?.version).toBe("v1");
    // The snapshot in memory did not move on either: what was not stored was not applied.
    expect(store.currentSettings()?.version).toBe("v1");
  });

  it("loses only the ledger record being written, and the ledger still loads", () => {
    const path = join(tempDir(), "ledger.jsonl");
    const ledger = DedupLedger.open(path);
    ledger.record("j1", 1);
    crashDuringNextWrite();
    expect(() => ledger.record("j2", 1)).toThrow("simulated crash");
    ledger.close();
    expect(readFileSync(path, "utf8")).toMatch(/\n\{"id":"j2"/);

    const rebooted = DedupLedger.open(path);
    expect(rebooted.seen("j1", 1)).toBe(true);
    // Not recorded, so the job was never started: running it after the reboot is right.
    expect(rebooted.seen("j2", 1)).toBe(false);
    rebooted.record("j2", 1);
    rebooted.close();
    expect(DedupLedger.open(path).seen("j2", 1)).toBe(true);
  });

  it("never leaves half a message in the outbox", () => {
    const dir = join(tempDir(), "outbox");
    const outbox = Outbox.open(dir);
    outbox.enqueue({ id: "r1", type: "return", data: "a".repeat(1000) });
    crashDuringNextWrite();
    expect(() => outbox.enqueue({ id: "r2", type: "return", data: "b".repeat(1000) })).toThrow("simulated crash");
    expect(readdirSync(dir)).toEqual(["000000000001.json"]);
    const rebooted = Outbox.open(dir);
    expect(rebooted.pending().map((m) => m.id)).toEqual(["r1"]);
    expect(rebooted.unreadable).toEqual([]);
  });
});
