import { ATTEMPT_TIMEOUT_MS, DELIVERY_HEADERS, signPayload } from "../../protocol/webhooks.ts";

export interface Outgoing {
  url: string;
  webhookId: string;
  deliveryId: string;
  eventType: string;
  body: string;
  secret: string;
}

export interface SendOutcome {
  at: number;
  durationMs: number;
  statusCode: number | null;
  error: string | null;
  delivered: boolean;
}

const MAX_ERROR_LENGTH = 200;

/** One signed POST. Never throws: a network failure or timeout is an outcome like any status code. */
export async function sendDelivery(outgoing: Outgoing, now: () => number = Date.now): Promise<SendOutcome> {
  const at = now();
  const timestamp = Math.floor(at / 1000);
  const headers = {
    "content-type": "application/json",
    "user-agent": "Zectre-Webhooks/1",
    [DELIVERY_HEADERS.webhook]: outgoing.webhookId,
    [DELIVERY_HEADERS.event]: outgoing.eventType,
    [DELIVERY_HEADERS.delivery]: outgoing.deliveryId,
    [DELIVERY_HEADERS.timestamp]: String(timestamp),
    [DELIVERY_HEADERS.signature]: await signPayload(outgoing.secret, timestamp, outgoing.body),
  };
  try {
    const response = await fetch(outgoing.url, {
      method: "POST",
      headers,
      body: outgoing.body,
      // A redirect could lead to a host the URL check never saw.
      redirect: "manual",
      signal: AbortSignal.timeout(ATTEMPT_TIMEOUT_MS),
    });
    // The receiver's body is not needed; cancelling it frees the connection.
    await response.body?.cancel().catch(() => undefined);
    const delivered = response.status >= 200 && response.status < 300;
    return { at, durationMs: now() - at, statusCode: response.status, error: null, delivered };
  } catch (error) {
    return { at, durationMs: now() - at, statusCode: null, error: describe(error), delivered: false };
  }
}

function describe(error: unknown): string {
  const name = error instanceof Error ? error.name : "";
  if (name === "TimeoutError" || name === "AbortError") return `timed out after ${ATTEMPT_TIMEOUT_MS / 1000} s`;
  const message = error instanceof Error ? error.message : String(error);
  return message.length > MAX_ERROR_LENGTH ? `${message.slice(0, MAX_ERROR_LENGTH - 3)}...` : message;
}
