import { resolve } from "node:path";
import type { ArtifactInfo } from "../../../protocol/artifacts.ts";
import type { ApiClient } from "../client.ts";
import { defineCommand, defineGroup, type Entry } from "../command.ts";
import { formatBytes } from "../deploy-format.ts";
import { CliError, UsageError } from "../errors.ts";
import { fields, formatTime, table } from "../output.ts";
import { stderrProgress } from "../progress.ts";

// Packing pulls in tar and gzip; loading them only when a command runs keeps every other command's startup quick.
const artifacts = () => import("../artifacts.ts");

const group = defineGroup({
  path: ["artifact"],
  summary: "List, inspect and upload artifact layers",
  description:
    "An artifact is a gzip-compressed tar addressed by its sha256: the app layer (your code) and the deps layer " +
    "(node_modules, reused while the lockfile is unchanged). 'zectre deploy' uploads them; these commands show what the org stores.",
});

const SHORT_DIGEST = 12;
const MIN_PREFIX = 8;

function byNewest(list: readonly ArtifactInfo[]): ArtifactInfo[] {
  return [...list].sort((a, b) => (a.uploadedAt < b.uploadedAt ? 1 : a.uploadedAt > b.uploadedAt ? -1 : a.digest.localeCompare(b.digest)));
}

const list = defineCommand({
  path: ["artifact", "list"],
  summary: "List the org's stored layers, newest first",
  options: {
    layer: { type: "string", valueName: "LAYER", choices: ["app", "deps"], description: "Only app or only deps layers" },
  },
  examples: ["zectre artifact list", "zectre artifact list --layer deps --format json"],
  async run(ctx) {
    const { listAllArtifacts } = await artifacts();
    const found = byNewest(await listAllArtifacts(ctx.client(), { layer: ctx.options.layer }));
    ctx.out.result({ artifacts: found }, (c) => {
      if (found.length === 0) return "No artifacts found.";
      const rows = found.map((a) => [a.digest.slice(0, SHORT_DIGEST), a.layer, formatBytes(a.size), formatTime(a.uploadedAt, "-"), a.uploadedBy]);
      return table(["DIGEST", "LAYER", "SIZE", "UPLOADED", "BY"], rows, c);
    });
  },
});

/** A full digest, or a unique prefix of at least 8 hex characters resolved through the list. */
async function resolveDigest(client: ApiClient, given: string): Promise<ArtifactInfo> {
  const digest = given.toLowerCase();
  if (!/^[0-9a-f]+$/.test(digest) || digest.length < MIN_PREFIX || digest.length > 64) {
    throw new UsageError(`invalid digest '${given}': give the sha256 (64 hex characters) or at least its first ${MIN_PREFIX}`, ["artifact", "show"]);
  }
  const { getArtifact, listAllArtifacts } = await artifacts();
  if (digest.length === 64) return (await getArtifact(client, digest)).artifact;
  const matches = await listAllArtifacts(client, { prefix: digest });
  if (matches.length === 1) return matches[0] as ArtifactInfo;
  if (matches.length === 0) throw new CliError(`no artifact's digest starts with ${digest}`);
  throw new CliError(`${matches.length} artifacts' digests start with ${digest}; give more characters`);
}

const show = defineCommand({
  path: ["artifact", "show"],
  summary: "Show one stored layer",
  positionals: [{ name: "digest", required: true, description: "The layer's sha256, or a unique prefix of at least 8 characters" }],
  examples: ["zectre artifact show 3f2a1b9c", "zectre artifact show 3f2a1b9c --format json"],
  async run(ctx) {
    const artifact = await resolveDigest(ctx.client(), ctx.args.digest);
    ctx.out.result({ artifact }, (c) =>
      fields(
        [
          ["Digest", artifact.digest],
          ["Layer", artifact.layer],
          ["Size", `${formatBytes(artifact.size)} (${artifact.size} bytes)`],
          ["Lockfile", artifact.lockfile ?? "-"],
          ["Uploaded", formatTime(artifact.uploadedAt, "-")],
          ["By", artifact.uploadedBy],
        ],
        c,
      ),
    );
  },
});

const push = defineCommand({
  path: ["artifact", "push"],
  summary: "Pack a directory into layers and upload the ones the server lacks",
  description:
    "Does what 'zectre deploy' does before it creates a deployment: packs DIR (honouring .gitignore files and .zectreignore; " +
    "node_modules goes into its own deps layer when a lockfile is present) and uploads each layer unless the org already stores it. " +
    "Progress goes to stderr; the layers' refs are printed.",
  positionals: [{ name: "dir", description: "The app's directory (default: the current directory)" }],
  examples: ["zectre artifact push", "zectre artifact push ./web --format json"],
  async run(ctx) {
    const { prepareArtifacts } = await artifacts();
    const dir = resolve(ctx.io.cwd, ctx.args.dir ?? ".");
    const prepared = await prepareArtifacts(dir, ctx.client(), stderrProgress(ctx.io));
    ctx.out.result(prepared, (c) => {
      const how = (l: (typeof prepared.layers)[number]) =>
        l.uploaded ? "uploaded" : l.reusedBy === "lockfile" ? "reused (lockfile unchanged)" : "already stored";
      const rows = prepared.layers.map((l) => [l.layer, l.digest, formatBytes(l.size), l.reusedBy === "lockfile" ? "-" : String(l.files), how(l)]);
      return table(["LAYER", "DIGEST", "SIZE", "FILES", "RESULT"], rows, c);
    });
  },
});

export const artifactCommands: readonly Entry[] = [group, list, show, push];
