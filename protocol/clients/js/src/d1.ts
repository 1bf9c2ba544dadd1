// The D1Database API (prepare/bind/first/all/run/raw, batch, exec) on top of a tandem connection.

import * as fs from "node:fs";

import { Connection, type ConnectionOptions, type Response } from "./connection.js";
import { d1Detail, d1Error, fromWire, TandemError, type WireError } from "./errors.js";
import { fitsInt64, numberToJson, type Json } from "./json.js";
import { isToken, newerToken, Positions, tokenOf } from "./position.js";
import { splitSql } from "./sql.js";
import type {
  D1DatabaseLike,
  D1DatabaseSessionLike,
  D1ExecResult,
  D1Meta,
  D1PreparedStatementLike,
  D1Result,
  D1SessionBookmark,
  D1SessionConstraint,
} from "./types.js";
import { parseUrl, redact } from "./url.js";

export const VERSION = "0.1.0";

/**
 * How INTEGER results outside ±(2^53 − 1) come back (cells, and meta's last_row_id/changes):
 * - `"bigint"` (default): exact, as a `bigint`.
 * - `"string"`: exact, as a decimal string.
 * - `"number"`: rounded to the nearest double, as D1 returns them (loses precision).
 * - `"error"`: the call fails with a RangeError-like TandemError (code BAD_REQUEST).
 */
export type LargeIntegers = "bigint" | "string" | "number" | "error";

/**
 * How BLOB results come back: `"array"` (default, as D1: an array of byte values 0..255),
 * `"uint8array"` or `"arraybuffer"`.
 */
export type Blobs = "array" | "uint8array" | "arraybuffer";

export interface ConnectOptions {
  /** Token sent in hello; overrides the URL's `token`. */
  token?: string;
  /** Routing key sent in hello (sticky rollout per end user); overrides the URL's `routing_key`. */
  routingKey?: string;
  /** Names this client in the server's logs. Default `tandem-js/<version>`. */
  clientName?: string;
  /** Per-request timeout, from the call until the answer; overrides the URL's `timeout_ms`. Default 30000; 0 disables. */
  timeoutMs?: number;
  /** Timeout of one TCP/TLS connection attempt. Default 10000. */
  connectTimeoutMs?: number;
  /** Most requests written and not yet answered (pipelining depth). Default 256. */
  maxInFlight?: number;
  /** Most further requests waiting to be written; beyond this calls fail with OVERLOADED. Default 10000. */
  maxQueue?: number;
  /** Failed connection attempts a request waits through before it fails with UNAVAILABLE. Default 5. */
  connectAttempts?: number;
  /** Reconnect backoff: first delay after a failed attempt, doubling up to the maximum (with jitter). Defaults 100 and 5000. */
  reconnectMinDelayMs?: number;
  reconnectMaxDelayMs?: number;
  /** Close the connection after this long with nothing to do; reopened on the next call. Default 240000 (tandem's own is 300000); 0 never. */
  idleTimeoutMs?: number;
  /** TLS: `true` to use it (as `tls=1`), or its settings. Default: the URL's `tls`. */
  tls?:
    | boolean
    | {
        /** Extra CA certificate(s) to trust (PEM), besides the system's. */
        ca?: string | Buffer | (string | Buffer)[];
        /** Verify the certificate and host name. Default true (the URL's `tls_verify`). */
        rejectUnauthorized?: boolean;
        /** Server name for SNI and the host-name check. Default: the URL's host. */
        servername?: string;
      };
  largeIntegers?: LargeIntegers;
  blobs?: Blobs;
}

interface Shared {
  conn: Connection;
  largeIntegers: LargeIntegers;
  blobs: Blobs;
  /** The newest position token seen per routing key (PROTOCOL.md §15). */
  positions: Positions;
}

/** Where a database object gets its min_seq and keeps the tokens it sees: a session's own. */
interface Tracker {
  minSeq(): string | undefined;
  seen(token: string | undefined): void;
}

/** Opens a client. It connects on the first call; `close()` it when done. */
export function connect(url: string | undefined, options: ConnectOptions = {}): TandemD1Database {
  const u = parseUrl(url as string);
  const tlsOpt = options.tls;
  const tlsOn = tlsOpt === undefined ? u.tls : tlsOpt !== false;
  const tlsSettings = typeof tlsOpt === "object" ? tlsOpt : {};
  const ca: string[] = [];
  if (u.caFile) {
    try {
      ca.push(fs.readFileSync(u.caFile, "utf8"));
    } catch (e) {
      throw new TypeError(`tandem connect(): cannot read ca_file ${JSON.stringify(u.caFile)}: ${(e as Error).message}`);
    }
  }
  if (tlsSettings.ca !== undefined) {
    for (const c of Array.isArray(tlsSettings.ca) ? tlsSettings.ca : [tlsSettings.ca]) ca.push(c.toString());
  }
  const positive = (name: string, v: number | undefined, dflt: number, min = 1): number => {
    if (v === undefined) return dflt;
    if (!Number.isInteger(v) || v < min) throw new TypeError(`tandem connect(): ${name} must be an integer >= ${min}`);
    return v;
  };
  const copts: ConnectionOptions = {
    host: u.host,
    port: u.port,
    tls: tlsOn,
    tlsVerify: tlsSettings.rejectUnauthorized ?? u.tlsVerify,
    ca: ca.length ? ca : undefined,
    servername: tlsSettings.servername,
    token: options.token ?? u.token,
    routingKey: options.routingKey ?? u.routingKey,
    clientName: options.clientName ?? `tandem-js/${VERSION}`,
    timeoutMs: positive("timeoutMs", options.timeoutMs, u.timeoutMs ?? 30000, 0),
    connectTimeoutMs: positive("connectTimeoutMs", options.connectTimeoutMs, 10000),
    maxInFlight: positive("maxInFlight", options.maxInFlight, 256),
    maxQueue: positive("maxQueue", options.maxQueue, 10000, 0),
    connectAttempts: positive("connectAttempts", options.connectAttempts, 5),
    reconnectMinDelayMs: positive("reconnectMinDelayMs", options.reconnectMinDelayMs, 100, 0),
    reconnectMaxDelayMs: positive("reconnectMaxDelayMs", options.reconnectMaxDelayMs, 5000, 0),
    idleTimeoutMs: positive("idleTimeoutMs", options.idleTimeoutMs, 240000, 0),
  };
  const largeIntegers = options.largeIntegers ?? "bigint";
  if (!["bigint", "string", "number", "error"].includes(largeIntegers)) {
    throw new TypeError(`tandem connect(): largeIntegers must be "bigint", "string", "number" or "error"`);
  }
  const blobs = options.blobs ?? "array";
  if (!["array", "uint8array", "arraybuffer"].includes(blobs)) {
    throw new TypeError(`tandem connect(): blobs must be "array", "uint8array" or "arraybuffer"`);
  }
  const shared: Shared = { conn: new Connection(copts), largeIntegers, blobs, positions: new Positions() };
  shared.conn.positionOf = (key) => shared.positions.get(key);
  return new TandemD1Database(shared, copts.routingKey, redact(url as string));
}

// ------------------------------------------------------------------------------------ values

/** A bound value as protocol JSON, converted as D1's documented type table says (README, Values). */
function encodeValue(v: unknown): string {
  switch (typeof v) {
    case "string":
      return JSON.stringify(v);
    case "number":
      return numberToJson(v);
    case "boolean":
      return v ? "1" : "0"; // INTEGER 1 / 0, as D1's type table says
    case "bigint":
      if (!fitsInt64(v)) {
        throw d1Error("D1_TYPE_ERROR", `Type 'bigint' not supported for value '${v}' (outside the 64-bit signed range)`, "BAD_REQUEST");
      }
      return v.toString();
    case "object": {
      if (v === null) return "null";
      if (Array.isArray(v) && v.every((b) => typeof b === "number" && b >= 0 && b < 256)) {
        return blobJson(Uint8Array.from(v as number[]));
      }
      if (v instanceof ArrayBuffer) return blobJson(new Uint8Array(v));
      if (ArrayBuffer.isView(v)) return blobJson(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
      break;
    }
  }
  let shown: string;
  try {
    shown = String(v);
  } catch {
    shown = Object.prototype.toString.call(v);
  }
  throw d1Error("D1_TYPE_ERROR", `Type '${typeof v}' not supported for value '${shown}'`, "BAD_REQUEST");
}

function blobJson(bytes: Uint8Array): string {
  return `{"base64":"${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64")}"}`;
}

type Cell = null | number | bigint | string | number[] | Uint8Array | ArrayBuffer;

function largeInteger(v: bigint, mode: LargeIntegers): number | bigint | string {
  switch (mode) {
    case "bigint":
      return v;
    case "string":
      return v.toString();
    case "number":
      return Number(v);
    case "error":
      throw d1Error(
        "D1_ERROR",
        `the result holds the integer ${v}, beyond JavaScript's safe range (largeIntegers: "error")`,
        "BAD_REQUEST",
      );
  }
}

function decodeCell(v: Json, s: Shared): Cell {
  switch (typeof v) {
    case "number":
    case "string":
      return v;
    case "bigint":
      return largeInteger(v, s.largeIntegers) as Cell;
    case "object": {
      if (v === null) return null;
      const b64 = (v as { base64?: unknown }).base64;
      if (typeof b64 === "string") {
        const buf = Buffer.from(b64, "base64");
        if (s.blobs === "array") return Array.from(buf);
        const u8 = new Uint8Array(buf.length);
        u8.set(buf);
        return s.blobs === "uint8array" ? u8 : u8.buffer;
      }
      break;
    }
  }
  throw d1Error("D1_ERROR", `tandem sent a value this client does not understand: ${JSON.stringify(String(v))}`, "INTERNAL");
}

// ------------------------------------------------------------------------------------ results

type WireMeta = {
  changes: number | bigint;
  last_row_id: number | bigint;
  rows_read: number;
  rows_written: number;
  duration_ms: number;
  served_by: string;
};

interface WireResult {
  columns: string[];
  rows: Json[][];
  meta: WireMeta;
}

// D1's changed_db says whether the database file changed size or content. tandem does not
// report it, so: rows changed, or the statement creates or drops a table or an index (which
// D1 reports as a change; CREATE VIEW/TRIGGER and ALTER TABLE usually are not).
const CHANGES_FILE =
  /^(?:\s|--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/)*(?:create\s+(?:(?:unique|virtual)\s+)?(?:table|index)|drop\s+(?:table|index))\b/i;

function toMeta(sql: string, m: WireMeta, s: Shared): D1Meta & Record<string, unknown> {
  const big = (v: number | bigint) => (typeof v === "bigint" ? largeInteger(v, s.largeIntegers) : v) as number;
  const changes = big(m.changes);
  const duration = m.duration_ms;
  return {
    served_by: `tandem-${m.served_by}`,
    duration,
    changes,
    last_row_id: big(m.last_row_id),
    changed_db: changes > 0 || CHANGES_FILE.test(sql),
    size_after: 0, // tandem does not report the database size
    rows_read: m.rows_read,
    rows_written: m.rows_written,
    served_by_primary: true,
    timings: { sql_duration_ms: duration },
  };
}

/** The results of the statements of one multi-statement prepare(), as D1 reports them: the
 *  last statement's rows, with changes, rows and durations added up. */
function combine(parts: WireResult[]): WireResult {
  const last = parts[parts.length - 1]!;
  if (parts.length === 1) return last;
  let changes: number | bigint = 0;
  let rowsRead = 0;
  let rowsWritten = 0;
  let duration = 0;
  for (const p of parts) {
    changes = typeof changes === "bigint" || typeof p.meta.changes === "bigint"
      ? BigInt(changes) + BigInt(p.meta.changes)
      : changes + p.meta.changes;
    rowsRead += p.meta.rows_read;
    rowsWritten += p.meta.rows_written;
    duration += p.meta.duration_ms;
  }
  return {
    columns: last.columns,
    rows: last.rows,
    meta: { ...last.meta, changes, rows_read: rowsRead, rows_written: rowsWritten, duration_ms: duration },
  };
}

function toObjects(columns: string[], rows: Json[][], s: Shared): Record<string, unknown>[] {
  const n = columns.length;
  const proto = columns.includes("__proto__");
  const out = new Array<Record<string, unknown>>(rows.length);
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r]!;
    const o: Record<string, unknown> = {};
    for (let c = 0; c < n; c++) {
      const v = row[c]!;
      const cell = typeof v === "object" || typeof v === "bigint" ? decodeCell(v, s) : v;
      // A later column with the same name overwrites an earlier one, as in D1.
      if (proto && columns[c] === "__proto__") {
        Object.defineProperty(o, "__proto__", { value: cell, enumerable: true, writable: true, configurable: true });
      } else o[columns[c]!] = cell;
    }
    out[r] = o;
  }
  return out;
}

function toArrays(rows: Json[][], s: Shared): unknown[][] {
  return rows.map((row) => row.map((v) => (typeof v === "object" || typeof v === "bigint" ? decodeCell(v, s) : v)));
}

function toD1Result<T>(sql: string, r: WireResult, s: Shared): D1Result<T> {
  return {
    success: true,
    meta: toMeta(sql, r.meta, s),
    results: toObjects(r.columns, r.rows, s) as T[],
  };
}

// ------------------------------------------------------------------------------------ API

/** Raised by dump(). */
function notSupported(what: string, why: string): TandemError {
  return d1Error("D1_ERROR", `${what} is not supported by tandem: ${why}`, "UNSUPPORTED");
}

const ONLY_LAST_HAS_PARAMS = "When executing multiple SQL statements in a single call, only the last statement can have parameters.";

function wireError(r: Response): WireError {
  return (r.error ?? { code: "INTERNAL", message: "error without details" }) as WireError;
}

export class TandemPreparedStatement implements D1PreparedStatementLike {
  /** @internal */
  constructor(
    private readonly db: TandemD1Database,
    /** The SQL text, as prepare() got it. */
    readonly statement: string,
    /** @internal the bound values, as protocol JSON */
    readonly encoded: readonly string[] = [],
    /** @internal the statements of a multi-statement text (undefined: not split yet; null: one) */
    private split?: string[] | null,
  ) {}

  /** Binds values to `?` / `?NNN` in order, converting them as D1 does (see README). */
  bind(...values: unknown[]): TandemPreparedStatement {
    return new TandemPreparedStatement(this.db, this.statement, values.map(encodeValue), this.split);
  }

  /**
   * @internal The statement as protocol `{sql, params}` objects (without braces): one, or, for a
   * text of several statements (which D1 runs together, giving the last one's rows), one each.
   */
  wireParts(): string[] {
    if (this.split === undefined) {
      let split: string[] | null = null;
      if (this.statement.includes(";")) {
        const sts = splitSql(this.statement);
        if (sts.length > 1) {
          if (sts.slice(0, -1).some((st) => st.hasParams)) throw d1Error("D1_ERROR", ONLY_LAST_HAS_PARAMS, "BAD_REQUEST");
          split = sts.map((st) => st.sql);
        }
      }
      this.split = split;
    }
    const p = this.encoded.length ? `,"params":[${this.encoded.join(",")}]` : "";
    if (this.split === null) return [`"sql":${JSON.stringify(this.statement)}${p}`];
    const n = this.split.length;
    return this.split.map((sql, i) => `"sql":${JSON.stringify(sql)}${i === n - 1 ? p : ""}`);
  }

  private async exec(): Promise<WireResult> {
    const parts = this.wireParts();
    if (parts.length === 1) return (await this.db._request(`"op":"query",${parts[0]}}`)) as unknown as WireResult;
    const r = (await this.db._request(`"op":"batch","statements":[{${parts.join("},{")}}]}`)) as unknown as {
      results: WireResult[];
    };
    return combine(r.results);
  }

  first<T = unknown>(colName: string): Promise<T | null>;
  first<T = Record<string, unknown>>(): Promise<T | null>;
  async first<T>(colName?: string): Promise<T | null> {
    const r = await this.exec();
    if (r.rows.length === 0) return null;
    const row = toObjects(r.columns, r.rows.slice(0, 1), this.db._shared)[0]!;
    if (colName === undefined) return row as T;
    if (!Object.prototype.hasOwnProperty.call(row, colName)) {
      throw new TandemError(`D1_COLUMN_NOTFOUND: Column not found (${colName})`, "BAD_REQUEST", {
        cause: new Error("Column not found"),
      });
    }
    return row[colName] as T;
  }

  async run<T = Record<string, unknown>>(): Promise<D1Result<T>> {
    return toD1Result<T>(this.statement, await this.exec(), this.db._shared);
  }

  async all<T = Record<string, unknown>>(): Promise<D1Result<T>> {
    return toD1Result<T>(this.statement, await this.exec(), this.db._shared);
  }

  raw<T = unknown[]>(options: { columnNames: true }): Promise<[string[], ...T[]]>;
  raw<T = unknown[]>(options?: { columnNames?: false }): Promise<T[]>;
  async raw<T = unknown[]>(options?: { columnNames?: boolean }): Promise<T[] | [string[], ...T[]]> {
    const r = await this.exec();
    const rows = toArrays(r.rows, this.db._shared) as T[];
    return options?.columnNames ? [r.columns.slice(), ...rows] : rows;
  }
}

export class TandemD1Database implements D1DatabaseLike {
  /** @internal */
  constructor(
    /** @internal */ readonly _shared: Shared,
    /** The routing key this object's requests run under. */
    readonly routingKey: string | undefined,
    private readonly url: string,
    /** @internal a session's own position; undefined: the client's per routing key */
    private readonly tracker?: Tracker,
  ) {}

  /**
   * @internal Sends a request with this object's min_seq and keeps the token of its answer:
   * every request carries the newest position this client saw for its routing key (or, in a
   * session, the session's), so it reads no older data, on this connection or the next.
   */
  async _send(body: string): Promise<Response> {
    const t = this.tracker;
    const key = this.routingKey;
    const positions = this._shared.positions;
    const r: Response = await this._shared.conn.request(body, key, t ? () => t.minSeq() : () => positions.get(key));
    if (r.ok) {
      const token = tokenOf(r.result);
      if (token !== undefined) positions.note(key, token);
      t?.seen(token);
    }
    return r;
  }

  /** @internal */
  async _request(body: string): Promise<Json> {
    const r = await this._send(body);
    if (!r.ok) throw fromWire(wireError(r));
    return r.result as Json;
  }

  /** @internal The same client with a session's tracker. */
  _withTracker(tracker: Tracker): TandemD1Database {
    return new TandemD1Database(this._shared, this.routingKey, this.url, tracker);
  }

  prepare(query: string): TandemPreparedStatement {
    return new TandemPreparedStatement(this, query);
  }

  /** Runs the statements in order as one atomic batch: all commit, or none does. */
  async batch<T = unknown>(statements: D1PreparedStatementLike[]): Promise<D1Result<T>[]> {
    if (!Array.isArray(statements)) throw new TypeError("batch() takes an array of prepared statements");
    if (statements.length === 0) throw d1Error("D1_ERROR", "No SQL statements detected.", "BAD_REQUEST");
    const all: string[] = [];
    const owner: number[] = []; // wire statement -> position in `statements`
    statements.forEach((st, i) => {
      if (!(st instanceof TandemPreparedStatement)) {
        throw new TypeError(`batch(): statement ${i} was not made by a tandem client's prepare()`);
      }
      for (const part of st.wireParts()) {
        all.push(part);
        owner.push(i);
      }
    });
    const r = await this._send(`"op":"batch","statements":[{${all.join("},{")}}]}`);
    if (!r.ok) {
      const e = wireError(r);
      throw fromWire(e.index === undefined ? e : { ...e, index: owner[e.index] ?? e.index });
    }
    const results = (r.result as unknown as { results: WireResult[] }).results;
    const out: D1Result<T>[] = [];
    let k = 0;
    statements.forEach((st, i) => {
      const parts: WireResult[] = [];
      while (k < owner.length && owner[k] === i) parts.push(results[k++]!);
      out.push(toD1Result<T>((st as TandemPreparedStatement).statement, combine(parts), this._shared));
    });
    return out;
  }

  /**
   * Runs SQL text without parameters, as D1 does: each line of the text is one query (which
   * may hold several statements separated by `;`), and they all run atomically, as one batch.
   * Blank and comment-only lines are skipped. Returns the number of queries (lines) and their
   * total duration.
   */
  async exec(query: string): Promise<D1ExecResult> {
    const lines = String(query).trim().split("\n");
    const all: { sql: string; line: number }[] = [];
    let count = 0;
    lines.forEach((text, i) => {
      const sts = splitSql(text);
      if (sts.length === 0) return;
      count++;
      for (const st of sts) all.push({ sql: st.sql, line: i });
    });
    if (all.length === 0) {
      throw d1Error("D1_EXEC_ERROR", `Error in line 1: ${lines[0]}: No SQL statements detected.`, "BAD_REQUEST");
    }
    const body = all.map((st) => `{"sql":${JSON.stringify(st.sql)}}`).join(",");
    const r = await this._send(`"op":"batch","statements":[${body}]}`);
    if (!r.ok) {
      const e = wireError(r);
      const line = all[e.index ?? 0]?.line ?? 0;
      throw d1Error("D1_EXEC_ERROR", `Error in line ${line + 1}: ${lines[line]}: ${d1Detail(e)}`, e.code, {
        store: e.store,
        index: e.index,
        serverMessage: e.message,
      });
    }
    const results = (r.result as unknown as { results: WireResult[] }).results;
    let duration = 0;
    for (const res of results) duration += res.meta.duration_ms;
    return { count, duration };
  }

  /**
   * D1's Sessions API: a session whose queries each see at least what the ones before them saw
   * (sequential consistency), starting from `constraintOrBookmark`:
   * - `"first-unconstrained"` (the default, also for `undefined`/`null`): the first query may be
   *   served by either store, as the rollout routes it;
   * - `"first-primary"`: the first query is served by the leader;
   * - a bookmark (a tandem position token, from `getBookmark()` of an earlier session, e.g. kept
   *   in a cookie): the first query sees at least what that session saw. A bookmark that is not
   *   a tandem token (one D1 itself gave before the move) is taken as `"first-primary"`.
   * `getBookmark()` is the newest token of the session's answers (null before the first one, or
   * the bookmark it was given; always null in tandem's single modes, which have no positions).
   */
  withSession(constraintOrBookmark?: D1SessionBookmark | D1SessionConstraint | null): TandemD1DatabaseSession {
    return new TandemD1DatabaseSession(this, constraintOrBookmark);
  }

  /** D1's deprecated dump() (alpha databases only). Not supported. */
  async dump(): Promise<ArrayBuffer> {
    throw notSupported("dump()", "it only ever applied to D1's alpha databases; back up the SQLite file or use `wrangler d1 export` instead");
  }

  // ---------------------------------------------------------------- beyond D1

  /**
   * The same client (one connection), with its requests running under another routing key, so
   * a percentage rollout is sticky per end user. The key is sent in a hello just before the
   * first request that needs it.
   */
  withRoutingKey(key: string | undefined): TandemD1Database {
    return new TandemD1Database(this._shared, key, this.url);
  }

  /** Round trip to the server without touching a store (for health checks). */
  async ping(): Promise<void> {
    const r = await this._shared.conn.request(`"op":"ping"}`, this.routingKey); // ping takes no min_seq
    if (!r.ok) throw fromWire(wireError(r));
  }

  /** Requests made and not yet answered. */
  get pending(): number {
    return this._shared.conn.pending;
  }

  /** Stops taking calls, waits for the ones made to finish, then closes the connection. */
  close(): Promise<void> {
    return this._shared.conn.close();
  }

  /** Closes at once; unanswered calls fail with UNAVAILABLE. */
  destroy(): void {
    this._shared.conn.destroy();
  }

  toString(): string {
    return `TandemD1Database(${this.url})`;
  }
}

/** A D1 session over tandem (see `TandemD1Database.withSession()`). */
export class TandemD1DatabaseSession implements D1DatabaseSessionLike {
  private bookmark: string | null = null;
  private leaderFirst = false;
  private readonly db: TandemD1Database;

  /** @internal */
  constructor(parent: TandemD1Database, constraintOrBookmark: D1SessionBookmark | D1SessionConstraint | null | undefined) {
    const c = constraintOrBookmark;
    if (c === "first-primary") this.leaderFirst = true;
    else if (c === undefined || c === null || c === "first-unconstrained") this.bookmark = null;
    else if (typeof c !== "string") throw new TypeError('withSession() takes "first-primary", "first-unconstrained" or a bookmark string');
    else if (isToken(c)) this.bookmark = c;
    else this.leaderFirst = true; // not a position tandem can place: start from the leader
    this.db = parent._withTracker({
      minSeq: () => (this.leaderFirst ? "leader" : (this.bookmark ?? undefined)),
      seen: (token) => {
        this.leaderFirst = false;
        if (token !== undefined) this.bookmark = newerToken(this.bookmark, token);
      },
    });
  }

  prepare(query: string): TandemPreparedStatement {
    return this.db.prepare(query);
  }

  /** Runs the statements as one atomic batch, as `TandemD1Database.batch()`. */
  batch<T = unknown>(statements: D1PreparedStatementLike[]): Promise<D1Result<T>[]> {
    return this.db.batch<T>(statements);
  }

  /** The newest position the session's answers carried (its bookmark), or null before any. */
  getBookmark(): D1SessionBookmark | null {
    return this.bookmark;
  }
}
