import type { Entry } from "../command.ts";
import { authCommands } from "./auth.ts";
import { helpCommands } from "./help.ts";
import { statusCommands } from "./status.ts";
import { tokenCommands } from "./token.ts";

/**
 * The whole command table, in the order `zectre --help` lists it.
 * To add a group (say `node`): write commands/node.ts exporting
 * `nodeCommands = [defineGroup({ path: ["node"], ... }), defineCommand({ path: ["node", "list"], ... }), ...]`
 * and spread it in here. Parsing, help and dispatch all follow from the entries.
 */
export const COMMAND_TABLE: readonly Entry[] = [...authCommands, ...statusCommands, ...tokenCommands, ...helpCommands];
