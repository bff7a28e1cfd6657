/** The slice of a writable stream the CLI needs; lets tests capture output in memory. */
export interface OutputStream {
  write(chunk: string): unknown;
  readonly isTTY?: boolean | undefined;
}

/** Everything the CLI touches in its process, injected so `main` runs in-process under test. */
export interface Io {
  readonly stdout: OutputStream;
  readonly stderr: OutputStream;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly cwd: string;
  /** Defaults to the global fetch. */
  readonly fetch?: typeof fetch;
  /**
   * Calls `handler` on the next Ctrl-C (SIGINT) instead of the default exit; returns
   * the function that stops listening. Absent in-process, where there is no terminal.
   */
  readonly onInterrupt?: (handler: () => void) => () => void;
}

/** Reads an environment variable, treating the empty string as unset (as shells often export it). */
export function envValue(env: Io["env"], name: string): string | undefined {
  const value = env[name];
  return value === undefined || value === "" ? undefined : value;
}
