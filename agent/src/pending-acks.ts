import type WebSocket from "ws";

/** The wire's limit on ids in one `ack` or return. */
const MAX_IDS_PER_FRAME = 1000;

/**
 * Acks of applied actions wait up to `holdMs` before they leave, so that a fast
 * job's return can carry its dispatch's ack: one frame instead of two, and the
 * control plane handles every frame in the node's object. Acks that find no
 * return to ride on leave together, as one `ack` message.
 *
 * Acks belong to the socket the actions came on: when it closes they are
 * dropped, and the server resends those actions, which the agent acks again
 * without applying them twice.
 */
export class PendingAcks {
  readonly #holdMs: number;
  readonly #send: (socket: WebSocket, ids: string[]) => void;
  #socket: WebSocket | undefined;
  #ids: string[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(holdMs: number, send: (socket: WebSocket, ids: string[]) => void) {
    this.#holdMs = holdMs;
    this.#send = send;
  }

  add(socket: WebSocket, id: string): void {
    if (socket !== this.#socket) this.flush();
    this.#socket = socket;
    this.#ids.push(id);
    if (this.#holdMs <= 0 || this.#ids.length >= MAX_IDS_PER_FRAME) return this.flush();
    this.#timer ??= setTimeout(() => this.flush(), this.#holdMs);
  }

  /** The ids waiting on `socket`, handed to a message about to leave on it; they are no longer pending. */
  take(socket: WebSocket | undefined): string[] | undefined {
    if (socket === undefined || socket !== this.#socket || this.#ids.length === 0) return undefined;
    const ids = this.#ids;
    this.#reset();
    return ids;
  }

  flush(): void {
    const socket = this.#socket;
    const ids = this.#ids;
    this.#reset();
    if (socket && ids.length > 0) this.#send(socket, ids);
  }

  /** The socket closed: its acks cannot be delivered any more. */
  drop(socket: WebSocket): void {
    if (socket === this.#socket) this.#reset();
  }

  #reset(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#ids = [];
  }
}
