import type { EnrollmentState, Facts, Labels, NodeSummary } from "../../protocol/nodes.ts";
import { buildGrains, lazyCandidate, matchTarget, type TargetExpr, targetUsesGrains } from "../../protocol/target.ts";
import { iso } from "./secrets.ts";

/**
 * Appended to the org's migrations: the addresses of direct nodes (a node without a row is reached through
 * its tunnel). Its own table, created only if missing, so it stays harmless should it ever run twice.
 */
export const DIRECT_NODES_MIGRATION = "CREATE TABLE IF NOT EXISTS direct_nodes (node_id TEXT PRIMARY KEY, address TEXT NOT NULL)";

/** Every read of a directory row: the node with its direct address, if any. */
const SELECT_NODES = "SELECT nodes.*, direct_nodes.address AS direct_address FROM nodes LEFT JOIN direct_nodes ON direct_nodes.node_id = nodes.id";

interface NodeRow extends Record<string, SqlStorageValue> {
  id: string;
  public_key: string;
  state: string;
  state_reason: string | null;
  state_changed_at: number;
  labels: string;
  facts: string | null;
  online: number;
  last_seen: number | null;
  enrolled_at: number;
  direct_address: string | null;
}

export interface DirectoryEntry {
  summary: NodeSummary;
  publicKey: string;
  facts: Facts | null;
}

function toEntry(row: NodeRow): DirectoryEntry {
  const facts = row.facts === null ? null : (JSON.parse(row.facts) as Facts);
  return {
    publicKey: row.public_key,
    facts,
    summary: {
      id: row.id,
      state: row.state as EnrollmentState,
      online: row.online === 1,
      lastSeen: iso(row.last_seen),
      labels: JSON.parse(row.labels) as Labels,
      os: facts?.os ?? null,
      arch: facts?.arch ?? null,
      hostname: facts?.hostname ?? null,
      agentVersion: facts?.agentVersion ?? null,
      enrolledAt: new Date(row.enrolled_at).toISOString(),
      stateReason: row.state_reason,
      directAddress: row.direct_address,
    },
  };
}

export interface NewNode {
  id: string;
  publicKey: string;
  state: EnrollmentState;
  labels: Labels;
  facts: Facts;
  tokenId: string;
}

/** The org's view of its nodes: enrollment state, labels, facts and presence, for listing and targeting. */
export class NodeDirectory {
  private readonly sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.sql = sql;
  }

  get(id: string): DirectoryEntry | null {
    const row = this.sql.exec<NodeRow>(`${SELECT_NODES} WHERE id = ?`, id).toArray()[0];
    return row ? toEntry(row) : null;
  }

  insert(node: NewNode): void {
    const now = Date.now();
    this.sql.exec(
      `INSERT INTO nodes (id, public_key, state, state_changed_at, labels, facts, enrolled_at, enrollment_token)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      node.id,
      node.publicKey,
      node.state,
      now,
      JSON.stringify(node.labels),
      JSON.stringify(node.facts),
      now,
      node.tokenId,
    );
  }

  /** Ids of nodes in `states` that `expr` matches, in id order; facts and labels are read only if the expression uses grains. */
  matching(expr: TargetExpr, states: readonly EnrollmentState[]): string[] {
    const columns = targetUsesGrains(expr) ? "id, labels, facts" : "id, NULL AS labels, NULL AS facts";
    const rows = this.sql
      .exec<{ id: string; labels: string | null; facts: string | null }>(
        `SELECT ${columns} FROM nodes WHERE state IN (${states.map(() => "?").join(",")}) ORDER BY id`,
        ...states,
      )
      .toArray();
    const grainsOf = (row: (typeof rows)[number]) => () =>
      buildGrains(row.facts === null ? null : (JSON.parse(row.facts) as Facts), JSON.parse(row.labels ?? "{}") as Labels);
    return rows.filter((row) => matchTarget(expr, lazyCandidate(row.id, grainsOf(row)))).map((row) => row.id);
  }

  /** The same resolution as `matching`, over the nodes in `states` (null: every state), as whole entries: a preview shows them. */
  listMatching(expr: TargetExpr, states: readonly EnrollmentState[] | null): DirectoryEntry[] {
    return this.list(states).filter((e) => matchTarget(expr, lazyCandidate(e.summary.id, () => buildGrains(e.facts, e.summary.labels))));
  }

  list(states: readonly EnrollmentState[] | null): DirectoryEntry[] {
    const rows =
      states === null
        ? this.sql.exec<NodeRow>(`${SELECT_NODES} ORDER BY id`)
        : this.sql.exec<NodeRow>(
            `${SELECT_NODES} WHERE state IN (${states.map(() => "?").join(",")}) ORDER BY id`,
            ...states,
          );
    return rows.toArray().map(toEntry);
  }

  setState(id: string, state: EnrollmentState, reason: string | null): void {
    const offline = state === "revoked" || state === "rejected";
    this.sql.exec(
      `UPDATE nodes SET state = ?, state_reason = ?, state_changed_at = ?, online = CASE WHEN ? THEN 0 ELSE online END WHERE id = ?`,
      state,
      reason,
      Date.now(),
      offline ? 1 : 0,
      id,
    );
  }

  setLabels(id: string, labels: Labels): void {
    this.sql.exec("UPDATE nodes SET labels = ? WHERE id = ?", JSON.stringify(labels), id);
  }

  setFacts(id: string, facts: Facts): void {
    this.sql.exec("UPDATE nodes SET facts = ? WHERE id = ?", JSON.stringify(facts), id);
  }

  /** The node's direct address, or null to reach its tasks through the tunnel again. */
  setDirectAddress(id: string, address: string | null): void {
    if (address === null) this.sql.exec("DELETE FROM direct_nodes WHERE node_id = ?", id);
    else this.sql.exec("INSERT INTO direct_nodes (node_id, address) VALUES (?, ?) ON CONFLICT (node_id) DO UPDATE SET address = excluded.address", id, address);
  }

  /** Node id → direct address, for the nodes that may serve (approved or active) and have one. */
  directAddresses(): Record<string, string> {
    const rows = this.sql
      .exec<{ id: string; address: string }>(
        "SELECT nodes.id, direct_nodes.address FROM direct_nodes JOIN nodes ON nodes.id = direct_nodes.node_id WHERE nodes.state IN ('approved', 'active')",
      )
      .toArray();
    return Object.fromEntries(rows.map((row) => [row.id, row.address]));
  }

  setPresence(id: string, online: boolean, lastSeen: number): void {
    this.sql.exec(
      "UPDATE nodes SET online = ?, last_seen = MAX(COALESCE(last_seen, 0), ?) WHERE id = ?",
      online ? 1 : 0,
      lastSeen,
      id,
    );
  }
}
