import type { JobFunction } from "../types.ts";

/** `sys.*`: what this agent can do. */

export const sysFunctions: readonly JobFunction[] = [
  {
    name: "sys.list_functions",
    doc: "Lists the functions this agent offers, each with a one-line doc and whether it changes the host.",
    mutates: false,
    run: (_args, context) =>
      [...context.functions()]
        .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
        .map(({ name, doc, mutates }) => ({ name, doc, mutates })),
  },
];
