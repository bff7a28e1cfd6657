import { readFileSync } from "node:fs";

let cached: string | undefined;

/** package.json is the one place the version is bumped; the agent runs from the checkout, so it is always there. */
export function agentVersion(): string {
  if (cached === undefined) {
    let version = "unknown";
    try {
      const pkg: unknown = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8"));
      if (typeof pkg === "object" && pkg !== null && "version" in pkg && typeof pkg.version === "string") version = pkg.version;
    } catch {
      // A copied-out agent without its package.json still runs; it just cannot say which version it is.
    }
    cached = version;
  }
  return cached;
}
