/** An expected failure: `main` prints its message as one `zectre-agent: error:` line and exits 1. */
export class AgentError extends Error {
  override readonly name: string = "AgentError";
  readonly exitCode: number;

  constructor(message: string, exitCode = 1) {
    super(message);
    this.exitCode = exitCode;
  }
}

/** Exit code for a node the control plane rejected or revoked: restarting cannot help, so systemd must not. */
export const EXIT_REVOKED = 3;

export { oneLine } from "../../lib/network-errors.ts";
