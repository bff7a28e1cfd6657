import { describe, expect, it } from "vitest";
import { CoalescedWrites } from "../../durable-objects/job/coalesced-writes.ts";

describe("CoalescedWrites: group commit for one object's writes", () => {
  it("runs the writes of one turn later, together and in order; each caller gets its own result or error", async () => {
    const writes = new CoalescedWrites();
    const ran: string[] = [];
    const first = writes.run(() => (ran.push("first"), 1));
    const failing = writes.run(() => {
      ran.push("failing");
      throw new Error("constraint failed");
    });
    const last = writes.run(() => (ran.push("last"), 3));
    expect(ran).toEqual([]);
    await expect(first).resolves.toBe(1);
    // By the time the first caller resumes, the whole batch has run.
    expect(ran).toEqual(["first", "failing", "last"]);
    await expect(failing).rejects.toThrow("constraint failed");
    await expect(last).resolves.toBe(3);
  });

  it("takes writes queued by events that arrive before the flush, and starts a new batch after it", async () => {
    const writes = new CoalescedWrites();
    const ran: string[] = [];
    const record = (name: string) => () => (ran.push(name), name);
    const early = writes.run(record("a"));
    // Another event, as an RPC call delivered in the meantime would be.
    await Promise.resolve();
    const joined = writes.run(record("b"));
    await early;
    expect(ran).toEqual(["a", "b"]);
    await joined;
    const later = writes.run(record("c"));
    expect(ran).toEqual(["a", "b"]);
    await expect(later).resolves.toBe("c");
    expect(ran).toEqual(["a", "b", "c"]);
  });
});
