/**
 * Five-field cron expressions, evaluated in UTC: `minute hour day-of-month month
 * day-of-week`. Each field takes `*`, numbers, ranges `a-b`, lists `a,b`, steps
 * `*\/n`, `a-b/n` and `a/n` (a to the field's maximum). Day-of-week is 0-6 with 7
 * also meaning Sunday. As in Vixie cron, when both day-of-month and day-of-week
 * are restricted (do not start with `*`), a day matching either one runs.
 */

export class CronError extends Error {
  override readonly name: string = "CronError";
}

export interface CronSpec {
  readonly minutes: ReadonlySet<number>;
  readonly hours: ReadonlySet<number>;
  readonly daysOfMonth: ReadonlySet<number>;
  readonly months: ReadonlySet<number>;
  /** 0 = Sunday; a 7 in the expression is stored as 0. */
  readonly daysOfWeek: ReadonlySet<number>;
  readonly domRestricted: boolean;
  readonly dowRestricted: boolean;
}

interface FieldDef {
  readonly name: string;
  readonly min: number;
  readonly max: number;
}

const FIELDS: readonly FieldDef[] = [
  { name: "minute", min: 0, max: 59 },
  { name: "hour", min: 0, max: 23 },
  { name: "day-of-month", min: 1, max: 31 },
  { name: "month", min: 1, max: 12 },
  { name: "day-of-week", min: 0, max: 7 },
];

export function parseCron(expr: string): CronSpec {
  const parts = expr.trim().split(/\s+/).filter((part) => part !== "");
  if (parts.length !== 5) {
    throw new CronError(`cron '${expr}' needs 5 fields (minute hour day-of-month month day-of-week), got ${parts.length}`);
  }
  const sets = parts.map((part, index) => parseField(part, FIELDS[index] as FieldDef, expr));
  const daysOfWeek = new Set([...(sets[4] as Set<number>)].map((day) => (day === 7 ? 0 : day)));
  return {
    minutes: sets[0] as Set<number>,
    hours: sets[1] as Set<number>,
    daysOfMonth: sets[2] as Set<number>,
    months: sets[3] as Set<number>,
    daysOfWeek,
    domRestricted: !(parts[2] as string).startsWith("*"),
    dowRestricted: !(parts[4] as string).startsWith("*"),
  };
}

function parseField(text: string, field: FieldDef, expr: string): Set<number> {
  const fail = (why: string): never => {
    throw new CronError(`cron '${expr}': ${field.name} field '${text}' ${why}`);
  };
  const number = (digits: string): number => {
    if (!/^\d+$/.test(digits)) fail(`has '${digits}', which is not a number`);
    const value = Number(digits);
    if (value < field.min || value > field.max) fail(`has ${value}, outside ${field.min}-${field.max}`);
    return value;
  };
  const values = new Set<number>();
  for (const item of text.split(",")) {
    if (item === "") fail("has an empty list item");
    const [range, stepText, ...extra] = item.split("/");
    if (extra.length > 0) fail("has more than one '/'");
    let step = 1;
    if (stepText !== undefined) {
      if (!/^\d+$/.test(stepText) || Number(stepText) < 1) fail(`has step '${stepText}'; a step is a whole number of at least 1`);
      step = Number(stepText);
    }
    let low: number;
    let high: number;
    if (range === "*") {
      low = field.min;
      high = field.max;
    } else if (range !== undefined && range.includes("-")) {
      const [a, b, ...more] = range.split("-");
      if (more.length > 0 || a === undefined || b === undefined) fail(`has a malformed range '${range}'`);
      low = number(a as string);
      high = number(b as string);
      if (low > high) fail(`has range ${low}-${high}, which runs backwards`);
    } else {
      low = number(range ?? "");
      // `a/n` means from a to the field's maximum; a plain number is just itself.
      high = stepText === undefined ? low : field.max;
    }
    for (let value = low; value <= high; value += step) values.add(value);
  }
  return values;
}

const MINUTE_MS = 60_000;
/** Enough to cover leap days (a Feb 29 schedule waits up to 8 years across a skipped leap year). */
const SEARCH_YEARS = 9;

/** The first minute strictly after `after` (whole minutes, UTC) that `expr` matches. Throws CronError if it never does. */
export function nextRun(expr: string | CronSpec, after: Date): Date {
  const spec = typeof expr === "string" ? parseCron(expr) : expr;
  const t = new Date(Math.floor(after.getTime() / MINUTE_MS) * MINUTE_MS + MINUTE_MS);
  const limit = Date.UTC(t.getUTCFullYear() + SEARCH_YEARS, 0, 1);
  while (t.getTime() < limit) {
    if (!spec.months.has(t.getUTCMonth() + 1)) {
      t.setUTCMonth(t.getUTCMonth() + 1, 1);
      t.setUTCHours(0, 0, 0, 0);
      continue;
    }
    if (!dayMatches(spec, t)) {
      t.setUTCDate(t.getUTCDate() + 1);
      t.setUTCHours(0, 0, 0, 0);
      continue;
    }
    if (!spec.hours.has(t.getUTCHours())) {
      t.setUTCHours(t.getUTCHours() + 1, 0, 0, 0);
      continue;
    }
    if (!spec.minutes.has(t.getUTCMinutes())) {
      t.setUTCMinutes(t.getUTCMinutes() + 1, 0, 0);
      continue;
    }
    return t;
  }
  throw new CronError(`cron ${typeof expr === "string" ? `'${expr}' ` : ""}never matches a date`);
}

function dayMatches(spec: CronSpec, t: Date): boolean {
  const dom = spec.daysOfMonth.has(t.getUTCDate());
  const dow = spec.daysOfWeek.has(t.getUTCDay());
  if (spec.domRestricted && spec.dowRestricted) return dom || dow;
  return dom && dow;
}
