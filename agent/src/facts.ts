import { readFileSync, statfsSync, statSync } from "node:fs";
import os from "node:os";
import { Facts } from "../../protocol/nodes.ts";
import type { CustomFacts } from "./config.ts";
import { agentVersion } from "./version.ts";

/**
 * What the agent reports about its host. Every field is read defensively: a
 * fact that cannot be read becomes empty, never a crash, because facts are
 * re-collected every minute for as long as the agent runs.
 */

export interface FactSources {
  readonly readFile: (path: string) => string | undefined;
  readonly statfs: (path: string) => { totalBytes: number; freeBytes: number } | undefined;
  readonly isDirectory: (path: string) => boolean;
}

export const hostSources: FactSources = {
  readFile: (path) => {
    try {
      return readFileSync(path, "utf8");
    } catch {
      return undefined;
    }
  },
  statfs: (path) => {
    try {
      const stats = statfsSync(path);
      const totalBytes = stats.blocks * stats.bsize;
      // bavail, not bfree: the blocks reserved for root are not free for the workloads we place.
      return { totalBytes, freeBytes: coarseFree(stats.bavail * stats.bsize, totalBytes) };
    } catch {
      return undefined;
    }
  },
  isDirectory: (path) => {
    try {
      return statSync(path).isDirectory();
    } catch {
      return false;
    }
  },
};

/** Collects and validates (with the protocol's own schema) the facts of this host. */
export function collectFacts(custom: CustomFacts = {}, sources: FactSources = hostSources): Facts {
  const cpus = os.cpus();
  return Facts.parse({
    os: clip(os.platform(), 64),
    osRelease: clip(osRelease(sources), 128),
    arch: clip(os.arch(), 32),
    kernel: clip(`${os.release()} ${os.version()}`.trim(), 256),
    hostname: clip(os.hostname(), 255),
    cpuCount: cpus.length,
    cpuModel: clip(cpus[0]?.model.trim() ?? "", 256),
    memoryBytes: os.totalmem(),
    disk: disks(sources),
    ipAddresses: ipAddresses(),
    agentVersion: clip(agentVersion(), 64),
    nodeVersion: clip(process.version, 64),
    custom,
  });
}

function osRelease(sources: FactSources): string {
  for (const path of ["/etc/os-release", "/usr/lib/os-release"]) {
    const pretty = parseOsRelease(sources.readFile(path) ?? "");
    if (pretty !== undefined) return pretty;
  }
  return os.release();
}

/** `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"` → `Debian GNU/Linux 12 (bookworm)`. */
export function parseOsRelease(text: string): string | undefined {
  for (const line of text.split("\n")) {
    const match = /^PRETTY_NAME=(.*)$/.exec(line.trim());
    if (!match) continue;
    const raw = (match[1] ?? "").trim();
    const value = /^(["'])(.*)\1$/.exec(raw)?.[2] ?? raw;
    const unescaped = value.replace(/\\(.)/g, "$1");
    return unescaped === "" ? undefined : unescaped;
  }
  return undefined;
}

/** Not block-device filesystems, but real storage a workload can fill. */
const STORAGE_WITHOUT_DEVICE = new Set(["zfs", "nfs", "nfs4", "cifs", "smb3", "ceph", "glusterfs", "fuse.glusterfs"]);
/** Read-only images (snaps, live media): always 100% full, so only noise. */
const IMAGE_FILESYSTEMS = new Set(["squashfs", "erofs", "iso9660", "udf"]);

export interface MountEntry {
  readonly device: string;
  readonly mount: string;
  readonly fstype: string;
}

/** `/proc/mounts` escapes space, tab, newline and backslash in paths as octal. */
export function parseMounts(text: string): MountEntry[] {
  const unescape = (field: string) => field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
  const entries: MountEntry[] = [];
  for (const line of text.split("\n")) {
    const [device, mount, fstype] = line.split(" ");
    if (device === undefined || mount === undefined || fstype === undefined) continue;
    entries.push({ device: unescape(device), mount: unescape(mount), fstype });
  }
  return entries;
}

/** Filesystems the kernel lists without `nodev` are backed by a device: ext4, xfs, btrfs, vfat and so on. */
export function blockFilesystems(procFilesystems: string): Set<string> {
  const types = new Set<string>();
  for (const line of procFilesystems.split("\n")) {
    const [flag, type] = line.split("\t");
    if (flag === "" && type !== undefined && type.trim() !== "") types.add(type.trim());
  }
  return types;
}

export function isRealFilesystem(entry: MountEntry, blockTypes: ReadonlySet<string>): boolean {
  if (IMAGE_FILESYSTEMS.has(entry.fstype)) return false;
  return blockTypes.has(entry.fstype) || STORAGE_WITHOUT_DEVICE.has(entry.fstype) || entry.device.startsWith("/dev/");
}

function disks(sources: FactSources): Facts["disk"] {
  const blockTypes = blockFilesystems(sources.readFile("/proc/filesystems") ?? "");
  // "/" always counts, even in a container whose root is an overlay.
  const mounts = ["/"];
  for (const entry of parseMounts(sources.readFile("/proc/mounts") ?? "")) {
    // Containers bind-mount single files (/etc/hosts) from the host's disk; those are not volumes.
    if (isRealFilesystem(entry, blockTypes) && !mounts.includes(entry.mount) && sources.isDirectory(entry.mount)) mounts.push(entry.mount);
  }
  const result: Facts["disk"] = [];
  for (const mount of mounts) {
    if (mount.length > 512) continue;
    const stats = sources.statfs(mount);
    if (stats) result.push({ mount, ...stats });
    if (result.length === 64) break;
  }
  return result;
}

function ipAddresses(): string[] {
  const addresses = new Set<string>();
  let interfaces: ReturnType<typeof os.networkInterfaces> = {};
  try {
    interfaces = os.networkInterfaces();
  } catch {
    // Some sandboxes refuse the syscall; a node without addresses is still a node.
  }
  for (const list of Object.values(interfaces)) {
    for (const info of list ?? []) {
      if (!info.internal && info.address.length <= 64) addresses.add(info.address);
    }
  }
  return [...addresses].slice(0, 128);
}

/**
 * Free space rounded down to 0.1% of the disk (at least 1 MiB). Facts are sent
 * only when they change; exact byte counts change with every write, which would
 * turn the minutely refresh into a minutely send on any busy host.
 */
export function coarseFree(freeBytes: number, totalBytes: number): number {
  const step = Math.max(1024 * 1024, Math.floor(totalBytes / 1000));
  return Math.floor(freeBytes / step) * step;
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : text.slice(0, max);
}
