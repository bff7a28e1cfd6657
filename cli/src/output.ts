import { oneLine } from "./errors.ts";
import { envValue, type Io, type OutputStream } from "./io.ts";

export const FORMATS = ["text", "json", "yaml"] as const;
export type Format = (typeof FORMATS)[number];

export interface Colors {
  bold(text: string): string;
  dim(text: string): string;
  red(text: string): string;
  green(text: string): string;
  yellow(text: string): string;
}

function sgr(open: number, close: number): (text: string) => string {
  return (text) => `\u001b[${open}m${text}\u001b[${close}m`;
}

const PLAIN: Colors = { bold: String, dim: String, red: String, green: String, yellow: String };
const ANSI: Colors = { bold: sgr(1, 22), dim: sgr(2, 22), red: sgr(31, 39), green: sgr(32, 39), yellow: sgr(33, 39) };

export function makeColors(enabled: boolean): Colors {
  return enabled ? ANSI : PLAIN;
}

/** Color only for a person at a terminal, and never against their stated wish (https://no-color.org). */
export function colorEnabled(stream: OutputStream, env: Io["env"], noColorFlag: boolean): boolean {
  return stream.isTTY === true && !noColorFlag && envValue(env, "NO_COLOR") === undefined;
}

/**
 * Writes results in the chosen format. json and yaml print the API's own objects
 * so scripts see exactly the documented shapes; text is for people.
 */
export class Output {
  readonly format: Format;
  readonly colors: Colors;
  readonly #io: Io;
  readonly #stderrColors: Colors;
  readonly #yaml: YamlStringify | undefined;

  private constructor(io: Io, format: Format, noColorFlag: boolean, yaml: YamlStringify | undefined) {
    this.#io = io;
    this.format = format;
    this.#yaml = yaml;
    this.colors = makeColors(colorEnabled(io.stdout, io.env, noColorFlag));
    this.#stderrColors = makeColors(colorEnabled(io.stderr, io.env, noColorFlag));
  }

  static async create(io: Io, format: Format, noColorFlag: boolean): Promise<Output> {
    // The yaml package costs ~40ms of startup; most runs never print YAML.
    const yaml = format === "yaml" ? (await import("yaml")).stringify : undefined;
    return new Output(io, format, noColorFlag, yaml);
  }

  /** `text` is only called in text format, so it may assume a human reader. */
  result(data: unknown, text: (colors: Colors) => string | readonly string[]): void {
    if (this.format === "text") {
      const lines = text(this.colors);
      this.#write(typeof lines === "string" ? lines : lines.join("\n"));
    } else {
      this.#io.stdout.write(this.format === "json" ? serializeJson(data) : this.#serializeYaml(data));
    }
  }

  /** Advice for the person at the terminal; on stderr so it never corrupts json/yaml output. */
  warn(message: string): void {
    this.#io.stderr.write(`${this.#stderrColors.yellow("zectre: warning:")} ${message}\n`);
  }

  #serializeYaml(data: unknown): string {
    if (!this.#yaml) throw new Error("unreachable: create() loads YAML for the yaml format");
    return this.#yaml(data);
  }

  #write(text: string): void {
    if (text !== "") this.#io.stdout.write(text.endsWith("\n") ? text : `${text}\n`);
  }
}

type YamlStringify = (value: unknown) => string;

export function serializeJson(data: unknown): string {
  return `${JSON.stringify(data, null, 2)}\n`;
}

/** Left-aligned columns, two spaces apart; the header is bold when color is on. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[], colors: Colors = PLAIN): string[] {
  const cells = rows.map((row) => row.map(oneLine));
  const widths = headers.map((header, column) => Math.max(header.length, ...cells.map((row) => (row[column] ?? "").length)));
  const render = (row: readonly string[]) =>
    row
      .map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
      .join("  ")
      .trimEnd();
  return [colors.bold(render(headers)), ...cells.map(render)];
}

/** `Label:  value` lines with the values aligned; values may carry color, so callers sanitize server text. */
export function fields(pairs: readonly (readonly [string, string])[], colors: Colors = PLAIN): string[] {
  const width = Math.max(...pairs.map(([label]) => label.length + 1));
  return pairs.map(([label, value]) => `${colors.bold(`${label}:`.padEnd(width))}  ${value}`);
}

/** Minute precision in UTC: enough to tell tokens apart, short enough for a table. */
export function formatTime(iso: string | null, missing: string): string {
  if (iso === null) return missing;
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return `${date.toISOString().slice(0, 16).replace("T", " ")}Z`;
}

/**
 * How long ago, in the largest whole unit: `12s ago`, `5m ago`, `3h ago`, `2d ago`;
 * `missing` for null. A time slightly ahead of this clock reads as `0s ago`.
 */
export function formatAgo(iso: string | null, missing: string, now: number = Date.now()): string {
  if (iso === null) return missing;
  const at = Date.parse(iso);
  if (Number.isNaN(at)) return iso;
  const seconds = Math.max(0, Math.floor((now - at) / 1000));
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ago`;
  return `${Math.floor(seconds / 86400)}d ago`;
}

/** A value for a person: strings, numbers, booleans and null as they are, objects and arrays as indented JSON. */
export function formatValue(value: unknown): string {
  if (typeof value === "string") return value;
  if (typeof value === "object" && value !== null) return JSON.stringify(value, null, 2);
  return String(value);
}

/** A value in a table cell: compact JSON (so `"42"` and `42` differ), cut short when long. */
export function formatCell(value: unknown, max = 60): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > max ? `${text.slice(0, max - 3)}...` : text;
}
