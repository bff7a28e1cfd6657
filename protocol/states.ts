import { z } from "zod";

/**
 * State trees for `state.apply`: YAML files (plus `top.yaml`) pushed with
 * `zectre state push DIR`, versioned by content hash, sent to every agent through
 * its outbox and cached in the agent's data dir (`<data-dir>/states`), so
 * `state.apply` also works offline.
 */

export const STATE_FILE_PATTERN = /^(?:[A-Za-z0-9_-][A-Za-z0-9_.-]*\/)*[A-Za-z0-9_-][A-Za-z0-9_.-]*\.ya?ml$/;
/** A whole tree travels in one action frame, so it must stay well under the 1 MiB frame limit. */
export const MAX_STATE_TREE_BYTES = 512 * 1024;
export const MAX_STATE_FILES = 500;

export const StatePath = z
  .string()
  .max(256)
  .regex(STATE_FILE_PATTERN, "state files are relative .yaml/.yml paths without '..'")
  .refine((p) => !p.split("/").includes(".."), "state file paths may not contain '..'");

export const PushStatesBody = z
  .object({ files: z.record(StatePath, z.string()) })
  .strict()
  .refine((b) => Object.keys(b.files).length > 0, { message: "a state tree needs at least one file" })
  .refine((b) => Object.keys(b.files).length <= MAX_STATE_FILES, { message: `a state tree has at most ${MAX_STATE_FILES} files` })
  .refine(
    (b) => Object.values(b.files).reduce((n, text) => n + new TextEncoder().encode(text).byteLength, 0) <= MAX_STATE_TREE_BYTES,
    { message: `a state tree is at most ${MAX_STATE_TREE_BYTES} bytes` },
  );
export type PushStatesBody = z.infer<typeof PushStatesBody>;

/** `GET /api/v1/states` and the answer to `PUT /api/v1/states`. */
export interface StateTreeInfo {
  version: string;
  files: string[];
  bytes: number;
  updatedAt: string;
  updatedBy: string;
}

/** Action to the agent: replace the cached tree with this one (only the newest matters). */
export interface StatesUpdate {
  kind: "states.update";
  version: string;
  files: Record<string, string>;
}

export const StatesUpdateSchema = z
  .object({ kind: z.literal("states.update"), version: z.string().min(1).max(64), files: z.record(StatePath, z.string()) })
  .strict();
