// tandem's TypeScript client: a drop-in D1Database over tandem's protocol v1.
//
//   import { connect } from "@tandem/d1";
//   const db = connect(process.env.TANDEM_URL);            // tandem://host:6440/?token=…
//   const user = await db.prepare("SELECT * FROM users WHERE id = ?").bind(42).first();

export { connect, TandemD1Database, TandemD1DatabaseSession, TandemPreparedStatement, VERSION } from "./d1.js";
export type { Blobs, ConnectOptions, LargeIntegers } from "./d1.js";
export { TandemError } from "./errors.js";
export type { TandemErrorCode } from "./errors.js";
export { parseUrl } from "./url.js";
export type { UrlOptions } from "./url.js";
export { parseLine } from "./json.js";
export type {
  D1DatabaseLike,
  D1DatabaseSessionLike,
  D1ExecResult,
  D1Meta,
  D1PreparedStatementLike,
  D1Response,
  D1Result,
  D1SessionBookmark,
  D1SessionConstraint,
} from "./types.js";
