import { writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadAgentConfig, parseFactFlags } from "../../agent/src/config.ts";
import { AgentError } from "../../agent/src/errors.ts";
import { blockFilesystems, coarseFree, collectFacts, type FactSources, isRealFilesystem, parseMounts, parseOsRelease } from "../../agent/src/facts.ts";
import { Facts } from "../../protocol/nodes.ts";
import { runAgentCommand, useAgentProcesses } from "./helpers/agent-run.ts";
import { useTempDirs } from "./helpers/run-cli.ts";

const tempDir = useTempDirs();
useAgentProcesses();

const PROC_FILESYSTEMS = "nodev\tsysfs\nnodev\ttmpfs\nnodev\tproc\n\text4\n\txfs\n\tsquashfs\nnodev\toverlay\n\tvfat\n";
const PROC_MOUNTS = [
  "proc /proc proc rw 0 0",
  "overlay / overlay rw 0 0",
  "/dev/sda1 /boot/efi vfat rw 0 0",
  "/dev/sdb1 /srv/data\\040disk xfs rw 0 0",
  "/dev/loop3 /snap/core/1 squashfs ro 0 0",
  "tmpfs /run tmpfs rw 0 0",
  "/dev/vda /etc/hosts ext4 rw 0 0",
  "tank/home /home zfs rw 0 0",
  "",
].join("\n");

describe("facts", () => {
  it("match the protocol's Facts schema exactly and describe this host", () => {
    const facts = collectFacts();
    expect(Facts.parse(facts)).toEqual(facts);
    expect(facts.hostname).toBe(hostname());
    expect(facts.nodeVersion).toBe(process.version);
    expect(facts.agentVersion).toMatch(/^\d+\.\d+\.\d+/);
    expect(facts.cpuCount).toBeGreaterThan(0);
    expect(facts.memoryBytes).toBeGreaterThan(0);
    expect(facts.disk.find((disk) => disk.mount === "/")?.totalBytes).toBeGreaterThan(0);
    expect(facts.custom).toEqual({});
  });

  it("include custom facts from config.json, with --fact flags on top", () => {
    const dir = tempDir();
    writeFileSync(join(dir, "config.json"), JSON.stringify({ facts: { rack: "r12", gpu: true, slots: [1, 2] }, future: "ignored" }));
    const custom = { ...loadAgentConfig(join(dir, "config.json")).facts, ...parseFactFlags(["rack=r14", "role=db=primary"]) };
    const facts = collectFacts(custom);
    expect(facts.custom).toEqual({ rack: "r14", gpu: true, slots: [1, 2], role: "db=primary" });
    expect(Facts.safeParse(facts).success).toBe(true);
  });

  it("refuse a malformed config or fact flag with a clear message", () => {
    const dir = tempDir();
    writeFileSync(join(dir, "config.json"), JSON.stringify({ facts: ["not", "a", "map"] }));
    expect(() => loadAgentConfig(join(dir, "config.json"))).toThrow(/config\.json is malformed at 'facts'/);
    writeFileSync(join(dir, "config.json"), "{");
    expect(() => loadAgentConfig(join(dir, "config.json"))).toThrow(AgentError);
    expect(loadAgentConfig(join(dir, "missing.json"))).toEqual({ facts: {} });
    expect(() => parseFactFlags(["=x"])).toThrow(/invalid --fact '=x'/);
    expect(() => parseFactFlags(["novalue"])).toThrow(/KEY=VALUE/);
  });

  it("round free disk space so a busy disk does not change the facts every minute", () => {
    const gib = 1024 ** 3;
    const step = (500 * gib) / 1000;
    const free = coarseFree(123_456_789_012, 500 * gib);
    expect(free).toBeLessThanOrEqual(123_456_789_012);
    expect(123_456_789_012 - free).toBeLessThan(step);
    expect(free % step).toBe(0);
    // Writes of a few hundred KiB leave the fact unchanged.
    expect(coarseFree(100 * gib + 12_345, 500 * gib)).toBe(coarseFree(100 * gib + 999_999, 500 * gib));
    // Small disks still report to the MiB.
    expect(coarseFree(5 * 1024 * 1024 + 7, 100 * 1024 * 1024)).toBe(5 * 1024 * 1024);
  });

  it("read the OS name from os-release", () => {
    expect(parseOsRelease('NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n')).toBe("Debian GNU/Linux 12 (bookworm)");
    expect(parseOsRelease("PRETTY_NAME=Alpine\n")).toBe("Alpine");
    expect(parseOsRelease('PRETTY_NAME="Say \\"hi\\""')).toBe('Say "hi"');
    expect(parseOsRelease("ID=x\n")).toBeUndefined();
  });

  it("count real filesystems only: no pseudo filesystems, images or bind-mounted files", () => {
    const blockTypes = blockFilesystems(PROC_FILESYSTEMS);
    expect([...blockTypes].sort()).toEqual(["ext4", "squashfs", "vfat", "xfs"]);
    const mounts = parseMounts(PROC_MOUNTS);
    expect(mounts.find((m) => m.device === "/dev/sdb1")?.mount).toBe("/srv/data disk");
    expect(mounts.filter((m) => isRealFilesystem(m, blockTypes)).map((m) => m.mount)).toEqual(["/boot/efi", "/srv/data disk", "/etc/hosts", "/home"]);

    const sources: FactSources = {
      readFile: (path) => ({ "/proc/filesystems": PROC_FILESYSTEMS, "/proc/mounts": PROC_MOUNTS })[path],
      statfs: (path) => (path === "/home" ? undefined : { totalBytes: 1000, freeBytes: 400 }),
      isDirectory: (path) => path !== "/etc/hosts",
    };
    // "/" always (even on an overlay); /home's statfs failed, so it is left out rather than failing the lot.
    expect(collectFacts({}, sources).disk).toEqual([
      { mount: "/", totalBytes: 1000, freeBytes: 400 },
      { mount: "/boot/efi", totalBytes: 1000, freeBytes: 400 },
      { mount: "/srv/data disk", totalBytes: 1000, freeBytes: 400 },
    ]);
  });

  it("are printed as JSON by `zectre-agent facts`", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "config.json"), JSON.stringify({ facts: { rack: "r12" } }));
    const result = await runAgentCommand(["facts", "--data-dir", dir, "--fact", "zone=b"]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    const facts = Facts.parse(JSON.parse(result.stdout));
    expect(facts.custom).toEqual({ rack: "r12", zone: "b" });
  });
});
