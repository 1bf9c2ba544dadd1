// One TCP or TLS connection to tandem, with pipelining, a bounded queue, per-request timeouts,
// automatic reconnect with backoff and a graceful close().
//
// Requests are written as soon as they are made, up to `maxInFlight` unanswered ones; the server
// answers in request order (PROTOCOL.md §8), so responses are matched first-in first-out (and
// their ids checked). Requests beyond that wait in a queue of at most `maxQueue`; past that they
// fail at once with OVERLOADED.
//
// When the connection drops, requests already written fail with UNAVAILABLE (they may or may
// not have run), and requests still queued are written on the next connection. Reconnecting
// starts at once after a drop, then backs off exponentially (with jitter) while it keeps failing.

import * as net from "node:net";
import * as tls from "node:tls";

import { d1Error, TandemError } from "./errors.js";
import { parseLine, type Json } from "./json.js";

export interface ConnectionOptions {
  host: string;
  port: number;
  tls: boolean;
  /** Verify the server certificate and host name (default true). */
  tlsVerify: boolean;
  /** Extra CA certificates (PEM) to trust, besides the system's. */
  ca?: string[];
  /** TLS server name (SNI and certificate check); default: the host when it is a name. */
  servername?: string;
  token?: string;
  routingKey?: string;
  clientName: string;
  /** Per request, from when it is made until its response; 0 disables. */
  timeoutMs: number;
  connectTimeoutMs: number;
  maxInFlight: number;
  maxQueue: number;
  reconnectMinDelayMs: number;
  reconnectMaxDelayMs: number;
  /** Close the connection after this long with nothing to do (reopened on demand); 0 never. */
  idleTimeoutMs: number;
  /** Failed connection attempts a queued request waits through before it fails (≥ 1). */
  connectAttempts: number;
}

/** A response line as the server sent it. */
export interface Response {
  id: Json;
  ok: boolean;
  result?: Json;
  error?: { code: string; message: string; store?: string; index?: number };
}

const enum State {
  Queued,
  Sent,
  Done,
}

interface Pending {
  /** The request's JSON after `{"id":N,` (it ends with `}`). */
  body: string;
  /** The routing key this request must run under (undefined: none). */
  key: string | undefined;
  id: number;
  state: State;
  /** Failed connection attempts this request has waited through. */
  attempts: number;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** The min_seq to send with it, asked for when it is written (undefined: none). */
  minSeq: (() => string | undefined) | undefined;
  resolve: (r: Response) => void;
  reject: (e: Error) => void;
  internal: boolean;
}

/** A FIFO with O(1) push and shift. */
class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  push(v: T): void {
    this.items.push(v);
  }
  peek(): T | undefined {
    return this.items[this.head];
  }
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const v = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return v;
  }
  drain(): T[] {
    const out = this.items.slice(this.head) as T[];
    this.items = [];
    this.head = 0;
    return out;
  }
}

// idle: no socket; connecting: TCP/TLS handshake; hello: waiting for hello's answer;
// ready: requests flow; draining: end() was sent (idle or close()), new requests wait for the
// next connection.
type Phase = "idle" | "connecting" | "hello" | "ready" | "draining";

export class Connection {
  private phase: Phase = "idle";
  private socket: net.Socket | undefined;
  private readonly queue = new Fifo<Pending>();
  private readonly inflight = new Fifo<Pending>();
  private inflightUser = 0; // sent, unanswered requests that count against maxInFlight
  private queued = 0; // live (not timed-out) requests in the queue
  private nextId = 1;
  private sentKey: string | undefined; // routing key of the last hello written on this socket
  private out: string[] = [];
  private flushScheduled = false;
  private rest = ""; // partial line read so far
  private failures = 0; // consecutive failed connection attempts
  private closingSocket = false; // end() called on the current socket
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private idleTimer: ReturnType<typeof setTimeout> | undefined;
  private closeTimer: ReturnType<typeof setTimeout> | undefined; // close(): the server's side must close by then
  private closing = false;
  private closeWaiters: (() => void)[] = [];
  private lineError: TandemError | undefined; // a server error with "id": null, before it closes

  /**
   * The position token to send in a hello for this routing key (PROTOCOL.md §15): after a
   * reconnect, the server then knows what this client has seen.
   */
  positionOf: (key: string | undefined) => string | undefined = () => undefined;

  constructor(readonly options: ConnectionOptions) {}

  /** Requests made and not yet answered (queued or in flight). */
  get pending(): number {
    return this.queued + this.inflightUser;
  }

  /**
   * Sends a request (`body` is its JSON after `{"id":N,`) and resolves with the server's
   * response, ok or not. `minSeq`, when given, is asked for the request's min_seq as it is
   * written (so a request queued behind a write carries that write's token). Rejects with a
   * TandemError for transport problems, client timeouts, a full queue, or a closed client.
   */
  request(body: string, key: string | undefined, minSeq?: () => string | undefined): Promise<Response> {
    return new Promise<Response>((resolve, reject) => {
      if (this.closing) {
        reject(d1Error("D1_ERROR", "the tandem client is closed", "UNAVAILABLE"));
        return;
      }
      if (this.queued + this.inflightUser >= this.options.maxInFlight + this.options.maxQueue) {
        reject(
          d1Error(
            "D1_ERROR",
            `D1 DB is overloaded. Too many requests queued. (tandem client: ${this.options.maxQueue} queued and ${this.options.maxInFlight} in flight)`,
            "OVERLOADED",
          ),
        );
        return;
      }
      const p: Pending = {
        body,
        key,
        id: 0,
        state: State.Queued,
        attempts: 0,
        timer: undefined,
        minSeq,
        resolve,
        reject,
        internal: false,
      };
      if (this.options.timeoutMs > 0) {
        p.timer = setTimeout(() => this.timedOut(p), this.options.timeoutMs);
      }
      this.queue.push(p);
      this.queued++;
      this.active();
      if (this.phase === "ready") this.pump();
      else if (this.phase === "idle" && this.reconnectTimer === undefined) this.open();
    });
  }

  /** Stops taking requests, lets queued and in-flight ones finish, then closes the socket. */
  close(): Promise<void> {
    this.closing = true;
    return new Promise<void>((resolve) => {
      this.closeWaiters.push(resolve);
      this.maybeFinishClose();
    });
  }

  /** Closes at once: every unanswered request fails with UNAVAILABLE. */
  destroy(): void {
    this.closing = true;
    const err = () => d1Error("D1_ERROR", "the tandem client was destroyed", "UNAVAILABLE");
    for (const p of this.queue.drain()) this.finish(p, undefined, err());
    this.queued = 0;
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    if (this.socket) this.socket.destroy();
    else this.maybeFinishClose();
  }

  // ------------------------------------------------------------------ connecting

  private open(): void {
    this.reconnectTimer = undefined;
    if (this.queued === 0) return; // nothing to do: connect on the next request
    this.phase = "connecting";
    this.sentKey = undefined;
    this.rest = "";
    this.lineError = undefined;
    const o = this.options;
    let socket: net.Socket;
    let connectEvent: string;
    if (o.tls) {
      const servername = o.servername ?? (net.isIP(o.host) ? undefined : o.host);
      socket = tls.connect({
        host: o.host,
        port: o.port,
        servername,
        rejectUnauthorized: o.tlsVerify,
        ca: o.ca && o.ca.length ? [...tls.rootCertificates, ...o.ca] : undefined,
      });
      connectEvent = "secureConnect";
    } else {
      socket = net.connect({ host: o.host, port: o.port });
      connectEvent = "connect";
    }
    this.socket = socket;
    this.closingSocket = false;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30000);
    socket.setEncoding("utf8");
    let reason: string | undefined;
    let fatal = false;
    // Covers the TCP/TLS handshake and hello's answer.
    const connectTimer = setTimeout(() => {
      reason = `no connection (and hello answered) within ${o.connectTimeoutMs} ms`;
      socket.destroy();
    }, o.connectTimeoutMs);
    this.connectTimer = connectTimer;
    socket.once(connectEvent, () => {
      this.phase = "hello";
      this.hello();
    });
    socket.on("data", (chunk: string) => this.onData(chunk));
    socket.on("error", (e: Error & { code?: string }) => {
      reason ??= e.code && !e.message.includes(e.code) ? `${e.code}: ${e.message}` : e.message;
      // A certificate the client refuses will not become acceptable by retrying.
      if (this.phase === "connecting" && /CERT|ERR_TLS|ERR_SSL/.test(e.code ?? "")) fatal = true;
    });
    socket.on("close", () => {
      clearTimeout(connectTimer);
      this.onClose(socket, reason ?? "the server closed the connection", fatal);
    });
  }

  private hello(): void {
    const o = this.options;
    let body = `"op":"hello","client":${JSON.stringify(o.clientName)}`;
    if (o.token !== undefined) body += `,"token":${JSON.stringify(o.token)}`;
    if (o.routingKey !== undefined) body += `,"routing_key":${JSON.stringify(o.routingKey)}`;
    const at = this.positionOf(o.routingKey);
    if (at !== undefined) body += `,"min_seq":${JSON.stringify(at)}`;
    body += "}";
    this.sentKey = o.routingKey;
    this.writeInternal(body, (r) => {
      if (this.connectTimer !== undefined) clearTimeout(this.connectTimer);
      this.connectTimer = undefined;
      if (r.ok) {
        this.phase = "ready";
        this.failures = 0;
        this.pump();
        this.maybeIdle();
        return;
      }
      // A refused hello (wrong token): the server closes the connection after it. Fail what is
      // queued with the server's answer rather than retrying forever.
      const err = d1Error("D1_ERROR", r.error?.message ?? "hello refused", r.error?.code ?? "UNAUTHORIZED", {
        serverMessage: r.error?.message,
      });
      for (const p of this.queue.drain()) this.finish(p, undefined, err);
      this.queued = 0;
      this.socket?.end();
    });
  }

  private onClose(socket: net.Socket, reason: string, fatal: boolean): void {
    if (socket !== this.socket) return;
    this.socket = undefined;
    const wasReady = this.phase === "ready" || this.phase === "draining";
    this.phase = "idle";
    this.out = [];
    this.closingSocket = false;
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    // Requests written on this connection: their outcome is unknown.
    const lost = this.inflight.drain();
    this.inflightUser = 0;
    let first = true;
    for (const p of lost) {
      if (p.internal) continue;
      let err: TandemError;
      if (first && this.lineError) err = this.lineError; // e.g. FRAME_TOO_LARGE answers the oldest
      else
        err = d1Error(
          "D1_ERROR",
          `Network connection lost. (tandem: ${reason}; the request may or may not have run)`,
          "UNAVAILABLE",
        );
      first = false;
      this.finish(p, undefined, err);
    }
    if (wasReady) {
      this.failures = 0; // a drop: reconnect at once
    } else {
      // This attempt failed. Queued requests wait for the next one, up to connectAttempts
      // attempts each; a refusal by the server itself (other than OVERLOADED) or a TLS
      // certificate failure fails them at once.
      this.failures++;
      const server = this.lineError && this.lineError.code !== "OVERLOADED" ? this.lineError : undefined;
      const err =
        this.lineError ??
        d1Error(
          "D1_ERROR",
          `Network connection lost. (tandem: cannot connect to ${this.options.host}:${this.options.port}: ${reason})`,
          "UNAVAILABLE",
        );
      const keep: Pending[] = [];
      for (const p of this.queue.drain()) {
        if (p.state !== State.Queued) continue;
        if (server || fatal || ++p.attempts >= this.options.connectAttempts) {
          this.queued--;
          this.finish(p, undefined, err);
        } else keep.push(p);
      }
      for (const p of keep) this.queue.push(p);
    }
    this.lineError = undefined;
    if (this.queued > 0) this.scheduleReconnect();
    this.maybeFinishClose();
  }

  private scheduleReconnect(): void {
    if (this.reconnectTimer !== undefined || this.phase !== "idle") return;
    const o = this.options;
    let delay = 0;
    if (this.failures > 0) {
      const max = Math.min(o.reconnectMaxDelayMs, o.reconnectMinDelayMs * 2 ** Math.min(this.failures - 1, 30));
      delay = max / 2 + Math.random() * (max / 2);
    }
    this.reconnectTimer = setTimeout(() => this.open(), delay);
  }

  // ------------------------------------------------------------------ writing

  private pump(): void {
    const max = this.options.maxInFlight;
    while (this.inflightUser < max && this.queue.length > 0) {
      const p = this.queue.shift()!;
      if (p.state !== State.Queued) continue; // timed out while queued
      this.queued--;
      if (p.key !== this.sentKey) {
        // Switch the routing key for the requests that follow (the server runs them in order).
        let body = `"op":"hello","client":${JSON.stringify(this.options.clientName)}`;
        if (this.options.token !== undefined) body += `,"token":${JSON.stringify(this.options.token)}`;
        if (p.key !== undefined) body += `,"routing_key":${JSON.stringify(p.key)}`;
        const at = this.positionOf(p.key);
        if (at !== undefined) body += `,"min_seq":${JSON.stringify(at)}`;
        this.writeInternal(body + "}", () => {});
        this.sentKey = p.key;
      }
      p.id = this.nextId++;
      p.state = State.Sent;
      this.inflight.push(p);
      this.inflightUser++;
      const minSeq = p.minSeq?.();
      this.write(minSeq === undefined ? `{"id":${p.id},${p.body}\n` : `{"id":${p.id},"min_seq":${JSON.stringify(minSeq)},${p.body}\n`);
    }
  }

  private writeInternal(body: string, done: (r: Response) => void): void {
    const p: Pending = {
      body,
      key: undefined,
      id: this.nextId++,
      state: State.Sent,
      attempts: 0,
      timer: undefined,
      minSeq: undefined,
      resolve: done,
      reject: () => {},
      internal: true,
    };
    this.inflight.push(p);
    this.write(`{"id":${p.id},${body}\n`);
  }

  private write(line: string): void {
    this.out.push(line);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (!this.socket || this.out.length === 0) {
      this.out = [];
      return;
    }
    const data = this.out.length === 1 ? this.out[0]! : this.out.join("");
    this.out = [];
    this.socket.write(data);
  }

  // ------------------------------------------------------------------ reading

  private onData(chunk: string): void {
    let start = 0;
    let nl = chunk.indexOf("\n");
    if (nl < 0) {
      this.rest += chunk;
      return;
    }
    if (this.rest) {
      this.onLine(this.rest + chunk.slice(0, nl));
      this.rest = "";
      start = nl + 1;
      nl = chunk.indexOf("\n", start);
    }
    while (nl >= 0) {
      this.onLine(chunk.slice(start, nl));
      start = nl + 1;
      nl = chunk.indexOf("\n", start);
    }
    if (start < chunk.length) this.rest = chunk.slice(start);
    if (this.pending === 0) this.maybeIdle();
  }

  private onLine(text: string): void {
    if (text.length === 0 || text === "\r") return;
    let r: Response;
    try {
      r = parseLine(text) as unknown as Response;
      if (r === null || typeof r !== "object" || typeof r.ok !== "boolean") throw new Error("not a response object");
    } catch (e) {
      this.protocolError(`unreadable response line (${(e as Error).message})`);
      return;
    }
    const p = this.inflight.peek();
    if (r.id === null && !r.ok && r.error) {
      // The server could not read a request's id (or refused the connection: OVERLOADED); it
      // answers in order, so this belongs to the oldest unanswered request, if any.
      const err = d1Error("D1_ERROR", r.error.message, r.error.code, { serverMessage: r.error.message, store: r.error.store });
      if (r.error.code === "FRAME_TOO_LARGE" || r.error.code === "OVERLOADED" || !p) {
        this.lineError = err; // the server closes the connection after these
        return;
      }
    } else if (!p || r.id !== p.id) {
      this.protocolError(`response id ${JSON.stringify(String(r.id))} does not match request id ${p ? p.id : "(none)"}`);
      return;
    }
    this.inflight.shift();
    if (!p.internal && p.state !== State.Done) this.inflightUser--; // a timed-out one no longer counts
    this.finish(p, r, undefined);
    if (this.phase === "ready" && this.queue.length > 0) this.pump();
  }

  private protocolError(what: string): void {
    const socket = this.socket;
    if (!socket) return;
    socket.destroy(new Error(`protocol error: ${what}`));
  }

  // ------------------------------------------------------------------ completion

  private finish(p: Pending, r: Response | undefined, err: Error | undefined): void {
    if (p.state === State.Done) return;
    p.state = State.Done;
    if (p.timer !== undefined) clearTimeout(p.timer);
    if (err) p.reject(err);
    else p.resolve(r!);
    if (this.closing) this.maybeFinishClose();
  }

  private timedOut(p: Pending): void {
    if (p.state === State.Done) return;
    if (p.state === State.Queued) this.queued--;
    p.timer = undefined;
    const sent = p.state === State.Sent;
    this.finish(
      p,
      undefined,
      d1Error(
        "D1_ERROR",
        sent
          ? `tandem did not answer within ${this.options.timeoutMs} ms; the statement may or may not have run`
          : `the request waited ${this.options.timeoutMs} ms without being sent (tandem unreachable at ${this.options.host}:${this.options.port}?)`,
        "TIMEOUT",
      ),
    );
    // A timed-out request stays in the in-flight list until its response arrives (or the
    // connection closes); it no longer counts against maxInFlight.
    if (sent) {
      this.inflightUser--;
      if (this.phase === "ready") this.pump();
    }
    if (this.pending === 0) this.maybeIdle();
  }

  // ------------------------------------------------------------------ idle and close

  /** Something to do: keep the process alive and the connection open. */
  private active(): void {
    if (this.idleTimer !== undefined) {
      clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
    }
    this.socket?.ref();
  }

  /** Nothing to do: let the process exit, and close the connection after idleTimeoutMs. */
  private maybeIdle(): void {
    if (this.pending > 0 || !this.socket || this.phase !== "ready") return;
    this.socket.unref();
    if (this.options.idleTimeoutMs > 0 && this.idleTimer === undefined) {
      const socket = this.socket;
      this.idleTimer = setTimeout(() => {
        this.idleTimer = undefined;
        if (this.pending === 0 && this.socket === socket && this.phase === "ready") {
          this.phase = "draining";
          this.closingSocket = true;
          socket.end();
        }
      }, this.options.idleTimeoutMs);
      this.idleTimer.unref?.();
    }
  }

  private maybeFinishClose(): void {
    if (!this.closing || this.pending > 0) return;
    if (this.reconnectTimer !== undefined) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = undefined;
    }
    const socket = this.socket;
    if (socket) {
      if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
      // The socket may be unref'd (idle, or being closed after idleTimeoutMs): ref it again, or
      // Node would exit before its 'close' event and close() would never settle (a script
      // ending in `await db.close()` would exit with code 13 and skip what follows).
      socket.ref();
      if (!this.closingSocket) {
        this.closingSocket = true;
        if (this.phase === "ready") this.phase = "draining";
        socket.end();
      }
      // A server that never closes its side after our FIN must not hold close() forever.
      if (this.closeTimer === undefined) {
        this.closeTimer = setTimeout(() => {
          this.closeTimer = undefined;
          if (this.socket === socket) socket.destroy();
        }, this.options.connectTimeoutMs);
      }
      return; // onClose() calls back here once it is gone
    }
    if (this.closeTimer !== undefined) {
      clearTimeout(this.closeTimer);
      this.closeTimer = undefined;
    }
    const waiters = this.closeWaiters;
    this.closeWaiters = [];
    for (const w of waiters) w();
  }
}
