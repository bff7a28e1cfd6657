import { z } from "zod";
import { AgentError } from "./errors.ts";
import { messageOf, readIfExists } from "./state/files.ts";

/**
 * `<data-dir>/config.json`, written by the host's owner (or their config
 * management), never by the agent: `{"facts": {"rack": "r12", "gpu": true}}`.
 * Unknown keys are allowed so newer configs still load in older agents.
 */

const FactKey = z.string().min(1).max(128);
export const CustomFacts = z.record(FactKey, z.json());
export type CustomFacts = z.infer<typeof CustomFacts>;

export const AgentConfig = z.looseObject({ facts: CustomFacts.default({}) });
export type AgentConfig = z.infer<typeof AgentConfig>;

export function loadAgentConfig(path: string): AgentConfig {
  let text: string | undefined;
  try {
    text = readIfExists(path);
  } catch (error) {
    throw new AgentError(`cannot read ${path}: ${messageOf(error)}`);
  }
  if (text === undefined) return { facts: {} };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new AgentError(`${path} is not valid JSON (${messageOf(error)})`);
  }
  const parsed = AgentConfig.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? ` at '${issue.path.join(".")}'` : "";
    throw new AgentError(`${path} is malformed${where}: ${issue?.message ?? "invalid"}`);
  }
  return parsed.data;
}

/** `--fact rack=r12` flags; values stay strings (use config.json for numbers and booleans). */
export function parseFactFlags(flags: readonly string[]): CustomFacts {
  const facts: CustomFacts = {};
  for (const flag of flags) {
    const eq = flag.indexOf("=");
    const key = eq > 0 ? flag.slice(0, eq) : "";
    if (!FactKey.safeParse(key).success) throw new AgentError(`invalid --fact '${flag}': expected KEY=VALUE with a key of 1 to 128 characters`);
    facts[key] = flag.slice(eq + 1);
  }
  return facts;
}
