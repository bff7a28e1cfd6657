#!/usr/bin/env node
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import {
  bootstrapDefaultOrg,
  ensureOperatorSecret,
  localPaths,
  startWorkers,
  stopAll,
  waitForHealthy,
} from "./lib/control-plane.ts";
import { startLocalAgent } from "./lib/local-agent.ts";

const HELP = `Usage: npm run dev -- [options]

Starts the Zectre control plane locally on workerd: the API and the proxy, with
Durable Object state (embedded SQLite) and artifacts persisted in the state dir.

Options:
  --api-port N     API port          (env ZECTRE_API_PORT,   default 47080)
  --proxy-port N   proxy port        (env ZECTRE_PROXY_PORT, default 47000)
  --state-dir DIR  persistent state  (env ZECTRE_STATE_DIR,  default .zectre/state)
  --no-agent       do not start a local agent (by default one runs from .zectre/agent)
  --heartbeat-seconds N   agents' heartbeat interval (default 10; 3 missed = offline)
  --node-lost-grace-seconds N
                          how long a node may be offline before its tasks move (default 60)
  --quiet          do not echo wrangler's and the agent's output
  --fault-duplicate-delivery   test only: node objects send every action twice
  -h, --help       this help
`;

/** wrangler dev does not fire crons by itself; the launcher drives the scheduler's reconcile instead. */
const RECONCILE_EVERY_MS = 60_000;

function parsePort(value: string, flag: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`${flag} must be a port number, got '${value}'`);
  return port;
}

function parsePositive(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} must be a whole number of seconds, got '${value}'`);
  return n;
}

function options() {
  const { values } = parseArgs({
    options: {
      "api-port": { type: "string", default: process.env.ZECTRE_API_PORT ?? "47080" },
      "proxy-port": { type: "string", default: process.env.ZECTRE_PROXY_PORT ?? "47000" },
      "state-dir": { type: "string", default: process.env.ZECTRE_STATE_DIR ?? ".zectre/state" },
      quiet: { type: "boolean", default: false },
      "no-agent": { type: "boolean", default: false },
      "heartbeat-seconds": { type: "string" },
      "node-lost-grace-seconds": { type: "string" },
      "fault-duplicate-delivery": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  return {
    help: values.help,
    quiet: values.quiet,
    apiPort: parsePort(values["api-port"], "--api-port"),
    proxyPort: parsePort(values["proxy-port"], "--proxy-port"),
    stateDir: values["state-dir"],
    agent: !values["no-agent"],
    faultDuplicateDelivery: values["fault-duplicate-delivery"],
    heartbeatSeconds: values["heartbeat-seconds"] === undefined ? undefined : parsePositive(values["heartbeat-seconds"], "--heartbeat-seconds"),
    nodeLostGraceSeconds: values["node-lost-grace-seconds"] === undefined ? undefined : parsePositive(values["node-lost-grace-seconds"], "--node-lost-grace-seconds"),
  };
}

async function main(): Promise<void> {
  const opts = options();
  if (opts.help) {
    process.stdout.write(HELP);
    return;
  }
  const paths = localPaths(opts.stateDir);
  const operatorSecret = ensureOperatorSecret(paths);
  const apiUrl = `http://127.0.0.1:${opts.apiPort}`;
  const proxyUrl = `http://localhost:${opts.proxyPort}`;
  const children = await startWorkers(
    {
      ...opts,
      onOutput: (component, line) => {
        if (!opts.quiet) process.stdout.write(`[${component}] ${line}\n`);
      },
    },
    operatorSecret,
  );
  let stopping = false;
  const shutdown = async (code: number) => {
    if (stopping) return;
    stopping = true;
    await stopAll(children);
    process.exit(code);
  };
  process.on("SIGINT", () => void shutdown(0));
  process.on("SIGTERM", () => void shutdown(0));
  for (const child of children) {
    child.on("exit", (code) => {
      if (stopping) return;
      process.stderr.write(`zectre dev: a wrangler process exited (code ${code}); stopping\n`);
      void shutdown(1);
    });
  }
  const alive = () => children.every((c) => c.exitCode === null);
  await Promise.all([
    waitForHealthy(`${apiUrl}/healthz`, 60_000, alive),
    waitForHealthy(`${proxyUrl}/healthz`, 60_000, alive),
  ]);
  const boot = await bootstrapDefaultOrg(apiUrl, paths, operatorSecret);
  let agentNote = "not started (--no-agent)";
  if (opts.agent && boot.token) {
    const agent = await startLocalAgent(apiUrl, paths.agentDir, boot.token, (line) => {
      if (!opts.quiet) process.stdout.write(`[agent] ${line}\n`);
    });
    children.push(agent);
    agent.on("exit", (code) => {
      if (!stopping) process.stderr.write(`zectre dev: the local agent exited (code ${code}); the control plane keeps running\n`);
    });
    agentNote = `running from ${paths.agentDir}`;
  } else if (opts.agent) {
    agentNote = "not started: no admin token to enroll it with";
  }
  writeFileSync(
    paths.devInfo,
    `${JSON.stringify({ apiUrl, proxyUrl, previewDomain: "localhost", stateDir: paths.stateDir, pid: process.pid }, null, 2)}\n`,
  );
  setInterval(() => {
    fetch(`${apiUrl}/__scheduled?cron=${encodeURIComponent("* * * * *")}`).catch(() => undefined);
  }, RECONCILE_EVERY_MS).unref();
  printBanner(apiUrl, proxyUrl, paths.stateDir, boot, agentNote);
}

function printBanner(
  apiUrl: string,
  proxyUrl: string,
  stateDir: string,
  boot: Awaited<ReturnType<typeof bootstrapDefaultOrg>>,
  agentNote: string,
) {
  const lines = [
    "",
    "Zectre control plane is running",
    `  API    ${apiUrl}`,
    `  proxy  ${proxyUrl}  (apps: http://<app>.<org>.localhost:${new URL(proxyUrl).port}, previews: http://<deployment>.<app>.<org>.localhost:${new URL(proxyUrl).port})`,
    `  state  ${stateDir}`,
    `  agent  ${agentNote}`,
  ];
  if (boot.created && boot.token) {
    lines.push("", "Created org 'default'. Its admin token (shown once; also saved 0600):", `  ${boot.token}`, `  ${boot.message}`);
  } else {
    lines.push(`  org    default (${boot.message})`);
  }
  lines.push("", "Try:  npx zectre status", "      npx zectre node list", "Stop: Ctrl-C", "");
  process.stdout.write(`${lines.join("\n")}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`zectre dev: ${(error as Error).message}\n`);
  process.exit(1);
});
