// Unit tests that need no server: URLs, the JSON reader, number encoding, SQL splitting, bind().

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { connect, parseLine, parseUrl, TandemError } from "../src/index.js";
import { numberToJson } from "../src/json.js";
import { splitSql } from "../src/sql.js";

describe("parseUrl", () => {
  test("defaults", () => {
    assert.deepEqual(parseUrl("tandem://db.example.com"), { host: "db.example.com", port: 6440, tls: false, tlsVerify: true });
    assert.deepEqual(parseUrl("tandem://127.0.0.1:7000/"), { host: "127.0.0.1", port: 7000, tls: false, tlsVerify: true });
  });

  test("every option, URL-encoded values, IPv6", () => {
    assert.deepEqual(
      parseUrl("tandem://[::1]:6441/?token=a%2Fb%3D%3D&routing_key=user-42&tls=1&tls_verify=0&ca_file=%2Ftmp%2Fca.pem&timeout_ms=1500"),
      { host: "::1", port: 6441, token: "a/b==", routingKey: "user-42", tls: true, tlsVerify: false, caFile: "/tmp/ca.pem", timeoutMs: 1500 },
    );
    assert.equal(parseUrl("tandem://h?tls=true").tls, true);
    assert.equal(parseUrl("tandem://h?token=a+b").token, "a b", "+ is a space, as in tandem's C++ client");
  });

  test("malformed URLs are refused, naming the problem, without showing the token", () => {
    const bad: [string, RegExp][] = [
      ["http://h:1", /expected tandem:\/\//],
      ["tandem://", /host is missing/],
      ["tandem://h:0", /bad port/],
      ["tandem://h:70000", /bad port/],
      ["tandem://h:x", /bad port/],
      ["tandem://h/?parms=1", /unknown option "parms"/],
      ["tandem://h/?tls=yes", /tls must be 1 or 0/],
      ["tandem://h/?timeout_ms=0", /timeout_ms/],
      ["tandem://h/?token=a&token=b", /given twice/],
      ["tandem://h/?token=%zz", /percent-encoding/],
    ];
    for (const [url, re] of bad) assert.throws(() => parseUrl(url), re, url);
    assert.throws(
      () => parseUrl("tandem://h/?token=s3cret&nope=1"),
      (e: Error) => !e.message.includes("s3cret") && e.message.includes("token=***"),
    );
    assert.throws(() => parseUrl(undefined as unknown as string), /TANDEM_URL/);
    assert.throws(() => connect(undefined), /a tandem:\/\/ URL is required/);
  });
});

describe("parseLine (JSON with exact 64-bit integers)", () => {
  test("integers beyond 2^53 come back as exact bigints; safe ones as numbers", () => {
    assert.deepEqual(parseLine('{"a":9007199254740993,"b":-9223372036854775808,"c":9223372036854775807,"d":9007199254740991,"e":-9007199254740991,"f":1234567890123456}'), {
      a: 9007199254740993n,
      b: -9223372036854775808n,
      c: 9223372036854775807n,
      d: 9007199254740991,
      e: -9007199254740991,
      f: 1234567890123456,
    });
    assert.deepEqual(parseLine("[9007199254740992, 10000000000000000]"), [9007199254740992n, 10000000000000000n], "2^53 itself is not safe");
  });

  test("floats stay numbers (exponent, fraction, 1e999, -0.0)", () => {
    const v = parseLine('[1.0, -0.0, 1e999, -1e999, 12345678901234567.0, 1.2345678901234567e+30, 5e-324, 0.30000000000000004, 1E2, 12345678901234567890e-3]') as number[];
    assert.deepEqual(v, [1, -0, Infinity, -Infinity, 12345678901234568, Number("1.2345678901234567e+30"), 5e-324, 0.30000000000000004, 100, 12345678901234567.89]);
    assert.ok(Object.is(v[1], -0));
  });

  test("strings, escapes, nesting, and long digit runs inside strings", () => {
    const text = '{"s":"12345678901234567890 \\"q\\" \\\\ \\u00e9\\ud83d\\ude80\\n","n":[null,true,false,{}],"__proto__":1,"big":[[99999999999999999]]}';
    const v = parseLine(text) as Record<string, unknown>;
    assert.equal(v.s, '12345678901234567890 "q" \\ é🚀\n');
    assert.deepEqual(v.n, [null, true, false, {}]);
    assert.equal(Object.getPrototypeOf(v), Object.prototype);
    assert.ok(Object.prototype.hasOwnProperty.call(v, "__proto__"));
    assert.deepEqual(v.big, [[99999999999999999n]]);
  });

  test("agrees with JSON.parse on documents without big integers", () => {
    let seed = 42;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    const gen = (depth: number): unknown => {
      const k = Math.floor(rnd() * (depth > 3 ? 5 : 7));
      switch (k) {
        case 0: return null;
        case 1: return rnd() < 0.5;
        case 2: return Math.floor((rnd() - 0.5) * 2 ** 52);
        case 3: {
          const f = (rnd() - 0.5) * 10 ** Math.floor(rnd() * 40 - 20);
          return Number.isInteger(f) && !Number.isSafeInteger(f) ? 0.5 : f; // JSON would write it as an integer
        }
        case 4: return String.fromCharCode(...Array.from({ length: Math.floor(rnd() * 8) }, () => Math.floor(rnd() * 0x3000)));
        case 5: return Array.from({ length: Math.floor(rnd() * 4) }, () => gen(depth + 1));
        default: return Object.fromEntries(Array.from({ length: Math.floor(rnd() * 4) }, (_, i) => [`k${i}`, gen(depth + 1)]));
      }
    };
    for (let i = 0; i < 300; i++) {
      const text = JSON.stringify({ x: gen(0), pad: "1234567890123456789" }); // forces the slow path
      assert.deepEqual(parseLine(text), JSON.parse(text), text);
    }
  });

  test("rejects malformed JSON", () => {
    for (const bad of ['{"a":12345678901234567', '{"a":12345678901234567,}', "[12345678901234567 1]", '"12345678901234567', "[-12345678901234567x]"]) {
      assert.throws(() => parseLine(bad), SyntaxError, bad);
    }
  });
});

describe("numbers bind as D1's type table says: integral ones as INTEGER, others as REAL", () => {
  test("numberToJson", () => {
    // JSON integers: tandem binds them as INTEGER.
    assert.equal(numberToJson(42), "42");
    assert.equal(numberToJson(-7), "-7");
    assert.equal(numberToJson(0), "0");
    assert.equal(numberToJson(-0), "0");
    assert.equal(numberToJson(3.0), "3");
    assert.equal(numberToJson(2 ** 53 - 1), "9007199254740991");
    assert.equal(numberToJson(-(2 ** 53 - 1)), "-9007199254740991");
    assert.equal(numberToJson(-1732540000000000), "-1732540000000000");
    // A `.` or an exponent: tandem binds them as REAL.
    assert.equal(numberToJson(1.5), "1.5");
    assert.equal(numberToJson(-0.25), "-0.25");
    assert.equal(numberToJson(5e-324), "5e-324");
    assert.equal(numberToJson(1e21), "1e+21");
    assert.equal(numberToJson(2 ** 53), "9007199254740992e0", "integral but beyond the safe range: REAL");
    assert.equal(numberToJson(-(2 ** 53)), "-9007199254740992e0");
    assert.equal(numberToJson(2 ** 63), "9223372036854776000e0", "the shortest form that reads back as 2^63");
    // No JSON for these: NULL, as D1's JSON makes them.
    assert.equal(numberToJson(NaN), "null");
    assert.equal(numberToJson(Infinity), "null");
    assert.equal(numberToJson(-Infinity), "null");
  });
});

describe("splitSql", () => {
  test("splits on ; outside strings, identifiers, comments and trigger bodies", () => {
    const sql =
      "SELECT 'a;b' AS \"x;y\", [c;d], `e;f`; -- one; two\n" +
      "CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1; SELECT 2; END;\n" +
      "/* ; */ SELECT :name, ?, @v, $w;;  ;\n" +
      "SELECT 'it''s;'";
    assert.deepEqual(
      splitSql(sql).map((s) => [s.sql, s.hasParams]),
      [
        ["SELECT 'a;b' AS \"x;y\", [c;d], `e;f`", false],
        ["CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1; SELECT 2; END", false],
        ["SELECT :name, ?, @v, $w", true],
        ["SELECT 'it''s;'", false],
      ],
    );
    assert.deepEqual(splitSql("  -- only a comment\n /* and this */ ; ; "), []);
    assert.deepEqual(splitSql("SELECT 1"), [{ sql: "SELECT 1", offset: 0, hasParams: false }]);
  });
});

describe("bind() conversions", () => {
  const db = connect("tandem://127.0.0.1:1");
  const st = db.prepare("SELECT ?");
  test("D1's types are accepted", () => {
    const b = st.bind(1, 1.5, "s", null, true, false, 2n, new Uint8Array([1]), new ArrayBuffer(2), [0, 255], new Uint16Array([258]), new DataView(new ArrayBuffer(1)));
    assert.deepEqual(b.encoded, ["1", "1.5", '"s"', "null", "1", "0", "2", '{"base64":"AQ=="}', '{"base64":"AAA="}', '{"base64":"AP8="}', '{"base64":"AgE="}', '{"base64":"AA=="}']);
  });
  test("others throw D1_TYPE_ERROR from bind(), with code BAD_REQUEST", () => {
    for (const v of [undefined, {}, [256], ["a"], Symbol("s"), () => 1, 2n ** 63n, -(2n ** 63n) - 1n, new Map()]) {
      assert.throws(() => st.bind(v), (e: TandemError) => e instanceof TandemError && /^D1_TYPE_ERROR: Type '/.test(e.message) && e.code === "BAD_REQUEST");
    }
  });
  test("dump() says tandem does not support it; withSession() makes a session", async () => {
    await assert.rejects(db.dump(), (e: TandemError) => e.code === "UNSUPPORTED" && /dump\(\) is not supported by tandem/.test(e.message));
    const s = db.withSession("sqlite:12");
    assert.equal(s.getBookmark(), "sqlite:12");
    assert.equal(typeof s.prepare("SELECT 1").bind, "function");
  });
  test("options are checked", () => {
    assert.throws(() => connect("tandem://h", { largeIntegers: "float" as never }), /largeIntegers/);
    assert.throws(() => connect("tandem://h", { blobs: "buffer" as never }), /blobs/);
    assert.throws(() => connect("tandem://h", { maxInFlight: 0 }), /maxInFlight/);
    assert.throws(() => connect("tandem://h/?ca_file=/nonexistent/ca.pem"), /cannot read ca_file/);
  });
});
