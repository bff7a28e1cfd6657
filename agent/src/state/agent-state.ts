import type { DataDirPaths } from "./data-dir.ts";
import { DedupLedger } from "./ledger.ts";
import { Outbox } from "./outbox.ts";
import { SettingsStore } from "./settings.ts";

/** Everything durable the running agent works with, opened from one data dir. */
export interface AgentState {
  readonly settings: SettingsStore;
  readonly outbox: Outbox;
  /** Job dedup: `jid → epoch`, recorded before a job runs. */
  readonly ledger: DedupLedger;
  /** Ids of applied control-plane actions (epoch 0), so resends are acked, not re-applied. */
  readonly appliedActions: DedupLedger;
  close(): void;
}

/** Resends of an action arrive within minutes; a thousand ids is far more than one outage can produce. */
const APPLIED_ACTIONS_KEPT = 1_000;

export function openAgentState(paths: DataDirPaths): AgentState {
  const settings = SettingsStore.open(paths.settings);
  const outbox = Outbox.open(paths.outbox);
  const ledger = DedupLedger.open(paths.ledger);
  const appliedActions = DedupLedger.open(paths.actions, { maxEntries: APPLIED_ACTIONS_KEPT });
  return {
    settings,
    outbox,
    ledger,
    appliedActions,
    close: () => {
      ledger.close();
      appliedActions.close();
    },
  };
}
