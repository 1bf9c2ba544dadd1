// Runs the conformance cases (conformance.ts) against tandem through this client, then the same
// cases against the local D1's real env.DB binding inside a Worker, then compares what each case
// recorded with same() on both.
//
// The D1 part needs wrangler from tools/d1-local (npm ci there). Without it, it is skipped,
// unless TANDEM_JS_REQUIRE_D1=1 (run-tests.sh sets it), which makes its absence a failure.

import assert from "node:assert/strict";
import * as fs from "node:fs";
import { after, before, describe, test } from "node:test";

import { connect, type TandemD1Database } from "../src/index.js";
import { cases, resetDatabase } from "./conformance.js";
import { encode } from "./helpers/check.js";
import { startD1Worker, wranglerScript, type D1Worker } from "./helpers/d1.js";
import { startTandem, type TandemServer } from "./helpers/tandem.js";

type Recording = [string, unknown][];
const recorded: { tandem: Map<string, Recording>; d1: Map<string, Recording> } = { tandem: new Map(), d1: new Map() };

const requireD1 = process.env.TANDEM_JS_REQUIRE_D1 === "1";
const haveWrangler = fs.existsSync(wranglerScript());
const d1Skip = !haveWrangler && !requireD1 ? `wrangler not installed at ${wranglerScript()} (npm ci in tools/d1-local)` : false;

describe("conformance: tandem", () => {
  let server: TandemServer | undefined;
  let db: TandemD1Database | undefined;
  before(async () => {
    server = await startTandem();
    db = connect(server.url);
  });
  after(async () => {
    await db?.close();
    await server?.stop();
  });
  for (const c of cases) {
    test(c.name, async () => {
      const rec: Recording = [];
      await resetDatabase(db!);
      await c.run({ target: "tandem", db: db!, same: (label, value) => rec.push([label, encode(value)]) });
      recorded.tandem.set(c.name, rec);
    });
  }
});

describe("conformance: local D1 (env.DB in a Worker)", { skip: d1Skip }, () => {
  let worker: D1Worker | undefined;
  before(async () => {
    worker = await startD1Worker();
  });
  after(async () => {
    await worker?.stop();
  });
  for (const c of cases) {
    test(c.name, async () => {
      const r = await worker!.run(c.name);
      if (!r.ok) throw new Error(`in the Worker: ${r.error}`);
      recorded.d1.set(c.name, r.recorded);
    });
  }
});

describe("conformance: tandem and D1 give the same answers", { skip: d1Skip }, () => {
  for (const c of cases) {
    test(c.name, (t) => {
      const a = recorded.tandem.get(c.name);
      const b = recorded.d1.get(c.name);
      if (!a || !b) {
        t.skip(`the case failed on ${!a ? "tandem" : "D1"}`);
        return;
      }
      assert.deepStrictEqual(a, b, "tandem (actual) vs D1 (expected)");
    });
  }
});
