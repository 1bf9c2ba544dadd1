// The D1 types, as @cloudflare/workers-types declares them (D1Meta, D1Result, D1ExecResult, …),
// repeated here so the package needs no dependency. test/types-check.ts proves that the client
// is assignable to workers-types' own `D1Database`.

export interface D1Meta {
  duration: number;
  size_after: number;
  rows_read: number;
  rows_written: number;
  last_row_id: number;
  changed_db: boolean;
  changes: number;
  served_by_region?: string;
  served_by_colo?: string;
  served_by_primary?: boolean;
  timings?: { sql_duration_ms: number };
  total_attempts?: number;
}

export interface D1Response {
  success: true;
  meta: D1Meta & Record<string, unknown>;
  error?: never;
}

export type D1Result<T = unknown> = D1Response & { results: T[] };

export interface D1ExecResult {
  count: number;
  duration: number;
}

export type D1SessionConstraint = "first-primary" | "first-unconstrained";
export type D1SessionBookmark = string;

export interface D1PreparedStatementLike {
  bind(...values: unknown[]): D1PreparedStatementLike;
  first<T = unknown>(colName: string): Promise<T | null>;
  first<T = Record<string, unknown>>(): Promise<T | null>;
  run<T = Record<string, unknown>>(): Promise<D1Result<T>>;
  all<T = Record<string, unknown>>(): Promise<D1Result<T>>;
  raw<T = unknown[]>(options: { columnNames: true }): Promise<[string[], ...T[]]>;
  raw<T = unknown[]>(options?: { columnNames?: false }): Promise<T[]>;
}

export interface D1DatabaseSessionLike {
  prepare(query: string): D1PreparedStatementLike;
  batch<T = unknown>(statements: D1PreparedStatementLike[]): Promise<D1Result<T>[]>;
  getBookmark(): D1SessionBookmark | null;
}

export interface D1DatabaseLike {
  prepare(query: string): D1PreparedStatementLike;
  batch<T = unknown>(statements: D1PreparedStatementLike[]): Promise<D1Result<T>[]>;
  exec(query: string): Promise<D1ExecResult>;
  withSession(constraintOrBookmark?: D1SessionBookmark | D1SessionConstraint): D1DatabaseSessionLike;
  dump(): Promise<ArrayBuffer>;
}
