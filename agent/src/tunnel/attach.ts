import type { AgentConnection } from "../connection.ts";
import type { Logger } from "../log.ts";
import type { TaskSupervisor } from "../tasks/supervisor.ts";
import { AgentTunnel } from "./tunnel.ts";

/** Task states whose process may be listening on its host port. */
const SERVING = new Set(["starting", "healthy", "unhealthy"]);

/** Wires the tunnel to the connection: binary frames in and out, every stream ended when the socket drops. */
export function attachTunnel(
  connection: Pick<AgentConnection, "on" | "sendBinary">,
  tasks: Pick<TaskSupervisor, "get" | "taskHost">,
  logger: Logger,
): AgentTunnel {
  const tunnel = new AgentTunnel({
    send: (frame) => connection.sendBinary(frame),
    allows: (taskId, port) => {
      const task = tasks.get(taskId);
      return task !== undefined && task.hostPort === port && SERVING.has(task.state);
    },
    logger: logger.child({ component: "tunnel" }),
    taskHost: tasks.taskHost,
  });
  connection.on("binary", (frame) => tunnel.handleFrame(frame));
  connection.on("disconnected", () => tunnel.closeAll());
  return tunnel;
}
