/** An expected failure: `main` prints its message as a single `zectre: error:` line and exits 1. */
export class CliError extends Error {
  override readonly name: string = "CliError";
}

/**
 * A mistake on the command line. `commandPath` names the command whose `--help`
 * would have prevented it, so the error line can point there.
 */
export class UsageError extends CliError {
  override readonly name: string = "UsageError";
  readonly commandPath: readonly string[];

  constructor(message: string, commandPath: readonly string[] = []) {
    super(message);
    this.commandPath = commandPath;
  }
}

export { oneLine } from "../../lib/network-errors.ts";
