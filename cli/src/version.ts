import { readFileSync } from "node:fs";

let cached: string | undefined;

/** package.json is the one place the version is bumped; the CLI runs from the checkout, so it is always there. */
export function cliVersion(): string {
  if (cached === undefined) {
    const pkg: unknown = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8"));
    cached = typeof pkg === "object" && pkg !== null && "version" in pkg && typeof pkg.version === "string" ? pkg.version : "unknown";
  }
  return cached;
}
