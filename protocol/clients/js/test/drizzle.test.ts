// A real ORM on the client, unchanged: Drizzle's D1 driver (drizzle-orm/d1, pinned in
// devDependencies) over connect(url), against a real tandem server (sqlite-only). The driver
// calls the D1Database API as it calls env.DB: prepare/bind, all(), run(), raw(), batch().

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { eq, gt, sql } from "drizzle-orm";
import { drizzle, type DrizzleD1Database } from "drizzle-orm/d1";
import { blob, integer, sqliteTable, text } from "drizzle-orm/sqlite-core";

import { connect, TandemError, type TandemD1Database } from "../src/index.js";
import { startTandem, type TandemServer } from "./helpers/tandem.js";

const users = sqliteTable("users", {
  id: integer("id").primaryKey(),
  name: text("name").notNull(),
  email: text("email").notNull().unique(),
  active: integer("active", { mode: "boolean" }).notNull().default(true),
  createdAt: integer("created_at", { mode: "timestamp" }).notNull(),
  prefs: text("prefs", { mode: "json" }).$type<{ theme: string; tags: string[] }>(),
  avatar: blob("avatar", { mode: "buffer" }),
  logins: integer("logins").notNull().default(0),
});

const posts = sqliteTable("posts", {
  id: integer("id").primaryKey(),
  userId: integer("user_id").notNull().references(() => users.id),
  title: text("title").notNull(),
});

const schema = { users, posts };

// Whole seconds: mode "timestamp" stores Unix seconds.
const T0 = new Date("2026-11-25T10:00:00Z");
const T1 = new Date("2026-11-26T12:30:45Z");

describe("Drizzle ORM (drizzle-orm/d1) over connect(url)", () => {
  let server: TandemServer;
  let client: TandemD1Database;
  let db: DrizzleD1Database<typeof schema>;

  before(async () => {
    server = await startTandem();
    client = connect(server.url);
    db = drizzle(client, { schema });
    // Drizzle does not create tables (drizzle-kit does); raw SQL through the driver does.
    await db.run(sql`CREATE TABLE users (
      id INTEGER PRIMARY KEY,
      name TEXT NOT NULL,
      email TEXT NOT NULL UNIQUE,
      active INTEGER NOT NULL DEFAULT 1,
      created_at INTEGER NOT NULL,
      prefs TEXT,
      avatar BLOB,
      logins INTEGER NOT NULL DEFAULT 0
    )`);
    await db.run(sql`CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), title TEXT NOT NULL)`);
  });
  after(async () => {
    await client.close();
    await server.stop();
  });

  test("insert().returning(): boolean, timestamp, json and blob columns come back as JS values", async () => {
    const [ada] = await db
      .insert(users)
      .values({ name: "Ada", email: "ada@example.com", createdAt: T0, prefs: { theme: "dark", tags: ["a", "b"] }, avatar: Buffer.from([0, 1, 254, 255]) })
      .returning();
    assert.deepEqual(ada, {
      id: 1,
      name: "Ada",
      email: "ada@example.com",
      active: true,
      createdAt: T0,
      prefs: { theme: "dark", tags: ["a", "b"] },
      avatar: Buffer.from([0, 1, 254, 255]),
      logins: 0,
    });
    assert.ok(ada!.avatar instanceof Buffer);
    const two = await db
      .insert(users)
      .values([
        { name: "Brian", email: "brian@example.com", active: false, createdAt: T1 },
        { name: "Chloé 🚀", email: "chloe@example.com", createdAt: T1, prefs: { theme: "light", tags: [] } },
      ])
      .returning({ id: users.id, active: users.active, createdAt: users.createdAt });
    assert.deepEqual(two, [
      { id: 2, active: false, createdAt: T1 },
      { id: 3, active: true, createdAt: T1 },
    ]);
    // What SQLite stored: INTEGERs for the boolean and the timestamp, TEXT for json, a BLOB.
    const stored = await db.get<{ a: string; c: string; p: string; b: string; active: number; created: number }>(
      sql`SELECT typeof(${users.active}) AS a, typeof(${users.createdAt}) AS c, typeof(${users.prefs}) AS p,
                 typeof(${users.avatar}) AS b, ${users.active} AS active, ${users.createdAt} AS created
          FROM ${users} WHERE ${users.id} = 1`,
    );
    assert.deepEqual(stored, { a: "integer", c: "integer", p: "text", b: "blob", active: 1, created: T0.getTime() / 1000 });
    // Drizzle's own parameters (a boolean, a Date's seconds) bind as INTEGER, as on D1's type table.
    assert.deepEqual(await db.get(sql`SELECT typeof(${true}) AS b, typeof(${T0.getTime() / 1000}) AS n, typeof(${0.5}) AS r`), {
      b: "integer",
      n: "integer",
      r: "real",
    });
  });

  test("select: get(), all(), where, orderBy, a placeholder in a prepared query, relational queries", async () => {
    const ada = await db.select().from(users).where(eq(users.email, "ada@example.com")).get();
    assert.equal(ada?.name, "Ada");
    assert.deepEqual(ada?.prefs, { theme: "dark", tags: ["a", "b"] });
    assert.equal(await db.select().from(users).where(eq(users.id, 99)).get(), undefined);
    const names = await db.select({ id: users.id, name: users.name, active: users.active }).from(users).orderBy(users.id).all();
    assert.deepEqual(names, [
      { id: 1, name: "Ada", active: true },
      { id: 2, name: "Brian", active: false },
      { id: 3, name: "Chloé 🚀", active: true },
    ]);
    const byId = db.select({ name: users.name }).from(users).where(eq(users.id, sql.placeholder("id"))).prepare();
    assert.deepEqual(await byId.get({ id: 2 }), { name: "Brian" });
    assert.deepEqual(await byId.all({ id: 3 }), [{ name: "Chloé 🚀" }]);
    const after = await db.query.users.findMany({ where: gt(users.createdAt, T0), columns: { name: true, createdAt: true } });
    assert.deepEqual(after, [
      { name: "Brian", createdAt: T1 },
      { name: "Chloé 🚀", createdAt: T1 },
    ]);
    assert.equal((await db.query.users.findFirst({ where: eq(users.id, 1) }))?.avatar?.length, 4);
  });

  test("update() with SQL expressions, and returning()", async () => {
    const once = await db
      .update(users)
      .set({ logins: sql`${users.logins} + 1` })
      .where(eq(users.id, 1))
      .returning({ logins: users.logins });
    assert.deepEqual(once, [{ logins: 1 }]);
    await db.update(users).set({ logins: sql`${users.logins} + 1` }).where(eq(users.id, 1));
    const all = await db
      .update(users)
      .set({ logins: sql`${users.logins} * 10`, active: true, name: sql`upper(${users.name})` })
      .returning({ id: users.id, logins: users.logins, name: users.name, active: users.active });
    assert.deepEqual(all, [
      { id: 1, logins: 20, name: "ADA", active: true },
      { id: 2, logins: 0, name: "BRIAN", active: true },
      { id: 3, logins: 0, name: "CHLOé 🚀", active: true }, // SQLite's upper() is ASCII-only
    ]);
    const r = await db.update(users).set({ active: false }).where(gt(users.id, 1));
    assert.equal(r.meta.changes, 2, "run() result is D1's, with meta");
    assert.equal(r.success, true);
  });

  test("batch(): one result per query; atomic when a later statement hits a constraint", async () => {
    const [inserted, updated, selected, counted] = await db.batch([
      db.insert(posts).values({ userId: 1, title: "first" }).returning({ id: posts.id }),
      db.update(posts).set({ title: sql`${posts.title} || '!'` }).where(eq(posts.userId, 1)),
      db.select({ title: posts.title }).from(posts).where(eq(posts.userId, 1)),
      db.get<{ n: number }>(sql`SELECT count(*) AS n FROM ${posts}`),
    ]);
    assert.deepEqual(inserted, [{ id: 1 }]);
    assert.equal(updated.meta.changes, 1);
    assert.deepEqual(selected, [{ title: "first!" }]);
    assert.deepEqual(counted, { n: 1 });

    const before = await db.select().from(users).orderBy(users.id).all();
    await assert.rejects(
      db.batch([
        db.insert(users).values({ name: "Dan", email: "dan@example.com", createdAt: T1 }),
        db.update(users).set({ logins: sql`${users.logins} + 100` }),
        db.insert(posts).values({ userId: 2, title: "second" }),
        db.insert(users).values({ name: "Ada again", email: "ada@example.com", createdAt: T1 }), // UNIQUE
        db.insert(users).values({ name: "Eve", email: "eve@example.com", createdAt: T1 }),
      ]),
      (e: unknown) => {
        assert.ok(e instanceof TandemError, String(e));
        assert.equal(e.code, "CONSTRAINT");
        assert.equal(e.index, 3);
        assert.equal(e.message, "D1_ERROR: UNIQUE constraint failed: users.email: SQLITE_CONSTRAINT");
        return true;
      },
    );
    assert.deepEqual(await db.select().from(users).orderBy(users.id).all(), before, "no statement of the batch landed");
    assert.deepEqual(await db.select({ title: posts.title }).from(posts).all(), [{ title: "first!" }]);
    assert.equal(await db.$count(users), 3);
  });

  test("delete().returning()", async () => {
    await db.insert(users).values([
      { name: "Temp 1", email: "t1@example.com", createdAt: T1, avatar: Buffer.from("hi") },
      { name: "Temp 2", email: "t2@example.com", createdAt: T1 },
    ]);
    const gone = await db
      .delete(users)
      .where(sql`${users.email} LIKE 't%@example.com'`)
      .returning({ name: users.name, avatar: users.avatar, createdAt: users.createdAt });
    assert.deepEqual(gone, [
      { name: "Temp 1", avatar: Buffer.from("hi"), createdAt: T1 },
      { name: "Temp 2", avatar: null, createdAt: T1 },
    ]);
    assert.deepEqual(await db.delete(users).where(eq(users.id, 99)).returning(), []);
    assert.equal(await db.$count(users), 3);
  });

  test("transaction() is refused, as on D1 (BEGIN is not allowed; batch() is the atomic unit)", async () => {
    await assert.rejects(
      db.transaction(async (tx) => {
        await tx.insert(posts).values({ userId: 1, title: "in a transaction" });
      }),
      (e: unknown) => {
        assert.match(String((e as Error).message), /^Failed query: begin/); // Drizzle's DrizzleQueryError
        const cause = (e as { cause?: unknown }).cause;
        assert.ok(cause instanceof TandemError, String(cause));
        assert.equal(cause.code, "UNSUPPORTED");
        assert.match(cause.message, /^D1_ERROR: transaction control \(BEGIN, COMMIT, ROLLBACK\) is not supported/);
        return true;
      },
    );
    assert.equal(await db.$count(posts, eq(posts.title, "in a transaction")), 0);
  });

  test("raw sql: run(), all(), get(), values(), with parameters and a big integer", async () => {
    const r = await db.run(sql`INSERT INTO posts (user_id, title) VALUES (${3}, ${"raw"}), (${3}, ${"raw 2"})`);
    assert.equal(r.meta.changes, 2);
    assert.equal(r.meta.last_row_id, 3);
    assert.deepEqual(await db.all(sql`SELECT id, title FROM posts WHERE user_id = ${3} ORDER BY id`), [
      { id: 2, title: "raw" },
      { id: 3, title: "raw 2" },
    ]);
    assert.deepEqual(await db.get(sql`SELECT count(*) AS n, max(id) AS top FROM posts`), { n: 3, top: 3 });
    assert.deepEqual(await db.values(sql`SELECT id, title FROM posts ORDER BY id`), [
      [1, "first!"],
      [2, "raw"],
      [3, "raw 2"],
    ]);
    // A snowflake-sized id stays exact through the driver (the client's bigint).
    await db.run(sql`INSERT INTO posts (id, user_id, title) VALUES (${9007199254740993n}, 1, 'big')`);
    assert.deepEqual(await db.get(sql`SELECT id FROM posts WHERE title = 'big'`), { id: 9007199254740993n });
    assert.deepEqual(
      await db.select({ id: posts.id }).from(posts).where(eq(posts.title, "big")).get(),
      { id: 9007199254740993n },
    );
  });
});
