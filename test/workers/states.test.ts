import { describe, expect, it } from "vitest";
import { connect, onlineAgent } from "./agent-helpers.ts";
import { call, createOrg, createToken } from "./helpers.ts";

interface Info {
  version: string;
  files: string[];
  bytes: number;
}

const TREE = { "top.yaml": '"*":\n  - base\n', "base.yaml": "motd:\n  file.managed:\n    - name: /tmp/motd\n" };

function statesActions(messages: Array<Record<string, unknown>>) {
  return messages.filter((m) => m.type === "action" && (m.action as { kind: string }).kind === "states.update");
}

describe("state trees", () => {
  it("stores a tree by content hash and pushes it to connected nodes", async () => {
    const { name, adminToken } = await createOrg("states");
    const { socket } = await onlineAgent(adminToken, name, "s-1");
    const res = await call<Info>("PUT", "/api/v1/states", { token: adminToken, body: { files: TREE } });
    expect(res.status).toBe(200);
    expect(res.body.version).toMatch(/^[0-9a-f]{16}$/);
    expect(res.body.files).toEqual(["base.yaml", "top.yaml"]);
    await expect.poll(() => statesActions(socket.messages).length).toBe(1);
    expect(statesActions(socket.messages)[0]?.action).toEqual({ kind: "states.update", version: res.body.version, files: TREE });

    // The same tree again has the same version and is not sent again.
    const again = await call<Info>("PUT", "/api/v1/states", { token: adminToken, body: { files: TREE } });
    expect(again.body.version).toBe(res.body.version);
    await new Promise((r) => setTimeout(r, 100));
    expect(statesActions(socket.messages)).toHaveLength(1);
    const shown = await call<Info>("GET", "/api/v1/states", { token: adminToken });
    expect(shown.body).toMatchObject({ version: res.body.version, files: ["base.yaml", "top.yaml"] });
    socket.ws.close(1000);
  });

  it("delivers the newest tree to a node that was offline", async () => {
    const { name, adminToken } = await createOrg("states-off");
    const { agent, socket } = await onlineAgent(adminToken, name, "o-1");
    socket.ws.close(1000);
    await socket.closed;
    await call("PUT", "/api/v1/states", { token: adminToken, body: { files: TREE } });
    const v2 = await call<Info>("PUT", "/api/v1/states", { token: adminToken, body: { files: { ...TREE, "extra.yaml": "x: {}\n" } } });
    const back = await connect(name, agent);
    await back.next("welcome");
    await expect.poll(() => statesActions(back.messages).length).toBe(1);
    expect((statesActions(back.messages)[0]?.action as { version: string }).version).toBe(v2.body.version);
    back.ws.close(1000);
  });

  it("rejects bad trees and changes nothing", async () => {
    const { adminToken } = await createOrg("states-bad");
    const cases: unknown[] = [
      { files: {} },
      { files: { "../etc/passwd.yaml": "x" } },
      { files: { "/abs.yaml": "x" } },
      { files: { "notes.txt": "x" } },
      { files: { "big.yaml": "x".repeat(600 * 1024) } },
      { files: TREE, extra: true },
    ];
    for (const body of cases) {
      const res = await call("PUT", "/api/v1/states", { token: adminToken, body });
      expect([400, 413], JSON.stringify(body).slice(0, 60)).toContain(res.status);
    }
    expect((await call("GET", "/api/v1/states", { token: adminToken })).status).toBe(404);
    const operator = await createToken(adminToken, "op", "operate");
    expect((await call("PUT", "/api/v1/states", { token: operator, body: { files: TREE } })).status).toBe(403);
  });
});
