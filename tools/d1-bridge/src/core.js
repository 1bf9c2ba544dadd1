// tandem d1-bridge, the core: everything the bridge Worker (bridge.js) does, as functions, so
// that tools/d1-local serves the very same code in front of its local databases. See
// ../README.md for the protocol.
//
//   POST /v1/query
//   Authorization: Bearer <TANDEM_BRIDGE_SECRET or TANDEM_BRIDGE_SECRET_NEXT>
//   x-tandem-d1-bookmark: <bookmark> | first-primary | first-unconstrained   (optional)
//   body: {"sql": "...", "params": [...]}  or  {"batch": [{"sql", "params"}, ...]}
//
// The answer is D1's REST /raw envelope: one {success, meta, results: {columns, rows}}
// per statement, run in one transaction; with a bookmark header, the session's newest
// bookmark comes back in the same header.

export const BOOKMARK_HEADER = "x-tandem-d1-bookmark";
// The header the binding itself uses to carry a session's bookmark (workerd d1-api).
const D1_SESSION_HEADER = "x-cf-d1-session-commit-token";
const DEFAULT_MAX_STATEMENTS = 1000; // Workers Paid: 1,000 D1 queries per invocation (Free: 50)
const DEFAULT_MAX_BODY_BYTES = 50 * 1024 * 1024;

// ---------------------------------------------------------------- envelopes

function json(body, status = 200, headers = {}) {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=UTF-8", ...headers },
  });
}

export function ok(result, headers = {}) {
  return json({ success: true, errors: [], messages: [], result }, 200, headers);
}

export function fail(status, code, message) {
  return json({ success: false, errors: [{ code, message }], messages: [], result: null }, status);
}

export const malformed = (detail) => fail(400, 7400, `The request is malformed: ${detail}`);

// ---------------------------------------------------------------- authentication

const encoder = new TextEncoder();

// Constant time in the secret's content: both sides are hashed to 32 bytes first, so neither
// the length nor the first differing byte shows in the time taken.
async function sameSecret(given, expected) {
  if (typeof expected !== "string" || expected === "") return false;
  const [a, b] = await Promise.all([
    crypto.subtle.digest("SHA-256", encoder.encode(given)),
    crypto.subtle.digest("SHA-256", encoder.encode(expected)),
  ]);
  if (typeof crypto.subtle.timingSafeEqual === "function") return crypto.subtle.timingSafeEqual(a, b);
  const x = new Uint8Array(a), y = new Uint8Array(b);
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= x[i] ^ y[i];
  return diff === 0;
}

// Whether the request carries one of the secrets (the current one, or the next one while a
// rotation is under way).
export async function authorized(req, secrets) {
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.get("authorization") ?? "");
  if (!bearer) return false;
  let match = false;
  for (const s of secrets) match = (await sameSecret(bearer[1], s)) || match; // try every one
  return match;
}

// ---------------------------------------------------------------- request parsing

export function checkParams(params, where) {
  if (params === undefined || params === null) return [];
  if (!Array.isArray(params)) throw new Error(`${where}.params must be an array`);
  params.forEach((p, k) => {
    const good =
      p === null || typeof p === "number" || typeof p === "string" ||
      (Array.isArray(p) && p.every((b) => Number.isInteger(b) && b >= 0 && b <= 255));
    if (!good) {
      throw new Error(`${where}.params[${k}] must be a number, string, null or an array of bytes (0..255)`);
    }
  });
  return params;
}

// The statements of a body: [{sql, params}], one per entry (an entry is one statement).
export function parseStatements(body, maxStatements) {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new Error("expected a JSON object with `sql` or `batch`");
  }
  if ("batch" in body) {
    if (!Array.isArray(body.batch) || body.batch.length === 0) throw new Error("`batch` must be a non-empty array");
    if (body.batch.length > maxStatements) {
      const e = new Error(`a request holds at most ${maxStatements} statements; this one has ${body.batch.length}`);
      e.tooLarge = true;
      throw e;
    }
    return body.batch.map((q, k) => {
      if (q === null || typeof q !== "object" || typeof q.sql !== "string") throw new Error(`batch[${k}].sql must be a string`);
      return { sql: q.sql, params: checkParams(q.params, `batch[${k}]`) };
    });
  }
  if (typeof body.sql !== "string") throw new Error("`sql` must be a string");
  return [{ sql: body.sql, params: checkParams(body.params, "body") }];
}

// ---------------------------------------------------------------- executing

export class D1Failure extends Error {}

export function d1Message(e) {
  let msg = String(e?.message ?? e);
  while (/^D1_[A-Z_]*ERROR: /.test(msg)) msg = msg.replace(/^D1_[A-Z_]*ERROR: /, "");
  return msg;
}

// Runs `queries` in ONE transaction on the database behind the binding `db`, in the session
// `bookmark` names (undefined: D1's primary, as the binding's own batch() does), and returns
// each statement's columns, rows and meta, and the session's newest bookmark.
//
// It posts what the binding's batch() posts (the same endpoint, body and session header) to the
// binding's fetcher, because batch() turns rows into objects (a repeated column name, and the
// columns of an empty result, would be lost) and raw() gives no meta. If a runtime ever lacks
// the fetcher, it falls back to the public batch() on a session.
export async function execute(db, queries, bookmark) {
  if (typeof db.fetcher?.fetch === "function") {
    const resp = await db.fetcher.fetch("http://d1/query?resultsFormat=ROWS_AND_COLUMNS", {
      method: "POST",
      headers: { "content-type": "application/json", [D1_SESSION_HEADER]: bookmark ?? "first-primary" },
      body: JSON.stringify(queries),
    });
    const text = await resp.text();
    let answer;
    try {
      answer = JSON.parse(text);
    } catch {
      throw new D1Failure(`unexpected response from D1 (${resp.status}): ${text.slice(0, 200)}`);
    }
    const results = Array.isArray(answer) ? answer : [answer];
    const failed = results.find((r) => !r || r.error || r.success === false);
    if (failed) throw new D1Failure(d1Message(failed?.error ?? "Something went wrong"));
    return {
      results: results.map((r) => ({ meta: r.meta ?? {}, columns: r.results?.columns ?? [], rows: r.results?.rows ?? [] })),
      bookmark: resp.headers.get(D1_SESSION_HEADER) ?? undefined,
    };
  }
  const session = bookmark === undefined ? db : db.withSession(bookmark);
  let res;
  try {
    res = await session.batch(
      queries.map((q) => session.prepare(q.sql).bind(...q.params.map((p) => (Array.isArray(p) ? new Uint8Array(p) : p)))),
    );
  } catch (e) {
    throw new D1Failure(d1Message(e));
  }
  return {
    results: res.map((r) => {
      const columns = r.results.length ? Object.keys(r.results[0]) : [];
      return { meta: r.meta ?? {}, columns, rows: r.results.map((o) => columns.map((c) => o[c])) };
    }),
    bookmark: session.getBookmark?.() ?? undefined,
  };
}

// D1's failure as an answer: SQL errors are 400/7500 (nothing committed); D1 overloaded is
// 429/7429; anything else (the database object reset, a lost connection, a time limit) is
// 503/7503: a read may be repeated, a write's outcome is unknown.
export function failureResponse(message) {
  if (/overloaded/i.test(message)) return fail(429, 7429, message);
  if (/SQLITE_|no such |syntax error|constraint failed|not authorized|too many SQL variables|No SQL statements|did not contain a statement|statement too long|To execute a transaction/i.test(message)) {
    return fail(400, 7500, message);
  }
  return fail(503, 7503, message);
}

// D1's meta as D1's REST API gives it, with the replica facts the Sessions API adds.
export function restMeta(m) {
  const duration = typeof m.duration === "number" ? m.duration : 0;
  const out = {
    changed_db: !!m.changed_db,
    changes: m.changes ?? 0,
    duration,
    last_row_id: m.last_row_id ?? 0,
    rows_read: m.rows_read ?? 0,
    rows_written: m.rows_written ?? 0,
    size_after: m.size_after ?? 0,
    served_by_primary: m.served_by_primary ?? true,
    timings: { sql_duration_ms: m.timings?.sql_duration_ms ?? duration },
  };
  if (typeof m.served_by_region === "string") out.served_by_region = m.served_by_region;
  if (typeof m.served_by_colo === "string") out.served_by_colo = m.served_by_colo;
  return out;
}

// ---------------------------------------------------------------- the one endpoint

// Answers a POST /v1/query whose body (already read) is `text`, on database `db`.
export async function handleQuery(req, text, db, limits) {
  if (text.length > limits.maxBodyBytes) {
    return fail(413, 7413, `the request body is over the bridge's ${limits.maxBodyBytes} bytes (TANDEM_BRIDGE_MAX_BODY_BYTES)`);
  }
  let queries;
  try {
    queries = parseStatements(JSON.parse(text), limits.maxStatements);
  } catch (e) {
    if (e.tooLarge) return fail(413, 7413, `${e.message} (TANDEM_BRIDGE_MAX_STATEMENTS)`);
    return malformed(e instanceof SyntaxError ? "body is not valid JSON" : e.message);
  }
  const asked = req.headers.get(BOOKMARK_HEADER)?.trim();
  let ran;
  try {
    ran = await execute(db, queries, asked ? asked : undefined);
  } catch (e) {
    return failureResponse(d1Message(e));
  }
  const headers = asked && ran.bookmark ? { [BOOKMARK_HEADER]: ran.bookmark } : {};
  return ok(
    ran.results.map((r) => ({ success: true, meta: restMeta(r.meta), results: { columns: r.columns, rows: r.rows } })),
    headers,
  );
}

export function limitsOf(env) {
  const n = (v, d) => (Number.isInteger(Number(v)) && Number(v) > 0 ? Number(v) : d);
  return {
    maxStatements: n(env.TANDEM_BRIDGE_MAX_STATEMENTS, DEFAULT_MAX_STATEMENTS),
    maxBodyBytes: n(env.TANDEM_BRIDGE_MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES),
  };
}

// Routes one request, whose body is `text`, for a bridge in front of `db` that accepts
// `secrets`. Checks run in this order: path, method, secret, body; a request without the secret
// touches nothing.
export async function bridge(req, text, db, secrets, limits) {
  const path = new URL(req.url).pathname.replace(/\/+$/, "");
  if (!path.endsWith("/v1/query")) return fail(404, 7003, "No route for the URI (the bridge answers POST /v1/query)");
  if (req.method !== "POST") return fail(405, 7001, "Method not allowed (POST /v1/query)");
  if (!secrets.some((s) => typeof s === "string" && s !== "")) {
    return fail(503, 7503, "the bridge has no secret: set it with `wrangler secret put TANDEM_BRIDGE_SECRET`");
  }
  if (!(await authorized(req, secrets))) return fail(401, 10000, "Authentication error");
  if (!db) return fail(503, 7503, "the bridge has no D1 binding named DB (wrangler.jsonc d1_databases)");
  return handleQuery(req, text, db, limits);
}
