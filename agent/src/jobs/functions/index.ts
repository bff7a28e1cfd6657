import type { JobFunction } from "../types.ts";
import { cmdFunctions } from "./cmd.ts";
import { factsFunctions } from "./facts.ts";
import { fileFunctions } from "./file.ts";
import { settingsFunctions } from "./settings.ts";
import { sysFunctions } from "./sys.ts";
import { testFunctions } from "./test.ts";

/** Every built-in function family. `state.apply` is not here yet: it comes as a family of its own. */
export function builtinFunctions(): JobFunction[] {
  return [...testFunctions, ...cmdFunctions, ...factsFunctions, ...settingsFunctions, ...fileFunctions, ...sysFunctions];
}
