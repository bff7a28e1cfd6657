import type { EnrollmentState, Facts, Labels, NodeSummary } from "../../protocol/nodes.ts";
import { iso } from "./secrets.ts";

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
    const row = this.sql.exec<NodeRow>("SELECT * FROM nodes WHERE id = ?", id).toArray()[0];
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

  list(states: readonly EnrollmentState[] | null): DirectoryEntry[] {
    const rows =
      states === null
        ? this.sql.exec<NodeRow>("SELECT * FROM nodes ORDER BY id")
        : this.sql.exec<NodeRow>(
            `SELECT * FROM nodes WHERE state IN (${states.map(() => "?").join(",")}) ORDER BY id`,
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

  setPresence(id: string, online: boolean, lastSeen: number): void {
    this.sql.exec(
      "UPDATE nodes SET online = ?, last_seen = MAX(COALESCE(last_seen, 0), ?) WHERE id = ?",
      online ? 1 : 0,
      lastSeen,
      id,
    );
  }
}
