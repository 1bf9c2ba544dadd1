// Errors shaped like the D1 binding's: an Error whose message starts with D1's prefix
// (`D1_ERROR: `, `D1_EXEC_ERROR: `, `D1_TYPE_ERROR: `, `D1_COLUMN_NOTFOUND: `), whose `cause` is an
// Error with the message without the prefix, plus tandem's stable error `code`.

/** tandem's error codes (protocol/PROTOCOL.md §5). Unknown future codes are kept as they come. */
export type TandemErrorCode =
  | "BAD_REQUEST"
  | "UNAUTHORIZED"
  | "FRAME_TOO_LARGE"
  | "SQL_ERROR"
  | "CONSTRAINT"
  | "UNSUPPORTED"
  | "UNAVAILABLE"
  | "TIMEOUT"
  | "OVERLOADED"
  | "INTERNAL"
  | (string & {});

/** What the server sent in `error` (§3). */
export interface WireError {
  code: string;
  message: string;
  store?: string;
  index?: number;
}

export class TandemError extends Error {
  /** tandem's code: from the server, or UNAVAILABLE / TIMEOUT / OVERLOADED / BAD_REQUEST when the client raised it. */
  readonly code: TandemErrorCode;
  /** `"sqlite"` or `"d1"` when a store produced the error. */
  declare readonly store?: string;
  /** For a batch: the position of the failing statement, from 0. */
  declare readonly index?: number;
  /** The server's own message, unchanged (absent for client-side errors). */
  declare readonly serverMessage?: string;

  constructor(
    message: string,
    code: TandemErrorCode,
    extra: { cause?: unknown; store?: string; index?: number; serverMessage?: string } = {},
  ) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = "Error"; // as the D1 binding's errors: String(e) reads "Error: D1_ERROR: …"
    this.code = code;
    const self = this as { store?: string; index?: number; serverMessage?: string };
    if (extra.store !== undefined) self.store = extra.store;
    if (extra.index !== undefined) self.index = extra.index;
    if (extra.serverMessage !== undefined) self.serverMessage = extra.serverMessage;
  }
}

/** A D1-prefixed error: message `${prefix}: ${detail}`, cause `Error(detail)`. */
export function d1Error(
  prefix: string,
  detail: string,
  code: TandemErrorCode,
  extra: { store?: string; index?: number; serverMessage?: string } = {},
): TandemError {
  return new TandemError(`${prefix}: ${detail}`, code, { ...extra, cause: new Error(detail) });
}

/**
 * The server's message as D1 would word it: without tandem's batch decorations
 * ("statement N: …", "… (the batch was rolled back)"), and with D1's `: SQLITE_<CODE>` suffix
 * where tandem's code says which one it is.
 */
export function d1Detail(e: WireError): string {
  let msg = e.message;
  if (e.index !== undefined) {
    msg = msg.replace(/^statement \d+: /, "").replace(/ \(the batch was rolled back\)$/, "");
  }
  const suffix = sqliteCode(e.code, msg);
  return suffix ? `${msg}: ${suffix}` : msg;
}

function sqliteCode(code: string, msg: string): string | undefined {
  if (code === "CONSTRAINT") return /^datatype mismatch/.test(msg) ? "SQLITE_MISMATCH" : "SQLITE_CONSTRAINT";
  if (code === "SQL_ERROR") {
    if (/too big|too long/.test(msg)) return "SQLITE_TOOBIG";
    if (/out of range/.test(msg)) return "SQLITE_RANGE";
    return "SQLITE_ERROR";
  }
  return undefined;
}

/** The error for a failed query or batch response, as the D1 binding words it. */
export function fromWire(e: WireError): TandemError {
  return d1Error("D1_ERROR", d1Detail(e), e.code, {
    store: e.store,
    index: e.index,
    serverMessage: e.message,
  });
}
