import type { Entry } from "../command.ts";
import { authCommands } from "./auth.ts";
import { artifactCommands } from "./artifact.ts";
import { auditCommands } from "./audit.ts";
import { appCommands } from "./app.ts";
import { deployCommands } from "./deploy.ts";
import { deploymentCommands } from "./deployments.ts";
import { envCommands } from "./env.ts";
import { eventsCommands } from "./events.ts";
import { helpCommands } from "./help.ts";
import { jobCommands } from "./job.ts";
import { logsCommands } from "./logs.ts";
import { nodeCommands } from "./node.ts";
import { nodeEnrollCommands } from "./node-enroll.ts";
import { nodeTokenCommands } from "./node-token.ts";
import { routeCommands } from "./route.ts";
import { runCommands } from "./run.ts";
import { settingsCommands } from "./settings.ts";
import { stateCommands } from "./state.ts";
import { statusCommands } from "./status.ts";
import { tokenCommands } from "./token.ts";
import { webhookCommands } from "./webhook.ts";

/**
 * The whole command table, in the order `zectre --help` lists it.
 * To add a group (say `node`): write commands/node.ts exporting
 * `nodeCommands = [defineGroup({ path: ["node"], ... }), defineCommand({ path: ["node", "list"], ... }), ...]`
 * and spread it in here. Parsing, help and dispatch all follow from the entries.
 */
export const COMMAND_TABLE: readonly Entry[] = [
  ...authCommands,
  ...statusCommands,
  ...runCommands,
  ...jobCommands,
  ...tokenCommands,
  // `node` first: its group must be declared before the `node enroll` and `node token` subgroups.
  ...nodeCommands,
  ...nodeEnrollCommands,
  ...nodeTokenCommands,
  ...settingsCommands,
  ...stateCommands,
  ...deployCommands,
  ...appCommands,
  ...deploymentCommands,
  ...envCommands,
  ...routeCommands,
  ...logsCommands,
  ...artifactCommands,
  ...webhookCommands,
  ...eventsCommands,
  ...auditCommands,
  ...helpCommands,
];
