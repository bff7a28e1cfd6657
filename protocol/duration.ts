const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** Parses `90s`, `15m`, `1h`, `30d`, `2w` (or a bare number of seconds) into seconds; null if malformed. */
export function parseDuration(text: string): number | null {
  const match = /^(\d{1,9})([smhdw]?)$/.exec(text.trim());
  if (!match) return null;
  const value = Number(match[1]);
  const unit = match[2] === "" ? 1 : UNIT_SECONDS[match[2] as string];
  return unit === undefined ? null : value * unit;
}
