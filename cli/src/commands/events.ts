import WebSocket from "ws";
import { EVENTS_CLOSE, type EventsServerMessage, type OrgEvent } from "../../../protocol/events.ts";
import type { JsonObject } from "../../../protocol/json.ts";
import { oneLine } from "../../../lib/network-errors.ts";
import { type CommandContext, defineCommand, type Entry } from "../command.ts";
import { CliError, UsageError } from "../errors.ts";
import { MAX_RECONNECTS } from "../jobs.ts";

const PATH = ["events"];
const RECONNECT_DELAYS_MS = [250, 500, 1000, 2000, 2000];

const events = defineCommand({
  path: PATH,
  summary: "Print the org's live events (nodes, jobs, deployments) until Ctrl-C",
  description:
    "Each line reads ID TIME TYPE SUMMARY. Types: node.online, node.offline, job.created, job.return, job.finished, " +
    "deploy.created|healthy|failed|promoted|rolled_back|scaled|idle|woken and task.state. --filter keeps the types matching a glob " +
    "(* and ?; repeat it to keep several). --since ID first prints the kept events after that id (the org keeps its last " +
    "10,000 events, at most 24 hours). A dropped connection is reopened from the last id printed, so nothing still kept " +
    "is missed. --format json prints one JSON object per line (NDJSON). Ctrl-C ends it with exit code 0.",
  options: {
    filter: { type: "string", multiple: true, valueName: "GLOB", description: "Only event types matching GLOB, e.g. 'job.*'" },
    since: { type: "string", valueName: "ID", description: "First print the kept events after this event id (0 for all kept)" },
  },
  examples: ["zectre events", "zectre events --filter 'job.*' --filter node.offline", "zectre events --since 1200 --format json"],
  async run(ctx) {
    const since = parseSince(ctx.options.since);
    const matches = typeMatcher(ctx.options.filter);
    const print = eventPrinter(ctx);
    return stream(ctx, since, (event) => {
      if (matches(event.type)) print(event);
    });
  },
});

function parseSince(raw: string | undefined): number | null {
  if (raw === undefined) return null;
  if (!/^\d{1,15}$/.test(raw)) throw new UsageError(`invalid --since '${raw}': give an event id, a whole number such as 1200`, PATH);
  return Number(raw);
}

/** `*` any run of characters, `?` one; everything else literal. No filter keeps everything. */
export function typeMatcher(globs: readonly string[]): (type: string) => boolean {
  if (globs.length === 0) return () => true;
  const patterns = globs.map((glob) => new RegExp(`^${glob.split("").map((ch) => (ch === "*" ? ".*" : ch === "?" ? "." : ch.replace(/[\\^$.|+()[\]{}]/g, "\\$&"))).join("")}$`));
  return (type) => patterns.some((pattern) => pattern.test(type));
}

function eventPrinter(ctx: CommandContext): (event: OrgEvent) => void {
  const { out, io } = ctx;
  if (out.format === "json") return (event) => io.stdout.write(`${JSON.stringify(event)}\n`);
  if (out.format === "yaml") {
    return (event) => {
      io.stdout.write("---\n");
      out.result(event, () => "");
    };
  }
  return (event) => io.stdout.write(`${eventLine(event)}\n`);
}

/** Values came from hosts and users: control characters are shown escaped. */
function text(value: unknown): string {
  const raw = typeof value === "string" ? value : JSON.stringify(value) ?? String(value);
  return raw.replace(/[\u0000-\u001f\u007f-\u009f]/g, (char) => `\\x${char.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

export function eventSummary(event: OrgEvent): string {
  const d = event.data;
  switch (event.type) {
    case "node.online":
    case "node.offline":
      return text(d["nodeId"]);
    case "job.created":
      return `${text(d["jid"])} ${text(d["function"])} on ${text(d["target"])} (${text(d["targets"])} targets) by ${text(d["user"])}`;
    case "job.return":
      return `${text(d["jid"])} ${text(d["nodeId"])} ${d["success"] === true ? "ok" : "failed"}${d["synthetic"] === true ? " (unreachable)" : ""}`;
    case "job.finished": {
      const counts = (d["counts"] ?? {}) as JsonObject;
      return `${text(d["jid"])} ${text(d["status"])} ${text(counts["succeeded"] ?? 0)}/${text(counts["targets"] ?? 0)} succeeded`;
    }
    case "task.state":
      return `${text(d["app"])}/${text(d["taskId"])} on ${text(d["nodeId"])}: ${text(d["state"])}${d["hostPort"] == null ? "" : ` :${text(d["hostPort"])}`}`;
    default: {
      const { app, deploymentId, ...rest } = d;
      const extra = Object.entries(rest).map(([key, value]) => ` ${key}=${text(value)}`).join("");
      return `${text(app)} ${text(deploymentId)}${extra}`;
    }
  }
}

export function eventLine(event: OrgEvent): string {
  const at = Number.isNaN(Date.parse(event.ts)) ? text(event.ts) : `${new Date(event.ts).toISOString().slice(0, 19)}Z`;
  return `${event.id} ${at} ${event.type} ${eventSummary(event)}`;
}

/** How one connection ended: the user stopped, or it broke (worth a reconnect unless `fatal`). */
type Ended = { kind: "stopped" } | { kind: "broken"; reason: string; fatal: boolean; wasReady: boolean };

function eventsUrl(base: string, since: number | null): string {
  const url = new URL(`${base.replace(/\/+$/, "")}/api/v1/events`);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  if (since !== null) url.searchParams.set("since", String(since));
  return url.toString();
}

/** The server refused the upgrade with its usual JSON error: show its words. */
function refusal(status: number, body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: { code?: string; message?: string } };
    if (parsed.error?.message) return `${oneLine(parsed.error.message)} (${parsed.error.code ?? `http_${status}`})`;
  } catch {
    // not JSON: fall through
  }
  return `the server answered ${status} instead of opening the event stream`;
}

interface Connection {
  readonly ended: Promise<Ended>;
  close(): void;
}

/** One WebSocket: hands each event on, resolves when it ends. */
function connect(url: string, token: string, onReady: (last: number) => void, onEvent: (event: OrgEvent) => void): Connection {
  const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` }, handshakeTimeout: 30_000 });
  let wasReady = false;
  let stopped = false;
  const ended = new Promise<Ended>((resolve) => {
    ws.on("unexpected-response", (_req, res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => {
        const status = res.statusCode ?? 0;
        resolve({ kind: "broken", reason: refusal(status, body), fatal: status < 500 && status !== 408 && status !== 429, wasReady });
        ws.terminate();
      });
    });
    ws.on("message", (data) => {
      const message = JSON.parse(String(data)) as EventsServerMessage;
      if (message.type === "ready") {
        wasReady = true;
        onReady(message.last);
      } else if (message.type === "event") onEvent(message.event);
    });
    ws.on("error", (error) => resolve({ kind: "broken", reason: oneLine(error.message), fatal: false, wasReady }));
    ws.on("close", (code, reason) => {
      if (stopped) return resolve({ kind: "stopped" });
      const refused = code === EVENTS_CLOSE.unauthorized || code === EVENTS_CLOSE.forbidden;
      const why = reason.length > 0 ? `${oneLine(reason.toString())} (close ${code})` : `the server closed the stream (close ${code})`;
      resolve({ kind: "broken", reason: why, fatal: refused, wasReady });
    });
  });
  return {
    ended,
    close() {
      stopped = true;
      ws.close(1000);
      // A socket still connecting cannot close cleanly; do not wait for it.
      setTimeout(() => ws.terminate(), 1000).unref();
    },
  };
}

/**
 * Prints until Ctrl-C (exit 0). After a break it reconnects with the last id it
 * printed (or, before any event, the id the first `ready` named), skipping repeats.
 */
async function stream(ctx: CommandContext, since: number | null, handle: (event: OrgEvent) => void): Promise<number> {
  const credentials = ctx.credentials();
  let lastId = since;
  let current: Connection | null = null;
  let stopRequested = false;
  const stopListening = ctx.io.onInterrupt?.(() => {
    stopRequested = true;
    current?.close();
  });
  try {
    let failures = 0;
    for (;;) {
      current = connect(
        eventsUrl(credentials.url, lastId),
        credentials.token,
        (last) => {
          failures = 0;
          lastId ??= last;
        },
        (event) => {
          if (lastId !== null && event.id <= lastId) return;
          lastId = event.id;
          handle(event);
        },
      );
      const ended = await current.ended;
      if (ended.kind === "stopped" || stopRequested) return 0;
      if (ended.fatal) throw new CliError(ended.reason);
      failures++;
      if (failures > MAX_RECONNECTS) {
        const resume = lastId === null ? "zectre events" : `zectre events --since ${lastId}`;
        throw new CliError(`lost the event stream (${ended.reason}) and ${MAX_RECONNECTS} reconnects failed; pick it up again with '${resume}'`);
      }
      await new Promise((resolve) => setTimeout(resolve, RECONNECT_DELAYS_MS[failures - 1] ?? 2000));
      if (stopRequested) return 0;
    }
  } finally {
    stopListening?.();
  }
}

export const eventsCommands: readonly Entry[] = [events];
