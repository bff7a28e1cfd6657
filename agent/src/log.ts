/**
 * Structured JSON log lines on stdout, one object per line, so journald, `jq`
 * and log shippers read them without a parser of their own.
 */

export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFields = Readonly<Record<string, unknown>>;
export type LogSink = (line: string) => void;

export interface LoggerOptions {
  readonly sink?: LogSink;
  /** Fields on every line, e.g. `nodeId`. */
  readonly fields?: LogFields;
  readonly now?: () => Date;
}

export class Logger {
  readonly #sink: LogSink;
  readonly #fields: LogFields;
  readonly #now: () => Date;

  constructor(options: LoggerOptions = {}) {
    this.#sink = options.sink ?? ((line) => process.stdout.write(line));
    this.#fields = options.fields ?? {};
    this.#now = options.now ?? (() => new Date());
  }

  /** A logger that adds `fields` to every line of this one. */
  child(fields: LogFields): Logger {
    return new Logger({ sink: this.#sink, fields: { ...this.#fields, ...fields }, now: this.#now });
  }

  debug(msg: string, fields: LogFields = {}): void {
    this.#write("debug", msg, fields);
  }

  info(msg: string, fields: LogFields = {}): void {
    this.#write("info", msg, fields);
  }

  warn(msg: string, fields: LogFields = {}): void {
    this.#write("warn", msg, fields);
  }

  error(msg: string, fields: LogFields = {}): void {
    this.#write("error", msg, fields);
  }

  #write(level: LogLevel, msg: string, fields: LogFields): void {
    // The fixed keys come first so a human scanning raw lines finds them in one place.
    const line = { ts: this.#now().toISOString(), level, component: "agent", msg, ...this.#fields, ...fields };
    this.#sink(`${JSON.stringify(line, errorsAsText)}\n`);
  }
}

/** `JSON.stringify` renders an Error as `{}`; its message is what a reader needs. */
function errorsAsText(_key: string, value: unknown): unknown {
  return value instanceof Error ? value.message : value;
}

/** For tests and commands that must stay quiet. */
export const silentLogger = new Logger({ sink: () => {} });
