const encoder = new TextEncoder();

/** One server-sent event frame: `id:` lets a client resume with `?since=`. */
export function sseFrame(id: number, data: unknown): Uint8Array {
  return encoder.encode(`id: ${id}\ndata: ${JSON.stringify(data)}\n\n`);
}

/** Live server-sent-event watchers of one object; a watcher whose write fails is dropped. */
export class SseHub {
  private readonly writers = new Set<WritableStreamDefaultWriter<Uint8Array>>();

  /** A stream that first carries `backlog`, then every broadcast until closed (when `live`). */
  open(backlog: readonly Uint8Array[], live: boolean): Response {
    const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
    const writer = writable.getWriter();
    for (const frame of backlog) void writer.write(frame).catch(() => undefined);
    if (live) this.writers.add(writer);
    else void writer.close().catch(() => undefined);
    return new Response(readable, { headers: { "content-type": "text/event-stream", "cache-control": "no-cache" } });
  }

  broadcast(frame: Uint8Array): void {
    for (const writer of this.writers) writer.write(frame).catch(() => this.writers.delete(writer));
  }

  closeAll(): void {
    for (const writer of this.writers) void writer.close().catch(() => undefined);
    this.writers.clear();
  }

  get size(): number {
    return this.writers.size;
  }
}
