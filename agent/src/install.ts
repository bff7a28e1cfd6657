import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { AgentError } from "./errors.ts";
import { SYSTEM_DATA_DIR } from "./state/data-dir.ts";
import { messageOf, writeFileAtomic } from "./state/files.ts";

/** `zectre-agent install`: a systemd unit that keeps `zectre-agent run` alive across crashes and reboots. */

export const DEFAULT_UNIT_PATH = "/etc/systemd/system/zectre-agent.service";
export const AGENT_SCRIPT = fileURLToPath(new URL("../bin/zectre-agent.ts", import.meta.url));

export interface UnitOptions {
  /** Absolute path of the Node binary (the one running this command, so the unit uses the same version). */
  readonly nodePath: string;
  readonly scriptPath: string;
  readonly dataDir: string;
}

export function renderUnit(options: UnitOptions): string {
  const dataDir = resolve(options.dataDir);
  const execStart = [options.nodePath, options.scriptPath, "run", "--data-dir", dataDir].map(systemdQuote).join(" ");
  const lines = [
    "[Unit]",
    "Description=Zectre agent",
    "After=network-online.target",
    "Wants=network-online.target",
    "",
    "[Service]",
    "Type=simple",
    `ExecStart=${execStart}`,
    "Restart=always",
    "RestartSec=5",
    // Exit 3 means the node was rejected or revoked: restarting would only be refused again.
    "RestartPreventExitStatus=3",
    "KillSignal=SIGTERM",
    "TimeoutStopSec=15",
  ];
  if (dataDir === SYSTEM_DATA_DIR) {
    // systemd creates /var/lib/zectre-agent (0700, root) before the first start.
    lines.push("StateDirectory=zectre-agent", "StateDirectoryMode=0700");
  }
  lines.push(
    // Jobs run commands as root (install packages, edit /etc, restart services), so no
    // ProtectSystem, ProtectHome, NoNewPrivileges or capability limits; only what no
    // administration task needs is taken away.
    "LockPersonality=yes",
    "RestrictRealtime=yes",
    "SystemCallArchitectures=native",
    // A host under memory pressure should lose its workloads before its way to be managed.
    "OOMScoreAdjust=-500",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  );
  return lines.join("\n");
}

/** Quotes one ExecStart word: `%` and `$` are systemd specifiers and variables unless doubled. */
export function systemdQuote(word: string): string {
  const escaped = word.replace(/%/g, "%%").replace(/\$/g, "$$$$");
  if (/^[A-Za-z0-9_@+=:,./-]+$/.test(escaped)) return escaped;
  return `"${escaped.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

export function writeUnit(path: string, text: string): void {
  if (!existsSync(dirname(path))) throw new AgentError(`cannot write ${path}: ${dirname(path)} does not exist (is this a systemd host?)`);
  try {
    writeFileAtomic(path, text, 0o644);
  } catch (error) {
    throw new AgentError(`cannot write ${path}: ${messageOf(error)}`);
  }
}
