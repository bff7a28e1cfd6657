import { dottedLookup, requiredText } from "../args.ts";
import { FunctionError, type JobFunction } from "../types.ts";

/** `settings.*`: the settings snapshot this agent last received (and kept on disk). */

export const settingsFunctions: readonly JobFunction[] = [
  {
    name: "settings.items",
    doc: "Returns every setting of the current snapshot ({} before the first one arrived).",
    mutates: false,
    run: (_args, context) => context.settings()?.settings ?? {},
  },
  {
    name: "settings.get",
    doc: "Returns one setting by key (key= or the first positional argument); a dotted key also reaches into values.",
    mutates: false,
    run: (args, context) => {
      const key = requiredText(args, "settings.get", "key", 0);
      const found = dottedLookup(context.settings()?.settings ?? {}, key);
      if (!found.found) throw new FunctionError(`no setting '${key}'`);
      return found.value;
    },
  },
];
