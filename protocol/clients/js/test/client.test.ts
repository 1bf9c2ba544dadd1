// The client's own behaviour against a real tandem server (and, where a test must control the
// server's timing exactly, a scripted fake one): values and options, pipelining, the bounded
// queue, timeouts, reconnect and backoff, close(), routing keys, tokens, TLS and server limits.

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";

import { connect, TandemError, type TandemD1Database } from "../src/index.js";
import { fakeServer, queryResult, tcpProxy } from "./helpers/fake.js";
import { PACKAGE_DIR, startTandem, type TandemServer } from "./helpers/tandem.js";

/** Runs an ES module in a child Node process (nothing else alive in it) and waits for it to exit. */
function runScript(script: string): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.once("error", reject);
    child.once("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

const CLIENT_MODULE = JSON.stringify(path.join(PACKAGE_DIR, "dist/src/index.js"));

const isCode = (code: string, re?: RegExp) => (e: unknown) => {
  assert.ok(e instanceof TandemError, `expected a TandemError, got ${String(e)}`);
  assert.equal(e.code, code, e.message);
  if (re) assert.match(e.message, re);
  return true;
};

describe("against tandem", () => {
  let server: TandemServer;
  let db: TandemD1Database;
  before(async () => {
    server = await startTandem();
    db = connect(server.url);
    await db.exec("CREATE TABLE kv (k INTEGER PRIMARY KEY, v)");
  });
  after(async () => {
    await db.close();
    await server.stop();
  });

  test("integers beyond 2^53: bigint by default, or string, number or error", async () => {
    await db.prepare("INSERT INTO kv VALUES (?, ?)").bind(9007199254740993n, -(2n ** 63n)).run();
    const sql = "SELECT k, v, 7 AS small FROM kv WHERE k = 9007199254740993";
    assert.deepEqual(await db.prepare(sql).first(), { k: 9007199254740993n, v: -(2n ** 63n), small: 7 });
    const asString = connect(server.url, { largeIntegers: "string" });
    const asNumber = connect(server.url, { largeIntegers: "number" });
    const asError = connect(server.url, { largeIntegers: "error" });
    try {
      assert.deepEqual(await asString.prepare(sql).first(), { k: "9007199254740993", v: "-9223372036854775808", small: 7 });
      assert.deepEqual(await asNumber.prepare(sql).first(), { k: 9007199254740992, v: -9223372036854775808, small: 7 });
      await assert.rejects(asError.prepare(sql).first(), isCode("BAD_REQUEST", /beyond JavaScript's safe range/));
      const r = await asString.prepare("INSERT INTO kv (k) VALUES (9007199254740995)").run();
      assert.equal(r.meta.last_row_id, "9007199254740995" as unknown as number, "meta follows the option too");
      assert.deepEqual(await asError.prepare("SELECT 9007199254740991 AS ok").first(), { ok: 9007199254740991 });
    } finally {
      await Promise.all([asString.close(), asNumber.close(), asError.close()]);
    }
  });

  test("blobs: number[] by default, or Uint8Array, or ArrayBuffer", async () => {
    const sql = "SELECT x'00ff7f' AS b, x'' AS e";
    assert.deepEqual(await db.prepare(sql).first(), { b: [0, 255, 127], e: [] });
    const u8 = connect(server.url, { blobs: "uint8array" });
    const ab = connect(server.url, { blobs: "arraybuffer" });
    try {
      assert.deepEqual(await u8.prepare(sql).first(), { b: new Uint8Array([0, 255, 127]), e: new Uint8Array(0) });
      const r = (await ab.prepare(sql).first()) as { b: ArrayBuffer };
      assert.ok(r.b instanceof ArrayBuffer);
      assert.deepEqual(new Uint8Array(r.b), new Uint8Array([0, 255, 127]));
    } finally {
      await Promise.all([u8.close(), ab.close()]);
    }
  });

  test("a large result with big integers mixed in (the slow JSON path) reads back exactly", async () => {
    const rows = await db
      .prepare("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) SELECT i, 9007199254740993 + i AS big, 'é' || i AS s, i * 0.25 AS f FROM n")
      .raw();
    assert.equal(rows.length, 5000);
    rows.forEach((r, k) => assert.deepEqual(r, [k + 1, 9007199254740993n + BigInt(k + 1), `é${k + 1}`, (k + 1) * 0.25]));
  });

  test("errors carry tandem's code, store, batch index and the server's own message", async () => {
    await assert.rejects(db.prepare("INSERT INTO kv (k) VALUES (1), (1)").run(), (e: TandemError) => {
      assert.equal(e.message, "D1_ERROR: UNIQUE constraint failed: kv.k: SQLITE_CONSTRAINT");
      assert.equal(e.code, "CONSTRAINT");
      assert.equal(e.store, "sqlite");
      assert.equal(e.serverMessage, "UNIQUE constraint failed: kv.k");
      assert.equal((e.cause as Error).message, "UNIQUE constraint failed: kv.k: SQLITE_CONSTRAINT");
      return true;
    });
    await assert.rejects(
      db.batch([db.prepare("SELECT 1"), db.prepare("SELECT 1; SELECT 2"), db.prepare("SELECT * FROM nope")]),
      (e: TandemError) => e.code === "SQL_ERROR" && e.index === 2 && e.message === "D1_ERROR: no such table: nope: SQLITE_ERROR",
    );
    await assert.rejects(db.prepare("BEGIN").run(), isCode("UNSUPPORTED", /^D1_ERROR: transaction control/));
    await assert.rejects(db.prepare("SELECT ?").bind(1, 2).run(), isCode("BAD_REQUEST"));
  });

  test("ping()", async () => {
    await db.ping();
  });

  test("1000 concurrent calls go over one connection, each answered correctly", async () => {
    const proxy = await tcpProxy(server.host, server.port);
    const c = connect(proxy.url);
    try {
      const got = await Promise.all(Array.from({ length: 1000 }, (_, i) => c.prepare("SELECT ? * 2 AS x").bind(i).first("x")));
      assert.deepEqual(got, Array.from({ length: 1000 }, (_, i) => i * 2));
      assert.equal(proxy.accepted, 1);
      assert.equal(c.pending, 0);
    } finally {
      await c.close();
      await proxy.close();
    }
  });

  test("a dropped connection: calls in flight fail with UNAVAILABLE, the next call reconnects", async () => {
    const proxy = await tcpProxy(server.host, server.port);
    const c = connect(proxy.url);
    try {
      assert.equal(await c.prepare("SELECT 1 AS one").first("one"), 1);
      // A slow statement is in flight when the connection is cut.
      const slow = c.prepare("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) SELECT count(*) AS c FROM n").first("c");
      const lost = assert.rejects(slow, isCode("UNAVAILABLE", /^D1_ERROR: Network connection lost\. .*may or may not have run/));
      await waitFor(() => proxy.open.size === 1 && c.pending === 1);
      proxy.cut();
      await lost;
      assert.equal(await c.prepare("SELECT 2 AS two").first("two"), 2);
      assert.equal(proxy.accepted, 2);
    } finally {
      await c.close();
      await proxy.close();
    }
  });

  test("the server restarting: queued calls wait for it and then run", async () => {
    const own = await startTandem();
    const c = connect(own.url, { reconnectMinDelayMs: 20, reconnectMaxDelayMs: 200, connectAttempts: 1000 });
    let restarted: TandemServer | undefined;
    try {
      await c.exec("CREATE TABLE r (x); INSERT INTO r VALUES (1)");
      await own.stop(true);
      // The next call finds the connection gone; it waits while reconnect attempts fail.
      const later = c.prepare("SELECT count(*) AS n FROM r").first("n");
      restarted = await startTandem({ port: own.port, dir: own.dir });
      assert.equal(await later, 1);
    } finally {
      await c.close();
      await restarted?.stop();
    }
  });

  test("close() lets calls already made finish, then refuses new ones", async () => {
    const c = connect(server.url);
    const calls = Array.from({ length: 100 }, (_, i) => c.prepare("SELECT ? AS i").bind(i).first("i"));
    const closed = c.close();
    assert.deepEqual(await Promise.all(calls), Array.from({ length: 100 }, (_, i) => i));
    await closed;
    await assert.rejects(c.prepare("SELECT 1").run(), isCode("UNAVAILABLE", /client is closed/));
    await c.close(); // again: fine
  });

  test("destroy() fails calls at once", async () => {
    const c = connect(server.url);
    await c.ping();
    const p = c.prepare("SELECT 1").run();
    c.destroy();
    await assert.rejects(p, isCode("UNAVAILABLE"));
  });

  test("an idle connection is closed after idleTimeoutMs and reopened on demand", async () => {
    const proxy = await tcpProxy(server.host, server.port);
    const c = connect(proxy.url, { idleTimeoutMs: 20 });
    try {
      const closed = proxy.nextClose();
      assert.equal(await c.prepare("SELECT 1 AS x").first("x"), 1);
      await closed; // the client closed it after being idle
      assert.equal(await c.prepare("SELECT 2 AS x").first("x"), 2);
      assert.equal(proxy.accepted, 2);
    } finally {
      await c.close();
      await proxy.close();
    }
  });

  test("bind() follows D1's type table: stored values keep the type bound (typeof) and read back exactly", async () => {
    // A column without affinity, so SQLite stores each value with the type it was bound as.
    await db.exec("CREATE TABLE bound (id INTEGER PRIMARY KEY, v)");
    const i16 = new Int16Array([258, -1]);
    const cases: [unknown, string, unknown][] = [
      // value bound, typeof(v) stored, value read back
      [42, "integer", 42],
      [-7, "integer", -7],
      [0, "integer", 0],
      [-0, "integer", 0],
      [3.0, "integer", 3],
      [2 ** 53 - 1, "integer", 2 ** 53 - 1],
      [-(2 ** 53 - 1), "integer", -(2 ** 53 - 1)],
      [1732540000000000, "integer", 1732540000000000],
      [true, "integer", 1],
      [false, "integer", 0],
      [1.5, "real", 1.5],
      [-0.25, "real", -0.25],
      [0.1 + 0.2, "real", 0.30000000000000004],
      [1e300, "real", 1e300],
      [5e-324, "real", 5e-324],
      [2 ** 53, "real", 2 ** 53],
      [-(2 ** 53 + 2), "real", -(2 ** 53 + 2)],
      [2 ** 63, "real", 2 ** 63],
      [1e21, "real", 1e21],
      [NaN, "null", null],
      [Infinity, "null", null],
      [5n, "integer", 5],
      [2n ** 63n - 1n, "integer", 2n ** 63n - 1n],
      [-(2n ** 63n), "integer", -(2n ** 63n)],
      [9007199254740993n, "integer", 9007199254740993n],
      ["42", "text", "42"],
      ["", "text", ""],
      [null, "null", null],
      [new Uint8Array([0, 255]), "blob", [0, 255]],
      [new Uint8Array([9, 8]).buffer, "blob", [9, 8]],
      [new DataView(new Uint8Array([1, 2, 3]).buffer, 1), "blob", [2, 3]],
      [i16, "blob", Array.from(new Uint8Array(i16.buffer))],
      [[0, 127, 255], "blob", [0, 127, 255]],
    ];
    await db.batch(cases.map(([v], i) => db.prepare("INSERT INTO bound (id, v) VALUES (?, ?)").bind(i, v)));
    const { results } = await db.prepare("SELECT typeof(v) AS t, v FROM bound ORDER BY id").all<{ t: string; v: unknown }>();
    assert.deepEqual(
      results.map((r, i) => [cases[i]![0], r.t, r.v]),
      cases.map(([v, t, back]) => [v, t, back]),
    );
    // An integral number is an INTEGER in expressions too: integer division, equality with the stored INTEGER.
    assert.equal(await db.prepare("SELECT ? / 2 AS half").bind(7).first("half"), 3);
    assert.equal(await db.prepare("SELECT ? / 2 AS half").bind(7.5).first("half"), 3.75);
    assert.equal(await db.prepare("SELECT typeof(v) AS t FROM bound WHERE v = ?").bind(42).first("t"), "integer");
  });

  test("number parameters round-trip exactly", async () => {
    const values = [0.30000000000000004, 3876267126141512.5, 2.818739117790303e-19, -266332876494918.22, 1 / 3, 1732540000000000, 2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, 2 ** 60 + 2 ** 8, -(2 ** 62), 1e20, 123456789012345680000];
    const got = await Promise.all(values.map((v) => db.prepare("SELECT ? AS v").bind(v).first("v")));
    assert.deepEqual(got, values);
  });

  test("an idle client does not keep the process alive", () => {
    const script = `
      import { connect } from ${JSON.stringify(path.join(PACKAGE_DIR, "dist/src/index.js"))};
      const db = connect(${JSON.stringify(server.url)});
      console.log(await db.prepare("SELECT 40 + 2 AS x").first("x"));
    `;
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 60000 });
    assert.equal(out.trim(), "42");
  });
  test("close() settles on its own: a script ending in `await db.close()` exits 0 and runs what follows", async () => {
    // Nothing else keeps the child's event loop alive: the close() promise must settle by itself.
    const r = await runScript(`
      import { connect } from ${CLIENT_MODULE};
      const db = connect(${JSON.stringify(server.url)});
      console.log(JSON.stringify(await db.prepare("SELECT 40 + 2 AS x").first()));
      await db.close();
      console.log("after close");
    `);
    assert.deepEqual({ code: r.code, signal: r.signal, stderr: r.stderr }, { code: 0, signal: null, stderr: "" });
    assert.deepEqual(r.stdout.trim().split("\n"), ['{"x":42}', "after close"]);
  });

  test("close() settles: on a client that never connected, twice, concurrently, with a call in flight", async () => {
    const r = await runScript(`
      import { connect } from ${CLIENT_MODULE};
      const url = ${JSON.stringify(server.url)};
      const unused = connect(url);
      await unused.close();
      console.log("never connected: closed");
      await unused.close();
      console.log("never connected: closed again");
      const db = connect(url);
      await db.ping();
      await Promise.all([db.close(), db.close()]);
      console.log("concurrent closes");
      await db.close();
      console.log("closed once more");
      const busy = connect(url);
      const call = busy.prepare("SELECT 7 AS x").first("x");
      const closed = busy.close();
      console.log("in flight:", await call);
      await closed;
      console.log("closed after the call");
    `);
    assert.deepEqual({ code: r.code, signal: r.signal, stderr: r.stderr }, { code: 0, signal: null, stderr: "" });
    assert.deepEqual(r.stdout.trim().split("\n"), [
      "never connected: closed",
      "never connected: closed again",
      "concurrent closes",
      "closed once more",
      "in flight: 7",
      "closed after the call",
    ]);
  });
});

describe("with a scripted server", () => {
  test("pipelining stops at maxInFlight unanswered requests", async () => {
    let outstanding = 0;
    let maxSeen = 0;
    const held: Record<string, unknown>[] = [];
    const fake = await fakeServer((req, conn) => {
      if (req.op === "hello") return conn.ok(req, { server: "fake", version: "0", protocol: 1 });
      outstanding++;
      maxSeen = Math.max(maxSeen, outstanding);
      held.push(req);
      // Answer only once 4 are waiting, oldest first, so the client must have stopped at 4.
      if (held.length === 4) {
        const r = held.shift()!;
        outstanding--;
        conn.ok(r, queryResult(["v"], [[(r.params as number[])[0]]]));
      }
    });
    const c = connect(fake.url, { maxInFlight: 4 });
    try {
      const calls = Array.from({ length: 20 }, (_, i) => c.prepare("SELECT ?").bind(i).first("v"));
      // The last 3 are answered by draining what is held once the client has sent everything.
      await waitFor(() => fake.connections[0]?.received.length === 21);
      for (const r of held.splice(0)) fake.connections[0]!.ok(r, queryResult(["v"], [[(r.params as number[])[0]]]));
      assert.deepEqual(await Promise.all(calls), Array.from({ length: 20 }, (_, i) => i));
      assert.equal(maxSeen, 4);
    } finally {
      c.destroy();
      await fake.close();
    }
  });

  test("the queue is bounded: beyond maxInFlight + maxQueue calls fail at once with OVERLOADED", async () => {
    const fake = await fakeServer((req, conn) => {
      if (req.op === "hello") conn.ok(req);
      // queries are never answered
    });
    const c = connect(fake.url, { maxInFlight: 2, maxQueue: 3, timeoutMs: 0 });
    try {
      const waiting = Array.from({ length: 5 }, () => c.prepare("SELECT 1").run());
      waiting.forEach((p) => p.catch(() => {}));
      await assert.rejects(c.prepare("SELECT 1").run(), isCode("OVERLOADED", /^D1_ERROR: D1 DB is overloaded\. Too many requests queued\./));
      assert.equal(c.pending, 5);
    } finally {
      c.destroy();
      await fake.close();
    }
  });

  test("timeouts: a call with no answer fails with TIMEOUT; a late answer is dropped, later calls still match", async () => {
    let first: Record<string, unknown> | undefined;
    const fake = await fakeServer((req, conn) => {
      if (req.op === "hello") return conn.ok(req);
      if (!first) {
        first = req; // held until the second request arrives
        return;
      }
      conn.ok(first, queryResult(["v"], [["late"]]));
      conn.ok(req, queryResult(["v"], [["second"]]));
    });
    // 300 ms: long enough for the second call's loopback round trip on a busy machine.
    const c = connect(fake.url, { timeoutMs: 300 });
    try {
      await assert.rejects(c.prepare("SELECT 'first'").first("v"), isCode("TIMEOUT", /did not answer within 300 ms; the statement may or may not have run/));
      assert.equal(await c.prepare("SELECT 'second'").first("v"), "second");
    } finally {
      c.destroy();
      await fake.close();
    }
  });

  test("a server that cannot be reached: the call fails with UNAVAILABLE after connectAttempts tries", async () => {
    const fake = await fakeServer(() => {}, (conn) => conn.socket.destroy());
    const c = connect(fake.url, { connectAttempts: 3, reconnectMinDelayMs: 1, reconnectMaxDelayMs: 5 });
    try {
      await assert.rejects(c.prepare("SELECT 1").run(), isCode("UNAVAILABLE", /cannot connect to 127\.0\.0\.1:\d+/));
      assert.equal(fake.connections.length, 3);
    } finally {
      c.destroy();
      await fake.close();
    }
  });

  test("a server that never answers hello: connectTimeoutMs covers it", async () => {
    const fake = await fakeServer(() => {});
    const c = connect(fake.url, { connectTimeoutMs: 50, connectAttempts: 2, reconnectMinDelayMs: 1 });
    try {
      await assert.rejects(c.ping(), isCode("UNAVAILABLE", /no connection \(and hello answered\) within 50 ms/));
      assert.equal(fake.connections.length, 2);
    } finally {
      c.destroy();
      await fake.close();
    }
  });

  test("routing keys: a hello before the first request of each key, on one connection", async () => {
    const fake = await fakeServer((req, conn) => conn.ok(req, req.op === "query" ? queryResult([], []) : {}));
    const c = connect(`${fake.url}/?routing_key=default&token=t0k`);
    try {
      await c.prepare("SELECT 1").run();
      const u1 = c.withRoutingKey("user-1");
      await Promise.all([u1.prepare("SELECT 2").run(), u1.prepare("SELECT 3").run()]);
      await c.prepare("SELECT 4").run();
      await c.withRoutingKey(undefined).prepare("SELECT 5").run();
      assert.equal(fake.connections.length, 1);
      const seen = fake.connections[0]!.received.map((r) => (r.op === "hello" ? `hello ${r.routing_key ?? "-"} ${r.token}` : r.sql));
      assert.deepEqual(seen, ["hello default t0k", "SELECT 1", "hello user-1 t0k", "SELECT 2", "SELECT 3", "hello default t0k", "SELECT 4", "hello - t0k", "SELECT 5"]);
      assert.match(String(fake.connections[0]!.received[0]!.client), /^tandem-js\//);
    } finally {
      await c.close();
      await fake.close();
    }
  });

  test("close() settles even if the server never closes its side after the client's FIN", async () => {
    let ended = false;
    const fake = await fakeServer(
      (req, conn) => conn.ok(req),
      (conn) => conn.socket.on("end", () => (ended = true)), // and the server keeps its side open
      { allowHalfOpen: true },
    );
    const c = connect(fake.url, { connectTimeoutMs: 50 });
    try {
      await c.ping();
      await c.close(); // ends the socket, then destroys it after connectTimeoutMs
      assert.equal(ended, true, "the client sent its FIN first");
      await assert.rejects(c.ping(), isCode("UNAVAILABLE", /client is closed/));
    } finally {
      c.destroy();
      await fake.close();
    }
  });

  test("a response whose id does not match closes the connection (calls fail, no mix-ups)", async () => {
    const fake = await fakeServer((req, conn) => {
      if (req.op === "hello") return conn.ok(req);
      conn.send({ id: 999999, ok: true, result: queryResult([], []) });
    });
    const c = connect(fake.url);
    try {
      await assert.rejects(c.prepare("SELECT 1").run(), isCode("UNAVAILABLE", /protocol error: response id/));
    } finally {
      c.destroy();
      await fake.close();
    }
  });
});

describe("position tokens (PROTOCOL.md §15), with a scripted server", () => {
  /** Answers every query with the token its SQL names (`SELECT 'sqlite:7'`), or none. */
  const tokenServer = () =>
    fakeServer((req, conn) => {
      if (req.op === "hello") return conn.ok(req, { server: "fake", version: "0", protocol: 1 });
      const sqls = req.op === "batch" ? (req.statements as { sql: string }[]).map((s) => s.sql) : [req.sql as string];
      const seq = (sql: string) => /'([^']*)'/.exec(sql)?.[1];
      const result = (sql: string) => queryResult(["x"], [[1]], seq(sql) ? { seq: seq(sql) } : {});
      conn.ok(req, req.op === "batch" ? { results: sqls.map(result) } : result(sqls[0]!));
    });
  const minSeqs = (conn: { received: Record<string, unknown>[] }, op = "query") =>
    conn.received.filter((r) => r.op === op).map((r) => r.min_seq);

  test("the newest token is resent with every request, per routing key, and in hello after a reconnect", async () => {
    const fake = await tokenServer();
    const db = connect(fake.url);
    try {
      await db.prepare("SELECT 'none'").run(); // no token yet, none sent
      await db.prepare("SELECT 'sqlite:7'").run();
      await db.prepare("SELECT 'sqlite:3'").run(); // lower: the client keeps 7
      await db.prepare("SELECT 'noseq'").run(); // an answer without a token changes nothing
      await db.batch([db.prepare("SELECT 1"), db.prepare("SELECT 'sqlite:9'")]);
      await db.exec("SELECT 'sqlite:10'");
      await db.prepare("SELECT 'd1:2'").run(); // another journal (after a switch-primary): newer
      await db.prepare("SELECT 1").run();
      const conn = fake.connections[0]!;
      assert.deepEqual(minSeqs(conn), [undefined, undefined, "sqlite:7", "sqlite:7", "sqlite:10", "d1:2"]);
      assert.deepEqual(minSeqs(conn, "batch"), ["sqlite:7", "sqlite:9"]);
      // Another routing key has positions of its own; its hello carries none yet.
      const user = db.withRoutingKey("user-1");
      await user.prepare("SELECT 'sqlite:20'").run();
      await user.prepare("SELECT 1").run();
      assert.deepEqual(minSeqs(conn).slice(-2), [undefined, "sqlite:20"]);
      await db.prepare("SELECT 1").run();
      assert.equal(minSeqs(conn).at(-1), "d1:2");
      // The connection drops (tandem restarted, an idle timeout): the next connection's hello
      // carries the newest token, and so do its requests.
      conn.socket.destroy();
      await db.ping().catch(() => {}); // written on the dying connection (and lost), or on the next
      await db.prepare("SELECT 1").run();
      const next = fake.connections.at(-1)!;
      assert.notEqual(next, conn);
      assert.equal(next.received[0]!.op, "hello");
      assert.equal(next.received[0]!.min_seq, "d1:2");
      assert.deepEqual(minSeqs(next), ["d1:2"]);
      await user.prepare("SELECT 1").run();
      const hellos = next.received.filter((r) => r.op === "hello");
      assert.deepEqual(hellos.at(-1), { ...hellos.at(-1), routing_key: "user-1", min_seq: "sqlite:20" });
    } finally {
      db.destroy();
      await fake.close();
    }
  });

  test("withSession(): first-unconstrained, first-primary, a bookmark; getBookmark() follows the answers", async () => {
    const fake = await tokenServer();
    const db = connect(fake.url);
    try {
      await db.prepare("SELECT 'sqlite:50'").run(); // the client's own position: sessions keep theirs
      const conn = fake.connections[0]!;
      const sent = () => minSeqs(conn).at(-1);

      const free = db.withSession(); // "first-unconstrained"
      assert.equal(free.getBookmark(), null);
      await free.prepare("SELECT 'sqlite:5'").run();
      assert.equal(sent(), undefined);
      assert.equal(free.getBookmark(), "sqlite:5");
      await free.prepare("SELECT 'sqlite:4'").first();
      assert.equal(sent(), "sqlite:5");
      assert.equal(free.getBookmark(), "sqlite:5", "a session never goes back");
      await free.batch([free.prepare("SELECT 'sqlite:6'")]);
      assert.equal(minSeqs(conn, "batch").at(-1), "sqlite:5");
      assert.equal(free.getBookmark(), "sqlite:6");

      const primary = db.withSession("first-primary");
      assert.equal(primary.getBookmark(), null);
      await primary.prepare("SELECT 'sqlite:8'").run();
      assert.equal(sent(), "leader");
      await primary.prepare("SELECT 1").run();
      assert.equal(sent(), "sqlite:8");

      const resumed = db.withSession(free.getBookmark()!); // e.g. kept in a cookie
      assert.equal(resumed.getBookmark(), "sqlite:6");
      await resumed.prepare("SELECT 1").raw();
      assert.equal(sent(), "sqlite:6");

      // A bookmark tandem cannot place (D1's own, from before the move) starts at the leader.
      const foreign = db.withSession("00000001-00000002-00004e2f-c3ba1a6b9f4bd0e4c77b7f0a1d4d9a7e");
      assert.equal(foreign.getBookmark(), null);
      await foreign.prepare("SELECT 1").run();
      assert.equal(sent(), "leader");

      assert.throws(() => db.withSession(42 as never), TypeError);
      // The database object itself still sends its own newest position.
      await db.prepare("SELECT 1").run();
      assert.equal(sent(), "sqlite:50");
    } finally {
      db.destroy();
      await fake.close();
    }
  });
});

describe("position tokens against a real tandem (dual-sqlite, D1 out of reach)", () => {
  // Every read goes to D1 (read_percent 100), which cannot be reached, and tandem remembers no
  // routing key's position (key_memory_ms 0): only the client's own token can send a read to
  // SQLite, the leader, which has the write.
  test("after its connection is lost, the client's token still reads its own write; a client without it reads D1", async () => {
    const server = await startTandem({
      config: {
        mode: "dual-sqlite",
        dual: { read_percent: 100, key_memory_ms: 0, read_your_writes_wait_ms: 20 },
        d1: { account_id: "a", database_id: "d", endpoint: "http://127.0.0.1:9", token_env: "TANDEM_JS_D1_TOKEN",
              max_attempts: 1, connect_timeout_ms: 500, request_timeout_ms: 1000 },
        ownership: { wait_for_owner_ms: 0 },
      },
      env: { TANDEM_JS_D1_TOKEN: "not-used" },
    });
    const proxy = await tcpProxy(server.host, server.port);
    const db = connect(`${proxy.url}/?routing_key=user-7`);
    const fresh = connect(`${server.url}/?routing_key=user-7`);
    try {
      await db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
      await db.prepare("INSERT INTO t(v) VALUES (?)").bind("mine").run();
      proxy.cut(); // the connection is gone; the next call reconnects, with the token in its hello
      await waitFor(() => proxy.open.size === 0, "the cut connection closed");
      const mine = await db.prepare("SELECT v FROM t").all();
      assert.deepEqual(mine.results, [{ v: "mine" }]);
      assert.equal(mine.meta.served_by, "tandem-sqlite");
      assert.equal(proxy.accepted, 2);
      await assert.rejects(fresh.prepare("SELECT v FROM t").all(), isCode("UNAVAILABLE"));
    } finally {
      db.destroy();
      fresh.destroy();
      await proxy.close();
      await server.stop();
    }
  });
});

describe("server settings: tokens, TLS, limits", () => {
  test("tokens: the right one works; a wrong or missing one fails with UNAUTHORIZED (no retry loop)", async () => {
    const server = await startTandem({ config: { auth: { token_envs: ["TANDEM_JS_TEST_TOKEN"] } }, env: { TANDEM_JS_TEST_TOKEN: "s3cret/+=" } });
    const good = connect(`${server.url}/?token=${encodeURIComponent("s3cret/+=")}`);
    const viaOption = connect(server.url, { token: "s3cret/+=" });
    const wrong = connect(`${server.url}/?token=nope`);
    const none = connect(server.url);
    try {
      assert.equal(await good.prepare("SELECT 1 AS x").first("x"), 1);
      assert.equal(await viaOption.prepare("SELECT 1 AS x").first("x"), 1);
      await assert.rejects(wrong.prepare("SELECT 1").run(), isCode("UNAUTHORIZED"));
      await assert.rejects(none.prepare("SELECT 1").run(), isCode("UNAUTHORIZED"));
    } finally {
      await Promise.all([good.close(), viaOption.close(), wrong.close(), none.close()]);
      await server.stop();
    }
  });

  test("TLS: verified with ca_file, refused without it (at once), allowed with tls_verify=0", async (t) => {
    const dir = fs.mkdtempSync(path.join(fs.realpathSync(process.env.TMPDIR ?? "/tmp"), "tandem-js-tls-"));
    const cert = path.join(dir, "cert.pem");
    const key = path.join(dir, "key.pem");
    try {
      execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], { stdio: "ignore" });
    } catch {
      fs.rmSync(dir, { recursive: true, force: true });
      t.skip("openssl is not installed");
      return;
    }
    const server = await startTandem({ config: { tls: { enabled: true, cert_file: cert, key_file: key } } });
    const base = `tandem://localhost:${server.port}/?tls=1`;
    const verified = connect(`${base}&ca_file=${encodeURIComponent(cert)}`);
    const byIp = connect(`tandem://127.0.0.1:${server.port}/?tls=1`, { tls: { ca: fs.readFileSync(cert) } });
    const unverified = connect(`${base}&tls_verify=0`);
    const refused = connect(base, { connectAttempts: 1000 });
    const plain = connect(`tandem://127.0.0.1:${server.port}`, { connectAttempts: 2, reconnectMinDelayMs: 1, timeoutMs: 5000 });
    try {
      assert.equal(await verified.prepare("SELECT 'tls' AS x").first("x"), "tls");
      assert.equal(await byIp.prepare("SELECT 'ip' AS x").first("x"), "ip");
      assert.equal(await unverified.prepare("SELECT 'any' AS x").first("x"), "any");
      await assert.rejects(refused.prepare("SELECT 1").run(), isCode("UNAVAILABLE", /certificate/i));
      await assert.rejects(plain.prepare("SELECT 1").run(), (e: TandemError) => e.code === "UNAVAILABLE" || e.code === "TIMEOUT");
    } finally {
      for (const c of [verified, byIp, unverified, refused, plain]) c.destroy();
      await server.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("FRAME_TOO_LARGE fails that call; the client reconnects for the next", async () => {
    const server = await startTandem({ config: { limits: { max_frame_bytes: 4096 } } });
    const c = connect(server.url);
    try {
      await assert.rejects(c.prepare("SELECT ? AS s").bind("x".repeat(10000)).first("s"), isCode("FRAME_TOO_LARGE"));
      assert.equal(await c.prepare("SELECT ? AS s").bind("small").first("s"), "small");
    } finally {
      await c.close();
      await server.stop();
    }
  });

  test("max_connections: a client beyond it gets OVERLOADED after its attempts", async () => {
    const server = await startTandem({ config: { limits: { max_connections: 1 } } });
    const first = connect(server.url);
    const second = connect(server.url, { connectAttempts: 2, reconnectMinDelayMs: 1 });
    try {
      await first.ping(); // holds the only connection
      await assert.rejects(second.ping(), isCode("OVERLOADED"));
    } finally {
      second.destroy();
      await first.close();
      await server.stop();
    }
  });
});

/** Polls a condition (the event loop keeps running) until it holds, or fails after 10 s. */
async function waitFor(cond: () => boolean, what = "condition"): Promise<void> {
  const deadline = Date.now() + 10000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

