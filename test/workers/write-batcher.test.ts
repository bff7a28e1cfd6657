import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { WriteBatcher } from "../../durable-objects/write-batcher.ts";

// Any SQLite-backed object serves as the storage under test; a job id nobody uses keeps it empty.
const scratch = (name: string) => env.JOB.get(env.JOB.idFromName(`write-batcher/${name}`));

describe("WriteBatcher", () => {
  it("runs writes queued together in one batch and gives each caller its own result", async () => {
    const seen = await runInDurableObject(scratch("ok"), async (_i, state) => {
      state.storage.sql.exec("CREATE TABLE IF NOT EXISTS t (v INTEGER)");
      const writes = new WriteBatcher(state.storage);
      const insert = (v: number) => writes.run(() => state.storage.sql.exec("INSERT INTO t (v) VALUES (?) RETURNING rowid AS id", v).one().id);
      const ids = await Promise.all([insert(1), insert(2), insert(3)]);
      return { ids, rows: state.storage.sql.exec("SELECT v FROM t ORDER BY rowid").toArray().map((r) => r.v) };
    });
    expect(seen.ids).toEqual([1, 2, 3]);
    expect(seen.rows).toEqual([1, 2, 3]);
  });

  it("rolls the whole batch back when one write throws, and every caller of that batch sees the error", async () => {
    const seen = await runInDurableObject(scratch("fail"), async (_i, state) => {
      state.storage.sql.exec("CREATE TABLE IF NOT EXISTS t (v INTEGER NOT NULL)");
      const writes = new WriteBatcher(state.storage);
      const insert = (v: number | null) => writes.run(() => state.storage.sql.exec("INSERT INTO t (v) VALUES (?)", v));
      const settled = await Promise.allSettled([insert(1), insert(null), insert(3)]);
      const later = await insert(4).then(() => "stored");
      return {
        statuses: settled.map((s) => s.status),
        reason: settled[1]?.status === "rejected" ? String(settled[1].reason) : "",
        later,
        rows: state.storage.sql.exec("SELECT v FROM t ORDER BY rowid").toArray().map((r) => r.v),
      };
    });
    expect(seen.statuses).toEqual(["rejected", "rejected", "rejected"]);
    expect(seen.reason).toMatch(/NOT NULL/);
    expect(seen.later).toBe("stored");
    expect(seen.rows).toEqual([4]);
  });
});
