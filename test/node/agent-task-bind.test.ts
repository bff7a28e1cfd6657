import { describe, expect, it } from "vitest";
import { taskConnectHost } from "../../agent/src/tasks/ports.ts";
import { encodeFrame, FRAME, openFrame, parseJsonPayload, ResponsePayload } from "../../protocol/tunnel.ts";
import { until } from "./helpers/agent-control-plane.ts";
import { runAgentCommand } from "./helpers/agent-run.ts";
import { collectingTunnel } from "./helpers/agent-tunnel.ts";
import { helloSpec, listeningAddresses, useSupervisors } from "./helpers/agent-tasks.ts";
import { useTempDirs } from "./helpers/run-cli.ts";

/**
 * `zectre-agent run --task-bind-address`: on a direct node, tasks listen where the
 * proxy can reach them, and the agent's own probes and tunnel follow them there.
 * 127.0.0.2 is another loopback address (all of 127/8 is, on Linux): it differs
 * from the default without exposing anything beyond this host.
 */

const tempDir = useTempDirs();
const makeSupervisor = useSupervisors();
const BIND = "127.0.0.2";

describe("the address tasks listen on", () => {
  it("binds the task there, passes it as $HOST, probes it there, and the tunnel reaches it there", async () => {
    const h = makeSupervisor(tempDir(), { bindAddress: BIND });
    const spec = helloSpec();
    const port = (await h.supervisor.start(spec)).hostPort ?? 0;
    // Healthy means the probes found it at 127.0.0.2: nothing listens on 127.0.0.1 at that port.
    await until(() => h.supervisor.get(spec.taskId)?.state === "healthy", "healthy", 15_000);
    expect(listeningAddresses(port)).toEqual([BIND]);
    const env = (await (await fetch(`http://${BIND}:${port}/env`)).json()) as Record<string, string>;
    expect(env.HOST).toBe(BIND);
    expect(env.PORT).toBe(String(port));
    await expect(fetch(`http://127.0.0.1:${port}/`)).rejects.toThrow();

    const { tunnel, frames } = collectingTunnel({ allows: (taskId, p) => taskId === spec.taskId && p === port, taskHost: h.supervisor.taskHost });
    tunnel.handleFrame(openFrame(1, { method: "GET", path: "/", headers: [["host", "app.example"]], taskId: spec.taskId, port }));
    tunnel.handleFrame(encodeFrame(FRAME.end, 1));
    await until(() => frames.some((f) => f.type === FRAME.end), "the response's end", 10_000);
    expect(parseJsonPayload(ResponsePayload, frames.find((f) => f.type === FRAME.response)?.payload ?? new Uint8Array())?.status).toBe(200);
    const body = Buffer.concat(frames.filter((f) => f.type === FRAME.data).map((f) => f.payload)).toString();
    expect(body).toBe(`hello from ${spec.deploymentId}\n`);
  });

  it("reaches tasks bound to a wildcard on loopback, and a specific address at that address", () => {
    expect(taskConnectHost("0.0.0.0")).toBe("127.0.0.1");
    expect(taskConnectHost("::")).toBe("::1");
    expect(taskConnectHost("10.0.0.5")).toBe("10.0.0.5");
    expect(taskConnectHost("127.0.0.1")).toBe("127.0.0.1");
  });

  it("refuses a --task-bind-address that is not an IP address", async () => {
    const result = await runAgentCommand(["run", "--data-dir", tempDir(), "--task-bind-address", "web-1.internal"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      "zectre-agent: error: invalid --task-bind-address 'web-1.internal': expected an IP address such as 127.0.0.1, 10.0.0.5 or 0.0.0.0\n",
    );
  });
});
