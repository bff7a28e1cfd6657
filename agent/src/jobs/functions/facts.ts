import type { JsonObject, JsonValue } from "../../../../protocol/json.ts";
import { dottedLookup, requiredText } from "../args.ts";
import { FunctionError, type JobFunction } from "../types.ts";

/** `facts.*`: this host's facts, collected when the job runs (the same ones the agent reports). */

export const factsFunctions: readonly JobFunction[] = [
  {
    name: "facts.items",
    doc: "Returns every fact of this host.",
    mutates: false,
    run: (_args, context) => context.facts() as JsonObject,
  },
  {
    name: "facts.get",
    doc: "Returns one fact by dotted key (key= or the first positional argument), e.g. os, disk.0.mount, custom.rack.",
    mutates: false,
    run: (args, context) => {
      const key = requiredText(args, "facts.get", "key", 0);
      const facts = context.facts() as JsonObject;
      const found = dottedLookup(facts, key);
      if (found.found) return found.value;
      // Custom facts are also found by their own name, as targeting finds them (`G@rack:r1`).
      const custom = dottedLookup(facts.custom ?? {}, key);
      if (custom.found) return custom.value;
      throw new FunctionError(`no fact '${key}'`);
    },
  },
  {
    name: "facts.keys",
    doc: "Returns the names of this host's facts, custom ones as custom.<name>.",
    mutates: false,
    run: (_args, context) => {
      const facts = context.facts() as JsonObject;
      const custom = facts.custom;
      const keys: JsonValue[] = Object.keys(facts).filter((key) => key !== "custom");
      if (typeof custom === "object" && custom !== null && !Array.isArray(custom)) keys.push(...Object.keys(custom).map((key) => `custom.${key}`));
      return keys.sort();
    },
  },
];
