import { exports } from "cloudflare:workers";
import type { EventsServerMessage, OrgEvent } from "../../protocol/events.ts";

/** A subscriber socket to `/api/v1/events` that records what arrives and how it closes. */
export interface Subscriber {
  ws: WebSocket;
  messages: EventsServerMessage[];
  closed: Promise<{ code: number; reason: string }>;
  events(): OrgEvent[];
  waitFor(done: (events: OrgEvent[]) => boolean, what: string): Promise<OrgEvent[]>;
  ready(): Promise<number>;
}

export async function openEvents(options: { token?: string; since?: number } = {}): Promise<Response> {
  const headers: Record<string, string> = { upgrade: "websocket" };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  const query = options.since === undefined ? "" : `?since=${options.since}`;
  return exports.default.fetch(new Request(`http://api.test/api/v1/events${query}`, { headers }));
}

async function poll<T>(read: () => T | undefined, what: string, got: () => unknown): Promise<T> {
  for (let i = 0; i < 300; i++) {
    const value = read();
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(got())}`);
}

export function subscriberOf(res: Response): Subscriber {
  const ws = res.webSocket;
  if (res.status !== 101 || !ws) throw new Error(`events upgrade answered ${res.status}`);
  ws.accept();
  const messages: EventsServerMessage[] = [];
  ws.addEventListener("message", (event) => {
    messages.push(JSON.parse(event.data as string) as EventsServerMessage);
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.addEventListener("close", (event) => resolve({ code: event.code, reason: event.reason })),
  );
  const events = () => messages.flatMap((m) => (m.type === "event" ? [m.event] : []));
  return {
    ws,
    messages,
    closed,
    events,
    waitFor: (done, what) => poll(() => (done(events()) ? events() : undefined), what, events),
    ready: () => poll(() => messages.find((m) => m.type === "ready"), "ready", () => messages).then((m) => (m as { last: number }).last),
  };
}

export async function subscribe(options: { token: string; since?: number }): Promise<Subscriber> {
  return subscriberOf(await openEvents(options));
}
