import { DurableObject } from "cloudflare:workers";
import { failure, type Result } from "../protocol/errors.ts";
import type { JsonObject } from "../protocol/json.ts";
import {
  ATTEMPT_TIMEOUT_MS,
  type CreatedWebhook,
  EVENT_TYPE_PATTERN,
  eventPatternProblem,
  KEPT_DELIVERIES,
  MAX_ATTEMPTS,
  matchesAny,
  newDeliveryId,
  newEventId,
  newSigningSecret,
  newWebhookId,
  retryDelayMs,
  type WebhookDeliveryRecord,
  type WebhookPayload,
  type WebhookRecord,
  webhookUrlProblem,
} from "../protocol/webhooks.ts";
import { log } from "../workers/lib/log.ts";
import { SecretBox } from "./app/secret-box.ts";
import { type ObjectsEnv, orgStub } from "./env.ts";
import { applyMigrations } from "./sql-migrations.ts";
import { DeliveryStore } from "./webhook/deliveries.ts";
import { HookStore, patternsOf, toRecord } from "./webhook/hooks.ts";
import { type HookRow, type DeliveryRow, WEBHOOK_MIGRATIONS } from "./webhook/schema.ts";
import { sendDelivery } from "./webhook/send.ts";
import { allowPrivateTargets, retryBaseSeconds } from "./webhook/vars.ts";

export interface NewWebhookSpec {
  url: string;
  events: string[];
  createdBy: string;
}

export const MAX_WEBHOOKS_PER_ORG = 25;
/** Deliveries one alarm run sends at once; the rest follow in the next run, at once. */
const ALARM_BATCH = 20;
/** A claimed delivery is not picked again before its attempt could have timed out. */
const CLAIM_LEASE_MS = ATTEMPT_TIMEOUT_MS + 20_000;
/** Larger event payloads are dropped (and logged) rather than sent. */
const MAX_BODY_BYTES = 256 * 1024;

/**
 * One per org: webhook subscriptions, the signed delivery queue with retries, and delivery records.
 * Publishing stores the deliveries and returns; the alarm sends them, so a slow receiver
 * never holds up the job or deployment that produced the event.
 */
export class WebhookObject extends DurableObject<ObjectsEnv> {
  private readonly sql: SqlStorage;
  private readonly hooks: HookStore;
  private readonly deliveries: DeliveryStore;

  constructor(ctx: DurableObjectState, env: ObjectsEnv) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    applyMigrations(this.sql, WEBHOOK_MIGRATIONS);
    this.hooks = new HookStore(this.sql);
    this.deliveries = new DeliveryStore(this.sql);
  }

  /** The secret is sealed under SECRETS_KEY before it is stored, and returned only here. */
  async add(org: string, spec: NewWebhookSpec): Promise<Result<CreatedWebhook>> {
    const box = SecretBox.fromHex(this.env.SECRETS_KEY);
    if (!box) return failure("unavailable", "webhooks need the SECRETS_KEY secret (64 hex characters) to store signing secrets; it is not set");
    const problem = webhookUrlProblem(spec.url, allowPrivateTargets(this.env)) ?? spec.events.map(eventPatternProblem).find((p) => p !== null);
    if (problem) return failure("invalid_body", problem);
    if (this.hooks.rows().length >= MAX_WEBHOOKS_PER_ORG) {
      return failure("conflict", `an org has at most ${MAX_WEBHOOKS_PER_ORG} webhooks; remove one first`);
    }
    this.rememberOrg(org);
    const id = newWebhookId();
    const secret = newSigningSecret();
    const secretSealed = await box.seal(secret, sealContext(org, id));
    const webhook = this.hooks.insert({ id, url: spec.url, events: [...new Set(spec.events)], secretSealed, createdBy: spec.createdBy, createdAt: Date.now() });
    return { ok: true, webhook, secret };
  }

  list(): WebhookRecord[] {
    return this.hooks.list();
  }

  get(id: string): WebhookRecord | null {
    const row = this.hooks.row(id);
    return row ? toRecord(row) : null;
  }

  /** Its pending deliveries are canceled (their records stay): nothing can sign them any more. */
  remove(id: string): Result<{ webhook: WebhookRecord }> {
    const webhook = this.get(id);
    if (!webhook) return failure("not_found", `webhook ${id} not found`);
    this.hooks.delete(id);
    this.deliveries.cancelPending(id);
    return { ok: true, webhook };
  }

  /** Stores one delivery per enabled subscription whose patterns match `type`; the alarm sends them. */
  async publish(org: string, type: string, data: JsonObject): Promise<{ deliveries: number }> {
    if (!EVENT_TYPE_PATTERN.test(type)) {
      log("error", "webhooks", "refused to publish a malformed event type", { org, type });
      return { deliveries: 0 };
    }
    const hooks = this.hooks.rows().filter((hook) => hook.enabled === 1 && matchesAny(patternsOf(hook), type));
    if (hooks.length === 0) return { deliveries: 0 };
    this.rememberOrg(org);
    return { deliveries: (await this.enqueue(org, type, data, hooks)).length };
  }

  /** A `webhook.test` event to this webhook only, whatever its patterns. */
  async enqueueTest(org: string, id: string): Promise<Result<{ delivery: WebhookDeliveryRecord }>> {
    const hook = this.hooks.row(id);
    if (!hook) return failure("not_found", `webhook ${id} not found`);
    this.rememberOrg(org);
    const [deliveryId] = await this.enqueue(org, "webhook.test", { webhookId: id, message: "This is a test delivery from Zectre." }, [hook]);
    if (deliveryId === undefined) return failure("internal", "the test event could not be queued");
    return { ok: true, delivery: this.deliveries.get(deliveryId) as WebhookDeliveryRecord };
  }

  /** Newest first; a webhook's deliveries outlive it, so only an id with neither is unknown. */
  listDeliveries(limit: number, webhookId?: string): Result<{ deliveries: WebhookDeliveryRecord[] }> {
    const deliveries = this.deliveries.list(limit, webhookId);
    if (webhookId !== undefined && deliveries.length === 0 && !this.hooks.row(webhookId)) {
      return failure("not_found", `webhook ${webhookId} not found`);
    }
    return { ok: true, deliveries };
  }

  /**
   * Sends what is due. Idempotent under at-least-once alarms: each delivery is claimed
   * (its due time moved past the attempt's timeout) before it is sent, and its attempt
   * is recorded under a version check before the next alarm is set.
   */
  override async alarm(): Promise<void> {
    const org = this.org();
    const due = this.deliveries.due(Date.now(), ALARM_BATCH);
    if (org !== null) await this.countOutcomes(org, await Promise.all(due.map((row) => this.attempt(org, row))));
    const next = this.deliveries.nextDueAt();
    if (next !== null) await this.ctx.storage.setAlarm(next);
  }

  // ---- internals ----

  private async enqueue(org: string, type: string, data: JsonObject, hooks: readonly HookRow[]): Promise<string[]> {
    const createdAt = Date.now();
    const payload: WebhookPayload = { id: newEventId(), type, org, createdAt: new Date(createdAt).toISOString(), data };
    const body = JSON.stringify(payload);
    if (new TextEncoder().encode(body).byteLength > MAX_BODY_BYTES) {
      log("error", "webhooks", "event too large to deliver; dropped", { org, type, bytes: body.length });
      return [];
    }
    const ids = hooks.map((hook) => {
      const id = newDeliveryId();
      this.deliveries.enqueue({ id, webhookId: hook.id, eventId: payload.id, eventType: type, url: hook.url, body, createdAt });
      return id;
    });
    this.deliveries.trim(KEPT_DELIVERIES);
    await this.wakeAt(createdAt);
    return ids;
  }

  /** The outcome of the attempt it made, or null when it made none. */
  private async attempt(org: string, row: DeliveryRow): Promise<DeliveryOutcome | null> {
    const hook = this.hooks.row(row.webhook_id);
    if (!hook) {
      this.deliveries.cancelPending(row.webhook_id);
      return null;
    }
    if (!this.deliveries.claim(row, Date.now() + CLAIM_LEASE_MS)) return null;
    const secret = await this.openSecret(org, hook);
    const outcome = secret === null
      ? { at: Date.now(), durationMs: 0, statusCode: null, error: "the signing secret cannot be read (was SECRETS_KEY changed?)", delivered: false }
      : await sendDelivery({ url: row.url, webhookId: hook.id, deliveryId: row.id, eventType: row.event_type, body: row.body, secret });
    const n = row.attempts + 1;
    const status = outcome.delivered ? "delivered" : n >= MAX_ATTEMPTS ? "failed" : "pending";
    const nextAttemptAt = status === "pending" ? Date.now() + retryDelayMs(n, retryBaseSeconds(this.env)) : null;
    this.deliveries.recordAttempt(row, { ...outcome, status, nextAttemptAt });
    if (status === "failed") log("warn", "webhooks", "delivery failed after its last attempt", { org, webhook: hook.id, delivery: row.id, event: row.event_type });
    return status === "pending" ? "retrying" : status;
  }

  /** One `recordMetrics` call per alarm run, after the attempts are recorded; a failure loses only these counts. */
  private async countOutcomes(org: string, outcomes: ReadonlyArray<DeliveryOutcome | null>): Promise<void> {
    const counts = new Map<DeliveryOutcome, number>();
    for (const outcome of outcomes) if (outcome !== null) counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
    if (counts.size === 0) return;
    const counters = [...counts].map(([result, value]) => ({ name: "zectre_webhook_deliveries_total", labels: { result }, value }));
    try {
      await orgStub(this.env, org).recordMetrics({ counters, histograms: [] });
    } catch (error) {
      log("warn", "metrics", "could not count webhook deliveries", { org, error: String(error) });
    }
  }

  private async openSecret(org: string, hook: HookRow): Promise<string | null> {
    const box = SecretBox.fromHex(this.env.SECRETS_KEY);
    if (!box) return null;
    try {
      return await box.open(hook.secret_sealed, sealContext(org, hook.id));
    } catch {
      return null;
    }
  }

  /** Brings the alarm forward to `at`; a later one set by a retry must not hold new deliveries back. */
  private async wakeAt(at: number): Promise<void> {
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > at) await this.ctx.storage.setAlarm(at);
  }

  /** The object is named after its org, but an object cannot read its own name: the first caller tells it. */
  private rememberOrg(org: string): void {
    this.sql.exec("INSERT OR IGNORE INTO meta (key, value) VALUES ('org', ?)", org);
  }

  private org(): string | null {
    return this.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'org'").toArray()[0]?.value ?? null;
  }
}

type DeliveryOutcome = "delivered" | "retrying" | "failed";

/** Binds a sealed secret to its org and webhook, so a stored value cannot be moved onto another webhook. */
function sealContext(org: string, id: string): string {
  return `webhook:${org}/${id}`;
}
