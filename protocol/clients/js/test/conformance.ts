// The conformance cases: the same code runs against tandem (through this client, in Node) and
// against the local D1's real `env.DB` binding (inside a Worker, test/d1-worker). Each case
// checks what it expects, and records with `same()` what must come out identical on both
// targets; conformance.test.ts then compares the two recordings. Where tandem deliberately
// differs from D1, the case checks each target's answer explicitly (`ctx.target`), and the
// README lists the difference.
//
// No Node modules here: this file is bundled into the Worker.

import type { D1DatabaseLike, D1Meta, D1Result } from "../src/types.js";
import { eq, match, ok, rejects, show, throws } from "./helpers/check.js";

export type Target = "tandem" | "d1";

export interface Ctx {
  target: Target;
  db: D1DatabaseLike;
  /** Records a value that must be the same on both targets. */
  same(label: string, value: unknown): void;
}

export interface Case {
  name: string;
  run(ctx: Ctx): Promise<void>;
}

/** Drops every user table and view, so each case starts from an empty database. */
export async function resetDatabase(db: D1DatabaseLike): Promise<void> {
  const { results } = await db
    .prepare(
      "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'view')" +
        " AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'" +
        " ORDER BY type = 'table', rowid DESC",
    )
    .all<{ type: string; name: string }>();
  if (results.length === 0) return;
  await db.batch(
    results.map((r) => db.prepare(`DROP ${r.type.toUpperCase()} IF EXISTS "${r.name.replace(/"/g, '""')}"`)),
  );
}

const META_NUMBERS = ["duration", "size_after", "rows_read", "rows_written", "last_row_id", "changes"] as const;

/** D1's result shape: success, results array, meta with every D1Meta field. */
function checkResult(r: D1Result<unknown>, what: string): void {
  eq(r.success, true, `${what}: success`);
  ok(Array.isArray(r.results), `${what}: results is an array (got ${show(r.results)})`);
  checkMeta(r.meta, what);
}

function checkMeta(m: D1Meta, what: string): void {
  ok(m !== null && typeof m === "object", `${what}: meta is an object`);
  for (const k of META_NUMBERS) ok(typeof m[k] === "number", `${what}: meta.${k} is a number (got ${show(m[k])})`);
  ok(typeof m.changed_db === "boolean", `${what}: meta.changed_db is a boolean`);
}

/** An error message without the local D1's workerd-only decorations. */
function norm(message: string): string {
  return message.replace(/ at offset \d+/, "").replace(/ \(extended: SQLITE_[A-Z_]+\)/, "");
}

async function errorOf(p: Promise<unknown>, what: string): Promise<string> {
  const e = await rejects(p, what);
  ok(e instanceof Error, `${what}: an Error`);
  ok((e as { cause?: unknown }).cause instanceof Error, `${what}: has an Error cause`);
  const cause = (e as { cause: Error }).cause.message;
  if (e.message.startsWith("D1_COLUMN_NOTFOUND: ")) eq(cause, "Column not found", `${what}: cause message`);
  else eq(cause, e.message.replace(/^D1_[A-Z_]+: /, ""), `${what}: cause message`);
  return norm(e.message);
}

async function countOf(p: Promise<{ count: number; duration: number }>): Promise<number> {
  const r = await p;
  ok(typeof r.duration === "number", "exec().duration is a number");
  return r.count;
}

const USERS =
  "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT UNIQUE, score REAL," +
  " data BLOB, active INTEGER)";

async function users(db: D1DatabaseLike): Promise<void> {
  await db.prepare(USERS).run();
  const ins = db.prepare("INSERT INTO users (name, email, score, data, active) VALUES (?, ?, ?, ?, ?)");
  await db.batch([
    ins.bind("Ada", "ada@example.com", 9.5, new Uint8Array([1, 2, 3]), true),
    ins.bind("Brian", "brian@example.com", 7, null, false),
    ins.bind("Chloé 🚀", null, -0.25, new Uint8Array([]), 1),
  ]);
}

export const cases: Case[] = [
  {
    name: "all(): rows as objects, in D1's result shape",
    async run({ db, same }) {
      await users(db);
      const r = await db.prepare("SELECT * FROM users ORDER BY id").all();
      checkResult(r, "all()");
      same("results", r.results);
      eq(r.meta.changes, 0, "meta.changes of a SELECT");
      eq(r.meta.changed_db, false, "meta.changed_db of a SELECT");
      const one = await db.prepare("SELECT id, name FROM users WHERE id = ?").bind(2).all();
      same("one row", one.results);
      const none = await db.prepare("SELECT id FROM users WHERE id = ?").bind(99).all();
      eq(none.results, [], "no rows");
    },
  },
  {
    name: "first(): the first row, one column, null when there is none",
    async run({ db, same }) {
      await users(db);
      const st = db.prepare("SELECT id, name, score FROM users ORDER BY id");
      same("first()", await st.first());
      same("first(name)", await st.first("name"));
      eq(await db.prepare("SELECT * FROM users WHERE id = 99").first(), null, "first() of nothing");
      eq(await db.prepare("SELECT * FROM users WHERE id = 99").first("name"), null, "first(col) of nothing");
      eq(await db.prepare("SELECT NULL AS n").first("n"), null, "first(col) of a NULL");
      const msg = await errorOf(st.first("nope"), "first(missing column)");
      same("first(missing column) error", msg);
      eq(msg, "D1_COLUMN_NOTFOUND: Column not found (nope)", "first(missing column) error");
    },
  },
  {
    name: "raw(): rows as arrays, with and without column names",
    async run({ db, same }) {
      await users(db);
      const st = db.prepare("SELECT id, name, data FROM users ORDER BY id");
      same("raw()", await st.raw());
      same("raw({columnNames: true})", await st.raw({ columnNames: true }));
      same("raw({columnNames: false})", await st.raw({ columnNames: false }));
      const empty = db.prepare("SELECT id, name FROM users WHERE id = 99");
      same("raw() of nothing", await empty.raw());
      same("raw({columnNames}) of nothing", await empty.raw({ columnNames: true }));
    },
  },
  {
    name: "run(): meta of INSERT, UPDATE and DELETE",
    async run({ db, same }) {
      await users(db);
      const ins = await db.prepare("INSERT INTO users (name) VALUES (?)").bind("Dan").run();
      checkResult(ins, "run() INSERT");
      same("INSERT", { results: ins.results, changes: ins.meta.changes, last_row_id: ins.meta.last_row_id, changed_db: ins.meta.changed_db });
      const upd = await db.prepare("UPDATE users SET score = score + 1 WHERE score IS NOT NULL").run();
      checkResult(upd, "run() UPDATE");
      same("UPDATE", { results: upd.results, changes: upd.meta.changes, changed_db: upd.meta.changed_db });
      const none = await db.prepare("UPDATE users SET score = 0 WHERE id = 99").run();
      same("UPDATE of nothing", { changes: none.meta.changes, changed_db: none.meta.changed_db });
      const del = await db.prepare("DELETE FROM users WHERE id > ?").bind(2).run();
      same("DELETE", { changes: del.meta.changes, changed_db: del.meta.changed_db });
      const sel = await db.prepare("SELECT count(*) AS n FROM users").run();
      same("run() of a SELECT", sel.results);
      const ret = await db.prepare("INSERT INTO users (name) VALUES ('Eve') RETURNING id, name").run();
      same("INSERT … RETURNING", { results: ret.results, changes: ret.meta.changes });
    },
  },
  {
    name: "meta.changes counts rows changed by triggers and foreign-key actions",
    async run({ db, same }) {
      await db.batch([
        db.prepare("CREATE TABLE parent (id INTEGER PRIMARY KEY)"),
        db.prepare("CREATE TABLE child (id INTEGER PRIMARY KEY, p INTEGER REFERENCES parent(id) ON DELETE CASCADE)"),
        db.prepare("CREATE TABLE log (msg TEXT)"),
        db.prepare("CREATE TRIGGER t AFTER INSERT ON parent BEGIN INSERT INTO log VALUES ('x'); END"),
      ]);
      const a = await db.prepare("INSERT INTO parent (id) VALUES (1), (2)").run();
      same("insert with trigger", a.meta.changes);
      await db.prepare("INSERT INTO child (p) VALUES (1), (1), (2)").run();
      const d = await db.prepare("DELETE FROM parent WHERE id = 1").run();
      same("delete with cascade", d.meta.changes);
      same("children left", (await db.prepare("SELECT p FROM child").raw()));
    },
  },
  {
    name: "bind(): values as SQLite sees them (typeof)",
    async run({ db, same }) {
      const values: unknown[] = [
        "text", "", "héllo wörld ✓ 日本語 🚀", "a\u0000b", "'; DROP TABLE x; --",
        null,
        new Uint8Array([0, 1, 2, 254, 255]), new Uint8Array([1, 2, 3, 4]).subarray(1, 3),
        new Uint8Array([9, 8]).buffer, [0, 127, 255], [], new Uint8Array(0),
      ];
      const st = db.prepare("SELECT typeof(?1) AS t, ?1 AS v, quote(?1) AS q");
      const rows = await db.batch(values.map((v) => st.bind(v)));
      same("typeof/value/quote", rows.map((r) => r.results[0]));
    },
  },
  {
    // D1's documented type table: an integral Number and a boolean bind as INTEGER, any other
    // Number as REAL. tandem follows it (integral means Number.isSafeInteger). The local D1
    // (workerd's D1 binding) binds every number and boolean as REAL instead; the README says so.
    name: "bind(): numbers and booleans, INTEGER or REAL",
    async run({ db, target, same }) {
      const values: (number | boolean)[] = [
        42, -7, 0, -0, 3.0, 2 ** 53 - 1, -(2 ** 53 - 1), 1732540000000000, true, false,
        1.5, -0.25, 0.1, 1e300, 5e-324, 2 ** 53, 2 ** 53 + 2, -(2 ** 53), 2 ** 63, 1e21,
      ];
      const integral = (v: number | boolean) => typeof v === "boolean" || Number.isSafeInteger(v);
      // quote() of a REAL differs between SQLite versions (tandem's and workerd's), so it is not used.
      const st = db.prepare("SELECT typeof(?1) AS t, ?1 AS v");
      const rows = (await db.batch(values.map((v) => st.bind(v)))).map((r) => r.results[0] as { t: string; v: unknown });
      const expected = values.map((v) => (target === "d1" ? "real" : integral(v) ? "integer" : "real"));
      eq(rows.map((r) => r.t), expected, `typeof() of ${show(values)}`);
      // The values read back are the same numbers on both (a REAL 42.0 comes back as 42).
      same("values", rows.map((r) => r.v));
      // Stored in a column without affinity, the type stays what was bound; integer arithmetic
      // follows it (7 / 2 is 3 with an INTEGER 7, 3.5 with a REAL one).
      await db.prepare("CREATE TABLE anyval (id INTEGER PRIMARY KEY, v)").run();
      await db.batch(values.map((v, i) => db.prepare("INSERT INTO anyval (id, v) VALUES (?, ?)").bind(i, v)));
      const stored = await db.prepare("SELECT typeof(v) AS t, v FROM anyval ORDER BY id").all<{ t: string; v: unknown }>();
      eq(stored.results.map((r) => r.t), expected, "typeof() of the stored values");
      same("stored values", stored.results.map((r) => r.v));
      eq(await db.prepare("SELECT ? / 2 AS half").bind(7).first("half"), target === "d1" ? 3.5 : 3, "7 / 2");
      // In an INTEGER column, affinity makes an integral REAL an INTEGER again: the same on both.
      await db.prepare("CREATE TABLE intcol (id INTEGER PRIMARY KEY, v INTEGER)").run();
      await db.batch([42, 3.0, true, false, 1.5].map((v, i) => db.prepare("INSERT INTO intcol VALUES (?, ?)").bind(i, v)));
      same("INTEGER column", (await db.prepare("SELECT typeof(v) AS t, v FROM intcol ORDER BY id").all()).results);
    },
  },
  {
    name: "bind(): ?NNN, reuse, and an unbound statement",
    async run({ db, same }) {
      const st = db.prepare("SELECT ?2 AS b, ?1 AS a, ?2 || ?1 AS ba");
      const [x, y] = await Promise.all([st.bind("1", "2").first(), st.bind("x", "y").first()]);
      same("?NNN", [x, y]);
      same("named parameter bound by position", await db.prepare("SELECT :name AS n").bind("Ada").first());
      same("no placeholders", await db.prepare("SELECT 7 AS seven").bind().first());
      const e = await errorOf(db.prepare("SELECT ? AS a").all(), "missing parameter");
      match(e, /^D1_ERROR: /, "missing parameter");
      const e2 = await errorOf(db.prepare("SELECT ? AS a").bind(1, 2).all(), "extra parameter");
      match(e2, /^D1_ERROR: /, "extra parameter");
    },
  },
  {
    name: "bind(): unsupported values throw D1_TYPE_ERROR at bind()",
    async run({ db, target, same }) {
      const st = db.prepare("SELECT ? AS v");
      const bad: [string, unknown][] = [
        ["undefined", undefined],
        ["object", { a: 1 }],
        ["Date", new Date(0)],
        ["function", Math.max],
        ["array of non-bytes", [1, 256]],
        ["array of strings", ["a"]],
      ];
      for (const [what, v] of bad) {
        const e = throws(() => st.bind(v), `bind(${what})`);
        same(`bind(${what})`, e.message);
      }
      // bigint: D1 refuses it; tandem binds it exactly (see README).
      if (target === "d1") {
        match(throws(() => st.bind(1n), "bind(1n)").message, /^D1_TYPE_ERROR: Type 'bigint' not supported for value '1'$/);
      } else {
        eq(await st.bind(2n ** 63n - 1n).first("v"), 2n ** 63n - 1n, "bind(2^63 - 1)");
        eq(await st.bind(-(2n ** 63n)).first("v"), -(2n ** 63n), "bind(-2^63)");
        eq(await st.bind(5n).first("v"), 5, "bind(5n) reads back as a number");
        match(throws(() => st.bind(2n ** 63n), "bind(2^63)").message, /^D1_TYPE_ERROR: Type 'bigint' not supported/);
      }
    },
  },
  {
    name: "integers beyond 2^53",
    async run({ db, target, same }) {
      await db.prepare("CREATE TABLE big (id INTEGER PRIMARY KEY, v INTEGER)").run();
      await db.prepare("INSERT INTO big VALUES (1, 9007199254740993), (2, 9223372036854775807), (3, -9223372036854775808)").run();
      same("exact as text", await db.prepare("SELECT CAST(v AS TEXT) AS t FROM big ORDER BY id").raw());
      same("typeof", await db.prepare("SELECT typeof(v) AS t FROM big ORDER BY id").raw());
      const vals = (await db.prepare("SELECT v FROM big ORDER BY id").raw()).map((r) => r[0]);
      if (target === "d1") {
        // D1 rounds to the nearest double.
        eq(vals, [9007199254740992, 9223372036854775807, -9223372036854775808], "D1's values");
      } else {
        eq(vals, [9007199254740993n, 9223372036854775807n, -9223372036854775808n], "tandem's values (bigint)");
      }
      // A JS number beyond 2^53 binds as REAL on both (use a bigint on tandem for an exact INTEGER).
      same("number 2^60 binds as", await db.prepare("SELECT typeof(?) AS t, ? AS v").bind(2 ** 60, 2 ** 60).first());
      const r = await db.prepare("INSERT INTO big (id, v) VALUES (9007199254740993, 0)").run();
      if (target === "d1") eq(r.meta.last_row_id, 9007199254740992, "D1's last_row_id");
      else eq(r.meta.last_row_id, 9007199254740993n, "tandem's last_row_id (bigint)");
    },
  },
  {
    name: "floats: precision, -0, infinity, NaN",
    async run({ db, target, same }) {
      same("floats", await db.prepare("SELECT 0.1 + 0.2 AS a, 1e300 AS b, 5e-324 AS c, 1.0 AS d, 2.5e-7 AS e, 123456789.125 AS f").first());
      same("float params", await db.prepare("SELECT ? AS a, ? AS b, ? AS c").bind(0.1, 1 / 3, -1e-300).first());
      const special = await db.prepare("SELECT -0.0 AS negzero, 9e999 AS inf, -9e999 AS neginf").first();
      const nan = await db.prepare("SELECT ? AS v, typeof(?) AS t").bind(NaN, NaN).first();
      same("NaN binds as NULL", nan);
      const inf = await db.prepare("SELECT typeof(?) AS t, ? > 1e308 AS big").bind(Infinity, Infinity).first();
      same("Infinity binds as NULL", inf);
      if (target === "d1") {
        // D1's JSON turns -0 into 0 and ±Infinity into null.
        eq(special, { negzero: 0, inf: null, neginf: null }, "D1's -0.0 and ±Inf");
      } else {
        eq(special, { negzero: -0, inf: Infinity, neginf: -Infinity }, "tandem's -0.0 and ±Inf");
      }
    },
  },
  {
    name: "text: unicode, empty, NUL, quotes, 50 KB",
    async run({ db, same }) {
      await db.prepare("CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT)").run();
      const texts = ["", "plain", "héllo wörld ✓ 日本語 🚀", "a\u0000b", "line\nbreak\ttab\r\n", "'\"\\", "x".repeat(50000)];
      await db.batch(texts.map((s, i) => db.prepare("INSERT INTO t VALUES (?, ?)").bind(i, s)));
      const back = await db.prepare("SELECT s, length(s) AS n FROM t ORDER BY id").all<{ s: string; n: number }>();
      eq(back.results.map((r) => r.s), texts, "texts read back");
      same("lengths", back.results.map((r) => r.n));
    },
  },
  {
    name: "blobs: arrays of bytes, as D1 returns them",
    async run({ db, same }) {
      await db.prepare("CREATE TABLE b (id INTEGER PRIMARY KEY, v BLOB)").run();
      const bytes = new Uint8Array(1000);
      for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7) % 256;
      await db.batch([
        db.prepare("INSERT INTO b VALUES (1, ?)").bind(bytes),
        db.prepare("INSERT INTO b VALUES (2, ?)").bind(bytes.buffer),
        db.prepare("INSERT INTO b VALUES (3, x'00ff10')"),
        db.prepare("INSERT INTO b VALUES (4, zeroblob(3))"),
        db.prepare("INSERT INTO b VALUES (5, ?)").bind(new Uint8Array(0)),
      ]);
      const r = await db.prepare("SELECT id, v, typeof(v) AS t, length(v) AS n FROM b ORDER BY id").all();
      same("blobs", r.results);
      eq((r.results[0] as { v: unknown }).v, Array.from(bytes), "blob read back as number[]");
    },
  },
  {
    name: "duplicate column names: all() keeps the last, raw() keeps both",
    async run({ db, same }) {
      const st = db.prepare("SELECT 1 AS a, 2 AS a, 3 AS b");
      same("all()", (await st.all()).results);
      same("raw({columnNames})", await st.raw({ columnNames: true }));
      same("first()", await st.first());
    },
  },
  {
    name: "batch(): one result per statement, in order, each seeing the earlier ones",
    async run({ db, same }) {
      const rs = await db.batch([
        db.prepare("CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER)"),
        db.prepare("INSERT INTO kv VALUES (?, ?)").bind("a", 1),
        db.prepare("INSERT INTO kv VALUES (?, ?)").bind("b", 2),
        db.prepare("UPDATE kv SET v = v * 10"),
        db.prepare("SELECT k, v FROM kv ORDER BY k"),
      ]);
      eq(rs.length, 5, "results");
      rs.forEach((r, i) => checkResult(r, `batch result ${i}`));
      same("results", rs.map((r) => r.results));
      same("changes", rs.map((r) => r.meta.changes));
      same("changed_db", rs.map((r) => r.meta.changed_db));
      same("last_row_id of the INSERTs", [rs[1]!.meta.last_row_id, rs[2]!.meta.last_row_id]);
    },
  },
  {
    name: "batch(): atomic, a failing statement rolls the whole batch back",
    async run({ db, same }) {
      await users(db);
      const msg = await errorOf(
        db.batch([
          db.prepare("INSERT INTO users (name) VALUES ('Zed')"),
          db.prepare("UPDATE users SET name = 'changed' WHERE id = 1"),
          db.prepare("INSERT INTO users (id, name) VALUES (1, 'dup')"),
          db.prepare("INSERT INTO users (name) VALUES ('never')"),
        ]),
        "batch with a failing statement",
      );
      same("error", msg);
      same("nothing applied", await db.prepare("SELECT id, name FROM users ORDER BY id").raw());
      same("empty batch", await errorOf(db.batch([]), "empty batch"));
    },
  },
  {
    name: "exec(): several statements, one per line",
    async run({ db, same }) {
      const r = await db.exec(
        "CREATE TABLE e (id INTEGER PRIMARY KEY, s TEXT);\nINSERT INTO e (s) VALUES ('a');\nINSERT INTO e (s) VALUES ('b; c');\n",
      );
      eq(typeof r.duration, "number", "exec().duration");
      same("count", r.count);
      same("rows", await db.prepare("SELECT * FROM e ORDER BY id").raw());
      const one = await db.exec("INSERT INTO e (s) VALUES ('d')");
      same("count of one", one.count);
    },
  },
  {
    name: "exec(): each line is a query, with or without `;`, and several per line count as one",
    async run({ db, target, same }) {
      same("lines without ;", await countOf(db.exec("CREATE TABLE l (x)\nINSERT INTO l VALUES (1)\n\n  INSERT INTO l VALUES (2)  \r\n")));
      same("two on one line", await countOf(db.exec("INSERT INTO l VALUES (3); INSERT INTO l VALUES (4);")));
      same("rows", await db.prepare("SELECT x FROM l").raw());
      same("a statement over two lines fails", await errorOf(db.exec("CREATE TABLE m (\n  x\n)"), "multi-line"));
      same("nothing", await errorOf(db.exec(""), "exec of nothing"));
      same("only blanks", await errorOf(db.exec("  \n \n"), "exec of blanks"));
      // A comment-only line: the local D1 fails on it; tandem skips it.
      const withComment = db.exec("INSERT INTO l VALUES (5)\n-- a comment");
      if (target === "d1") match(await errorOf(withComment, "comment line"), /SQL code did not contain a statement/);
      else eq(await countOf(withComment), 1, "comment line skipped");
    },
  },
  {
    name: "exec(): an error fails the whole call, D1_EXEC_ERROR",
    async run({ db, target, same }) {
      await db.exec("CREATE TABLE e (id INTEGER PRIMARY KEY)");
      const msg = await errorOf(db.exec("INSERT INTO e VALUES (1)\nINSERT INTO nope VALUES (2)\nINSERT INTO e VALUES (3)"), "exec with an error");
      if (target === "d1") {
        // The local D1 always names line 1 (the whole request failed as one).
        eq(msg, "D1_EXEC_ERROR: Error in line 1: INSERT INTO e VALUES (1): no such table: nope: SQLITE_ERROR", "D1's exec error");
      } else {
        eq(msg, "D1_EXEC_ERROR: Error in line 2: INSERT INTO nope VALUES (2): no such table: nope: SQLITE_ERROR", "tandem's exec error");
      }
      same("rows after the failed exec", await db.prepare("SELECT * FROM e").raw());
    },
  },
  {
    name: "SQL errors: messages as D1 words them",
    async run({ db, same }) {
      await users(db);
      await db.exec("CREATE TABLE c (n INTEGER CHECK (n > 0), u INTEGER REFERENCES users(id))");
      const errors: [string, string][] = [
        ["syntax", "SELEC 1"],
        ["no such table", "SELECT * FROM nope"],
        ["no such column", "SELECT nope FROM users"],
        ["NOT NULL", "INSERT INTO users (name) VALUES (NULL)"],
        ["UNIQUE", "INSERT INTO users (name, email) VALUES ('x', 'ada@example.com')"],
        ["PRIMARY KEY", "INSERT INTO users (id, name) VALUES (1, 'x')"],
        ["CHECK", "INSERT INTO c (n) VALUES (0)"],
        ["FOREIGN KEY", "INSERT INTO c (n, u) VALUES (1, 99)"],
        ["no such function", "SELECT nope(1)"],
      ];
      for (const [what, sql] of errors) {
        same(what, await errorOf(db.prepare(sql).run(), what));
      }
    },
  },
  {
    name: "refused: transaction control, ATTACH, TEMP objects",
    async run({ db }) {
      for (const sql of ["BEGIN", "BEGIN TRANSACTION", "COMMIT", "ROLLBACK", "SAVEPOINT s", "RELEASE s",
                         "ATTACH DATABASE ':memory:' AS other", "CREATE TEMP TABLE tt (x)"]) {
        match(await errorOf(db.prepare(sql).run(), sql), /^D1_ERROR: /, sql);
      }
    },
  },
  {
    name: "PRAGMA reads and foreign keys enforced",
    async run({ db, same }) {
      await users(db);
      same("table_info", (await db.prepare("PRAGMA table_info(users)").all()).results);
      same("foreign_key_list", (await db.prepare("PRAGMA foreign_key_list(users)").all()).results);
      await db.exec("CREATE TABLE fk (u INTEGER REFERENCES users(id))");
      await rejects(db.prepare("INSERT INTO fk VALUES (42)").run(), "FK violation");
    },
  },
  {
    name: "JSON functions and RETURNING",
    async run({ db, same }) {
      same("json", await db.prepare("SELECT json_object('a', 1, 'b', json_array(1, 2)) AS j, json_extract(?, '$.x') AS x").bind('{"x": [1, {"y": null}]}').first());
      await db.exec("CREATE TABLE r (id INTEGER PRIMARY KEY, v TEXT)");
      same("RETURNING", (await db.prepare("INSERT INTO r (v) VALUES ('a'), ('b') RETURNING *").all()).results);
    },
  },
  {
    name: "many rows: 2000 from a recursive CTE",
    async run({ db, same }) {
      const r = await db
        .prepare("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) SELECT i, i * 0.5 AS h, 'row ' || i AS s FROM n")
        .all<{ i: number }>();
      eq(r.results.length, 2000, "rows");
      same("rows", r.results);
    },
  },
  {
    name: "concurrent calls each get their own answer",
    async run({ db, same }) {
      await db.exec("CREATE TABLE n (i INTEGER PRIMARY KEY, sq INTEGER)");
      await Promise.all(Array.from({ length: 50 }, (_, i) => db.prepare("INSERT INTO n VALUES (?, ?)").bind(i, i * i).run()));
      const got = await Promise.all(Array.from({ length: 50 }, (_, i) => db.prepare("SELECT sq FROM n WHERE i = ?").bind(i).first("sq")));
      eq(got, Array.from({ length: 50 }, (_, i) => i * i), "squares");
      same("count", await db.prepare("SELECT count(*) AS c FROM n").first("c"));
    },
  },
  {
    name: "prepare() of several statements: all run, atomically, the last one's rows come back",
    async run({ db, same }) {
      const m = (r: D1Result<unknown>) => ({ results: r.results, changes: r.meta.changes });
      same("two SELECTs", m(await db.prepare("SELECT 1 AS a; SELECT 2 AS b").all()));
      same("two CREATEs", m(await db.prepare("CREATE TABLE p1 (x); CREATE TABLE p2 (y);").run()));
      same("tables", await db.prepare("SELECT name FROM sqlite_master WHERE name LIKE 'p_' ORDER BY name").raw());
      same("params on the last", m(await db.prepare("INSERT INTO p1 VALUES (1); SELECT ? AS v").bind(7).all()));
      same("params on an earlier one", await errorOf(db.prepare("INSERT INTO p1 VALUES (?); SELECT ? AS v").bind(1, 2).all(), "early params"));
      same("an error rolls back all", await errorOf(db.prepare("INSERT INTO p1 VALUES (9); SELECT * FROM nope").run(), "error"));
      same("p1", await db.prepare("SELECT x FROM p1").raw());
      same("in a batch", (await db.batch([db.prepare("INSERT INTO p2 VALUES (1); INSERT INTO p2 VALUES (2)"), db.prepare("SELECT count(*) AS n FROM p2")])).map(m));
      same("first()", await db.prepare("SELECT 1 AS a; SELECT 2 AS b, 3 AS c").first());
    },
  },
  {
    name: "meta.changed_db",
    async run({ db, same }) {
      const changed = async (sql: string) => (await db.prepare(sql).run()).meta.changed_db;
      for (const sql of [
        "CREATE TABLE z (id INTEGER PRIMARY KEY, v TEXT)",
        "CREATE INDEX zi ON z (v)",
        "INSERT INTO z (v) VALUES ('a'), ('b')",
        "SELECT * FROM z",
        "INSERT OR IGNORE INTO z (id, v) VALUES (1, 'x')",
        "UPDATE z SET v = 'q' WHERE id = 2",
        "UPDATE z SET v = 'q' WHERE id = 99",
        "DELETE FROM z WHERE id = 1",
        "ALTER TABLE z ADD COLUMN w",
        "CREATE VIEW zv AS SELECT 1",
        "DROP INDEX zi",
        "DROP TABLE z",
      ]) {
        same(sql, await changed(sql));
      }
    },
  },
  {
    name: "withSession() and dump()",
    async run({ db, target, same }) {
      for (const start of ["first-primary", "first-unconstrained", undefined] as const) {
        const s = db.withSession(start);
        same(`getBookmark() of a new session (${start})`, s.getBookmark());
        same(`session query (${start})`, await s.prepare("SELECT 1 AS one").first("one"));
        same(`session batch (${start})`, (await s.batch([s.prepare("SELECT 2 AS two")]))[0]!.results);
        const b = s.getBookmark();
        // D1 hands out a bookmark with every answer; tandem only in its dual modes (these cases
        // run on sqlite-only, where one store answers everything and there is no position).
        if (target === "d1") ok(typeof b === "string" && b.length > 0, `a bookmark after a query: ${show(b)}`);
        else eq(b, null, "no bookmark in a single mode");
      }
      if (target === "tandem") {
        match((await rejects(db.dump(), "dump()")).message, /^D1_ERROR: dump\(\) is not supported by tandem/);
      }
    },
  },
];
