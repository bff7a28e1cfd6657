import { appendFileSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { openAgentState } from "../../agent/src/state/agent-state.ts";
import { dataDirPaths, defaultDataDir } from "../../agent/src/state/data-dir.ts";
import { ensurePrivateDir, JsonlFile, writeFileAtomic } from "../../agent/src/state/files.ts";
import { DedupLedger } from "../../agent/src/state/ledger.ts";
import { Outbox } from "../../agent/src/state/outbox.ts";
import { SettingsStore } from "../../agent/src/state/settings.ts";
import { MAX_FRAME_BYTES } from "../../protocol/agent-wire.ts";
import { useTempDirs } from "./helpers/run-cli.ts";

const tempDir = useTempDirs();
const mode = (path: string) => statSync(path).mode & 0o777;

describe("data dir", () => {
  it("defaults to the env var, then /var/lib for root, then the user's data dir", () => {
    expect(defaultDataDir({ env: { ZECTRE_AGENT_DATA_DIR: "/srv/agent" }, uid: 0, home: "/root" })).toBe("/srv/agent");
    expect(defaultDataDir({ env: {}, uid: 0, home: "/root" })).toBe("/var/lib/zectre-agent");
    expect(defaultDataDir({ env: { ZECTRE_AGENT_DATA_DIR: "" }, uid: 1000, home: "/home/ada" })).toBe("/home/ada/.local/share/zectre-agent");
    expect(defaultDataDir({ env: { XDG_DATA_HOME: "/data/ada" }, uid: 1000, home: "/home/ada" })).toBe("/data/ada/zectre-agent");
  });

  it("creates every piece private: dir 0700, files 0600", () => {
    const paths = dataDirPaths(join(tempDir(), "agent"));
    ensurePrivateDir(paths.dir);
    const state = openAgentState(paths);
    state.settings.apply({ version: "v1", settings: { a: 1 } });
    state.ledger.record("job-1", 1);
    state.appliedActions.record("act-1", 0);
    state.outbox.enqueue({ id: "r1", type: "return" });
    state.close();
    expect(mode(paths.dir)).toBe(0o700);
    expect(mode(paths.outbox)).toBe(0o700);
    for (const file of [paths.settings, paths.ledger, paths.actions, join(paths.outbox, readdirSync(paths.outbox)[0] ?? "")]) {
      expect([file, mode(file)]).toEqual([file, 0o600]);
    }
  });

  it("tightens a data dir that already existed with loose permissions", () => {
    const dir = join(tempDir(), "loose");
    mkdirSync(dir, { mode: 0o755 });
    ensurePrivateDir(dir);
    expect(mode(dir)).toBe(0o700);
  });
});

describe("settings snapshot", () => {
  it("is readable after a restart and skips a version it already has", () => {
    const path = join(tempDir(), "settings.json");
    const store = SettingsStore.open(path);
    expect(store.currentSettings()).toBeNull();
    const seen: string[] = [];
    store.onChange((snapshot) => seen.push(snapshot.version));
    expect(store.apply({ version: "h1", settings: { "log.level": "debug", limits: { cpu: 2 } } }, new Date("2026-02-01T00:00:00Z"))).toBe(true);
    expect(store.apply({ version: "h1", settings: { other: true } })).toBe(false);
    expect(seen).toEqual(["h1"]);
    expect(JSON.parse(readFileSync(path, "utf8"))).toEqual({
      version: "h1",
      settings: { "log.level": "debug", limits: { cpu: 2 } },
      receivedAt: "2026-02-01T00:00:00.000Z",
    });
    expect(SettingsStore.open(path).currentSettings()?.settings).toEqual({ "log.level": "debug", limits: { cpu: 2 } });
  });

  it("boots without a snapshot when the file is damaged, and says why", () => {
    const path = join(tempDir(), "settings.json");
    writeFileSync(path, '{"version": "h1", "sett');
    const store = SettingsStore.open(path);
    expect(store.currentSettings()).toBeNull();
    expect(store.loadProblem).toMatch(/not a valid settings snapshot/);
    expect(store.apply({ version: "h2", settings: {} })).toBe(true);
    expect(SettingsStore.open(path).currentSettings()?.version).toBe("h2");
  });

  it("writes through a temp file, so a leftover temp file never shadows the snapshot", () => {
    const dir = tempDir();
    const path = join(dir, "settings.json");
    writeFileAtomic(path, JSON.stringify({ version: "a", settings: {}, receivedAt: "t" }));
    writeFileSync(join(dir, ".settings.json.999.dead.tmp"), '{"version":"b"');
    expect(SettingsStore.open(path).currentSettings()?.version).toBe("a");
  });
});

describe("dedup ledger", () => {
  it("remembers jid → epoch across reopen, and treats a higher epoch as new", () => {
    const path = join(tempDir(), "ledger.jsonl");
    const ledger = DedupLedger.open(path);
    expect(ledger.seen("j1", 1)).toBe(false);
    ledger.record("j1", 1);
    ledger.record("j2", 4);
    expect(ledger.seen("j1", 1)).toBe(true);
    ledger.close();

    const reopened = DedupLedger.open(path);
    expect(reopened.seen("j1", 1)).toBe(true);
    expect(reopened.seen("j1", 0)).toBe(true);
    expect(reopened.seen("j1", 2)).toBe(false);
    expect(reopened.seen("j2", 4)).toBe(true);
    expect(reopened.seen("j3", 0)).toBe(false);
    reopened.close();
  });

  it("is durable when record returns: the line is on disk before anything else happens", () => {
    const path = join(tempDir(), "ledger.jsonl");
    const ledger = DedupLedger.open(path);
    ledger.record("j1", 7, new Date("2026-03-01T00:00:00Z"));
    // Read by another handle, without closing the first: nothing is buffered in memory.
    expect(readFileSync(path, "utf8")).toBe('{"id":"j1","epoch":7,"at":"2026-03-01T00:00:00.000Z"}\n');
    ledger.close();
  });

  it("ignores a torn last line and keeps working after it", () => {
    const path = join(tempDir(), "ledger.jsonl");
    const ledger = DedupLedger.open(path);
    ledger.record("j1", 1);
    ledger.record("j2", 1);
    ledger.close();
    // A crash in the middle of an append.
    appendFileSync(path, '{"id":"j3","ep');

    const reopened = DedupLedger.open(path);
    expect(reopened.seen("j1", 1)).toBe(true);
    expect(reopened.seen("j2", 1)).toBe(true);
    expect(reopened.seen("j3", 0)).toBe(false);
    reopened.record("j4", 2);
    reopened.close();

    // The fragment was cut off, so the new line did not glue itself to it.
    const lines = readFileSync(path, "utf8").trimEnd().split("\n");
    expect(lines.map((line) => (JSON.parse(line) as { id: string }).id)).toEqual(["j1", "j2", "j4"]);
    const third = DedupLedger.open(path);
    expect(["j1", "j2", "j4"].map((id) => third.seen(id, 1))).toEqual([true, true, true]);
    third.close();
  });

  it("skips a garbled line in the middle instead of refusing to start", () => {
    const path = join(tempDir(), "ledger.jsonl");
    writeFileSync(path, '{"id":"a","epoch":1,"at":"t"}\nnot json\n{"id":"b","epoch":2,"at":"t"}\n');
    const ledger = DedupLedger.open(path);
    expect([ledger.seen("a", 1), ledger.seen("b", 2)]).toEqual([true, true]);
    ledger.close();
    expect(readFileSync(path, "utf8")).not.toContain("not json");
  });

  it("stays bounded: compaction keeps the newest ids", () => {
    const path = join(tempDir(), "ledger.jsonl");
    const ledger = DedupLedger.open(path, { maxEntries: 5 });
    for (let i = 0; i < 23; i++) ledger.record(`j${i}`, 1);
    expect(ledger.size).toBe(5);
    ledger.close();
    const lines = readFileSync(path, "utf8").trimEnd().split("\n");
    expect(lines.length).toBeLessThanOrEqual(10);
    const reopened = DedupLedger.open(path, { maxEntries: 5 });
    expect(reopened.seen("j22", 1)).toBe(true);
    expect(reopened.seen("j18", 1)).toBe(true);
    expect(reopened.seen("j0", 1)).toBe(false);
    reopened.close();
  });

  it("a JSONL file of whole lines loads every record", () => {
    const file = new JsonlFile(join(tempDir(), "x.jsonl"));
    file.appendMany([{ a: 1 }, { b: 2 }]);
    file.close();
    expect(file.load()).toEqual({ records: [{ a: 1 }, { b: 2 }], skipped: 0, tornBytes: 0 });
  });
});

describe("outbox", () => {
  it("survives a reopen, keeps order, and acks remove exactly the acked messages", () => {
    const dir = join(tempDir(), "outbox");
    const outbox = Outbox.open(dir);
    expect(outbox.enqueue({ id: "r1", type: "return", jid: "j1", data: { ok: true } })).toBe("r1");
    outbox.enqueue({ id: "r2", type: "return", jid: "j2" });
    outbox.enqueue({ id: "r3", type: "return", jid: "j3" });
    // A producer retrying after a crash does not queue the same id twice.
    outbox.enqueue({ id: "r2", type: "return", jid: "j2" });
    expect(outbox.pending().map((m) => m.id)).toEqual(["r1", "r2", "r3"]);

    const reopened = Outbox.open(dir);
    expect(reopened.pending()).toEqual([
      { id: "r1", type: "return", jid: "j1", data: { ok: true } },
      { id: "r2", type: "return", jid: "j2" },
      { id: "r3", type: "return", jid: "j3" },
    ]);
    expect(reopened.ack(["r2", "unknown"])).toBe(1);
    reopened.enqueue({ id: "r4", type: "return" });

    const third = Outbox.open(dir);
    expect(third.pending().map((m) => m.id)).toEqual(["r1", "r3", "r4"]);
    expect(third.ack(["r1", "r3", "r4"])).toBe(3);
    expect(readdirSync(dir)).toEqual([]);
    expect(Outbox.open(dir).pending()).toEqual([]);
  });

  it("drops the temp file of an enqueue that crashed before its rename and skips damaged files", () => {
    const dir = join(tempDir(), "outbox");
    const outbox = Outbox.open(dir);
    outbox.enqueue({ id: "r1", type: "return" });
    writeFileSync(join(dir, ".000000000002.json.1.ab.tmp"), '{"id":"r2","ty');
    writeFileSync(join(dir, "000000000003.json"), "garbage");
    const reopened = Outbox.open(dir);
    expect(reopened.pending().map((m) => m.id)).toEqual(["r1"]);
    expect(reopened.unreadable).toEqual(["000000000003.json"]);
    expect(readdirSync(dir).some((name) => name.endsWith(".tmp"))).toBe(false);
    // New messages still sort after everything on disk.
    reopened.enqueue({ id: "r5", type: "return" });
    expect(Outbox.open(dir).pending().map((m) => m.id)).toEqual(["r1", "r5"]);
  });

  it("refuses a message without an id or too big for one frame", () => {
    const outbox = Outbox.open(join(tempDir(), "outbox"));
    expect(() => outbox.enqueue({ id: "", type: "return" })).toThrow();
    expect(() => outbox.enqueue({ id: "big", type: "return", data: "x".repeat(MAX_FRAME_BYTES) })).toThrow(/frames are limited/);
    expect(outbox.size).toBe(0);
  });
});
