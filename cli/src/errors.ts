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

/**
 * Error lines and table cells must stay one line and must not carry terminal
 * escapes: the text can come from a server we do not control.
 */
export function oneLine(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]+/g, " ").trim();
}
