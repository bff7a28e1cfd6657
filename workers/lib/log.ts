/** Structured JSON log lines: one object per line, so Workers Logs and `jq` can read them. */
export type LogLevel = "debug" | "info" | "warn" | "error";

export interface LogFields {
  requestId?: string;
  org?: string;
  [key: string]: unknown;
}

export function log(level: LogLevel, component: string, msg: string, fields: LogFields = {}): void {
  const line = JSON.stringify({ ts: new Date().toISOString(), level, component, msg, ...fields });
  if (level === "error") console.error(line);
  else if (level === "warn") console.warn(line);
  else console.log(line);
}
