// Compile-time proof that the client is a D1Database as @cloudflare/workers-types declares it:
// `npm run build` fails if any of these assignments stops type-checking. Nothing here runs.

import type {
  D1Database,
  D1ExecResult,
  D1PreparedStatement,
  D1Result,
} from "@cloudflare/workers-types/index.js";

import { connect, type TandemD1Database } from "../src/index.js";

export function typeCheck(): void {
  const tandem: TandemD1Database = connect("tandem://127.0.0.1:6440");
  const db: D1Database = tandem; // the whole interface
  const st: D1PreparedStatement = tandem.prepare("SELECT 1").bind(1, "x", null, true, new Uint8Array(1));
  const one: Promise<number | null> = st.first<number>("x");
  const row: Promise<{ a: number } | null> = st.first<{ a: number }>();
  const all: Promise<D1Result<{ a: number }>> = st.all<{ a: number }>();
  const run: Promise<D1Result> = st.run();
  const raw: Promise<unknown[][]> = st.raw();
  const rawNames: Promise<[string[], ...unknown[][]]> = st.raw({ columnNames: true });
  const batch: Promise<D1Result<unknown>[]> = db.batch([st, db.prepare("SELECT 2")]);
  const exec: Promise<D1ExecResult> = db.exec("SELECT 1");
  void [one, row, all, run, raw, rawNames, batch, exec];
}

// The migration guide's app, with its one line changed (README "Example"): an adapter written
// against D1Database accepts the tandem client as it is.
interface DatabaseAdapter {
  query<T>(sql: string, ...params: unknown[]): Promise<T[]>;
}
function createD1Adapter(db: D1Database): DatabaseAdapter {
  return {
    async query<T>(sql: string, ...params: unknown[]) {
      return (await db.prepare(sql).bind(...params).all<T>()).results;
    },
  };
}
export const makeAdapter = (): DatabaseAdapter => createD1Adapter(connect(process.env.TANDEM_URL));
