// tandem d1-local: serves Cloudflare D1's REST API on top of real local D1
// databases (workerd/Miniflare's D1), for development and tests.
//
//   POST /client/v4/accounts/{account_id}/d1/database/{database_id}/query
//   POST /client/v4/accounts/{account_id}/d1/database/{database_id}/raw
//   POST /client/v4/accounts/{account_id}/d1/database/{database_id}/reset   (local-only)
//   POST /client/v4/accounts/{account_id}/d1/database/{database_id}/fault   (local-only, tests)
//
// Databases are a fixed pool of D1 bindings DB00..DB31 (wrangler.jsonc);
// database_id 00000000-0000-4000-8000-0000000000nn is binding DBnn.
// See README.md for the differences from real D1.
//
// It also serves tandem's D1 bridge Worker (../../d1-bridge/src/core.js, the same code) in
// front of each database of the pool, for tests of the bridge transport:
//
//   POST /bridge/{database_id}/v1/query   (the bridge's secret is the token)

import { bridge, checkParams, d1Message, execute, fail, malformed, ok, restMeta } from "../../d1-bridge/src/core.js";

const ID_PREFIX = "00000000-0000-4000-8000-0000000000";
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const BRIDGE_RE = /^\/bridge\/([^/]+)\/v1\/query\/?$/;
const ROUTE_RE =
  /^\/client\/v4\/accounts\/([^/]+)\/d1\/database\/([^/]+)\/(query|raw|reset|fault)\/?$/;

// database_id -> requests answered on /query, /raw and /bridge (local-only, for benchmarks).
const requestCounts = new Map();
// database_id -> pending injected faults (local-only test hook); lives as long as the isolate.
const faults = new Map();
// database_id -> how many faulted requests have finished (answered, after their delay and run).
const faultsFinished = new Map();

// ---------------------------------------------------------------- SQL splitting

// Splits SQL text into statements the way sqlite3_complete() sees statement
// ends, so `;` inside strings, identifiers, comments and CREATE TRIGGER ...
// BEGIN ... END bodies does not split. Also counts each statement's `?`
// placeholders (`?NNN` counts as NNN) so params can be spread over statements.
// Statements that are only whitespace/comments are dropped.
const TK = { SEMI: 0, WS: 1, OTHER: 2, EXPLAIN: 3, CREATE: 4, TEMP: 5, TRIGGER: 6, END: 7 };
// prettier-ignore
const TRANS = [
  /* INVALID */ [1, 0, 2, 3, 4, 2, 2, 2],
  /* START   */ [1, 1, 2, 3, 4, 2, 2, 2],
  /* NORMAL  */ [1, 2, 2, 2, 2, 2, 2, 2],
  /* EXPLAIN */ [1, 3, 3, 2, 4, 2, 2, 2],
  /* CREATE  */ [1, 4, 2, 2, 2, 4, 5, 2],
  /* TRIGGER */ [6, 5, 5, 5, 5, 5, 5, 5],
  /* SEMI    */ [6, 6, 5, 5, 5, 5, 5, 7],
  /* END     */ [1, 7, 5, 5, 5, 5, 5, 5],
];
const KEYWORDS = {
  explain: TK.EXPLAIN, create: TK.CREATE, temp: TK.TEMP, temporary: TK.TEMP,
  trigger: TK.TRIGGER, end: TK.END,
};

function splitSql(sql) {
  const out = [];
  let state = 0, start = 0, i = 0, hasCode = false, nParams = 0;
  const n = sql.length;
  const push = (end) => {
    if (hasCode) out.push({ sql: sql.slice(start, end).trim(), nParams });
    hasCode = false;
    nParams = 0;
  };
  while (i < n) {
    const c = sql[i];
    let tk = TK.OTHER;
    if (c === ";") {
      tk = TK.SEMI;
      i++;
    } else if (/\s/.test(c)) {
      tk = TK.WS;
      i++;
    } else if (c === "-" && sql[i + 1] === "-") {
      tk = TK.WS;
      const e = sql.indexOf("\n", i);
      i = e < 0 ? n : e + 1;
    } else if (c === "/" && sql[i + 1] === "*") {
      tk = TK.WS;
      const e = sql.indexOf("*/", i + 2);
      i = e < 0 ? n : e + 2;
    } else if (c === "'" || c === '"' || c === "`" || c === "[") {
      const close = c === "[" ? "]" : c;
      let j = i + 1;
      for (;;) {
        const e = sql.indexOf(close, j);
        if (e < 0) { j = n; break; }
        if (close !== "]" && sql[e + 1] === close) { j = e + 2; continue; } // doubled quote
        j = e + 1;
        break;
      }
      i = j;
    } else if (c === "?") {
      let j = i + 1;
      while (j < n && sql[j] >= "0" && sql[j] <= "9") j++;
      nParams = j > i + 1 ? Math.max(nParams, Number(sql.slice(i + 1, j))) : nParams + 1;
      i = j;
    } else if (/[A-Za-z_\u0080-\uffff]/.test(c)) {
      let j = i + 1;
      while (j < n && /[A-Za-z0-9_$\u0080-\uffff]/.test(sql[j])) j++;
      tk = KEYWORDS[sql.slice(i, j).toLowerCase()] ?? TK.OTHER;
      i = j;
    } else {
      i++;
    }
    if (tk !== TK.WS && tk !== TK.SEMI) hasCode = true;
    state = TRANS[state][tk];
    if (tk === TK.SEMI && state === 1) {
      push(i - 1);
      start = i;
    }
  }
  push(n);
  return out;
}

// ---------------------------------------------------------------- request parsing

// Turns the body into the flat list of {sql, params} the D1 backend runs in
// one transaction (one result per statement).
function parseBody(body) {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new Error("expected a JSON object with `sql` or `batch`");
  }
  let items;
  if ("batch" in body) {
    if (!Array.isArray(body.batch) || body.batch.length === 0) {
      throw new Error("`batch` must be a non-empty array");
    }
    items = body.batch.map((q, k) => {
      if (q === null || typeof q !== "object" || typeof q.sql !== "string") {
        throw new Error(`batch[${k}].sql must be a string`);
      }
      return { sql: q.sql, params: checkParams(q.params, `batch[${k}]`), where: `batch[${k}]` };
    });
  } else if (typeof body.sql === "string") {
    items = [{ sql: body.sql, params: checkParams(body.params, "body"), where: "body" }];
  } else {
    throw new Error("`sql` must be a string");
  }
  const queries = [];
  for (const item of items) {
    const stmts = splitSql(item.sql);
    if (stmts.length <= 1) {
      // One statement (or none: the backend reports "No SQL statements detected.").
      queries.push({ sql: stmts.length ? stmts[0].sql : item.sql, params: item.params });
      continue;
    }
    // Several statements in one `sql`: spread params over them in order.
    const total = stmts.reduce((s, st) => s + st.nParams, 0);
    if (item.params.length && item.params.length !== total) {
      throw new Error(
        `${item.where}: ${item.params.length} params given for ${total} placeholders in ${stmts.length} statements`,
      );
    }
    let at = 0;
    for (const st of stmts) {
      queries.push({ sql: st.sql, params: item.params.slice(at, at + st.nParams) });
      at += st.nParams;
    }
  }
  return queries;
}

// ---------------------------------------------------------------- executing

function toObjects(columns, rows) {
  // Like real D1's /query: a later column with the same name overwrites an earlier one.
  return rows.map((row) => {
    const o = {};
    columns.forEach((c, k) => (o[c] = row[k]));
    return o;
  });
}

async function handleQuery(db, body, kind) {
  let queries;
  try {
    queries = parseBody(body);
  } catch (e) {
    return malformed(e.message);
  }
  let results;
  try {
    results = (await execute(db, queries)).results;
  } catch (e) {
    return fail(400, 7500, d1Message(e));
  }
  return ok(
    results.map((r) =>
      kind === "raw"
        ? { success: true, meta: restMeta(r.meta), results: { columns: r.columns, rows: r.rows } }
        : { success: true, results: toObjects(r.columns, r.rows), meta: restMeta(r.meta) },
    ),
  );
}

// Local-only: drop every user table, index, view and trigger (not _cf_* or sqlite_*).
async function handleReset(db) {
  const {
    results: [list],
  } = await execute(db, [
    {
      sql:
        "SELECT type, name, sql LIKE 'CREATE VIRTUAL TABLE%' AS virtual FROM sqlite_master" +
        " WHERE type IN ('table','index','view','trigger')" +
        " AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'" +
        " AND (type <> 'index' OR sql IS NOT NULL) ORDER BY rowid",
      params: [],
    },
  ]);
  // Triggers, views and indexes first, then virtual tables (which drop their
  // own shadow tables), then the other tables, the last created first: a child
  // table is dropped before its parent (dropping a child whose parent is gone
  // fails with "no such table" while foreign keys are on).
  const order = { trigger: 0, view: 1, index: 2, table: 4 };
  const objs = list.rows
    .map(([type, name, virtual], at) => ({ type, name, at, rank: order[type] - (virtual ? 1 : 0) }))
    .sort((a, b) => a.rank - b.rank || b.at - a.at)
    .map(({ type, name }) => ({ type, name }));
  const quote = (s) => `"${String(s).replace(/"/g, '""')}"`;
  if (objs.length) {
    try {
      await execute(db, [
        { sql: "PRAGMA defer_foreign_keys = ON", params: [] },
        ...objs.map((o) => ({ sql: `DROP ${o.type.toUpperCase()} IF EXISTS ${quote(o.name)}`, params: [] })),
      ]);
    } catch (e) {
      return fail(400, 7500, d1Message(e));
    }
  }
  return ok({ dropped: objs });
}

// Local-only test hook: make the next `count` /query or /raw requests to this
// database fail with the given HTTP status, code and message (nothing is run),
// optionally after `delay_ms`; with `"fail": false` they are only delayed,
// then run normally. `{"count": 0}` clears it.
function handleFault(id, body) {
  if (body === null || typeof body !== "object") return malformed("expected a JSON object");
  if (body.status === true) {
    return ok({ finished: faultsFinished.get(id) ?? 0, pending: faults.get(id)?.count ?? 0, requests: requestCounts.get(id) ?? 0 });
  }
  const count = body.count ?? 1;
  if (!Number.isInteger(count) || count < 0) return malformed("`count` must be an integer >= 0");
  if (count === 0) {
    faults.delete(id);
    return ok({ cleared: true });
  }
  const fault = {
    count,
    status: Number.isInteger(body.status) ? body.status : 500,
    code: Number.isInteger(body.code) ? body.code : 7500,
    message: typeof body.message === "string" ? body.message : "internal error (injected fault)",
    delay_ms: Number.isFinite(body.delay_ms) ? body.delay_ms : 0,
    fail: body.fail !== false,
  };
  faults.set(id, fault);
  return ok(fault);
}

// ---------------------------------------------------------------- routing

// The next pending fault of database `id`, taken (one request's worth), or undefined.
function takeFault(id) {
  const fault = faults.get(id);
  if (fault && --fault.count <= 0) faults.delete(id);
  return fault;
}

// Runs `answer` under `fault`: after its delay, then its error or the answer itself.
async function underFault(id, fault, answer) {
  if (!fault) return answer();
  if (fault.delay_ms > 0) await new Promise((r) => setTimeout(r, fault.delay_ms));
  try {
    if (fault.fail) return fail(fault.status, fault.code, fault.message);
    return await answer();
  } finally {
    faultsFinished.set(id, (faultsFinished.get(id) ?? 0) + 1);
  }
}

// The bridge Worker's own code in front of pool database `id`, with the token as its secret
// and the pool's faults applied (a fault's error takes the REST envelope, which is the
// bridge's too).
function serveBridge(req, text, env, id) {
  const db = id.startsWith(ID_PREFIX) ? env[`DB${id.slice(ID_PREFIX.length)}`] : undefined;
  if (!db) return fail(404, 7404, `The database ${id} could not be found`);
  const limits = { maxStatements: 100000, maxBodyBytes: 1 << 30 }; // tandem's own limits apply
  requestCounts.set(id, (requestCounts.get(id) ?? 0) + 1);
  return underFault(id, takeFault(id), () => bridge(req, text, db, [env.D1_LOCAL_TOKEN ?? "local-dev-token"], limits));
}

export default {
  async fetch(req, env) {
    // Always consume the request body, even for early error responses:
    // answering before the body is read breaks wrangler dev's proxy (it then
    // fails a later request with "Your worker restarted mid-request", 503).
    const text = await req.text();
    const url = new URL(req.url);
    const b = BRIDGE_RE.exec(url.pathname);
    if (b) return serveBridge(req, text, env, b[1].toLowerCase());
    const m = ROUTE_RE.exec(url.pathname);
    if (!m) return fail(404, 7003, "No route for the URI");
    const [, account, dbId, action] = m;
    if (req.method !== "POST") return fail(405, 7001, "Method not allowed");

    const token = env.D1_LOCAL_TOKEN ?? "local-dev-token";
    const auth = req.headers.get("authorization") ?? "";
    const bearer = /^Bearer\s+(.+)$/i.exec(auth.trim());
    if (!bearer || bearer[1].trim() !== token) return fail(403, 10000, "Authentication error");

    if (account !== (env.D1_LOCAL_ACCOUNT_ID ?? account)) {
      return fail(403, 7403, "The given account is not valid or is not authorized to access this service");
    }
    if (!UUID_RE.test(dbId)) return malformed("failed to decode id");
    const id = dbId.toLowerCase();
    const db = id.startsWith(ID_PREFIX) ? env[`DB${id.slice(ID_PREFIX.length)}`] : undefined;
    if (!db) return fail(404, 7404, `The database ${dbId} could not be found`);

    let body = null;
    if (text.trim() !== "" || action === "query" || action === "raw") {
      try {
        body = JSON.parse(text);
      } catch {
        return malformed("body is not valid JSON");
      }
    }

    if (action === "reset") {
      faults.delete(id);
      faultsFinished.delete(id);
      return handleReset(db);
    }
    if (action === "fault") return handleFault(id, body ?? {});

    requestCounts.set(id, (requestCounts.get(id) ?? 0) + 1);
    return underFault(id, takeFault(id), () => handleQuery(db, body, action));
  },
};
