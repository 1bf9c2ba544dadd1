// Point-select benchmark: this client (one connection; 1, 16 and 64 calls in flight) against
// the C++ client (`tandem bench --url …`, which runs one blocking connection per thread).
//
//   npm run bench -- [--seconds 2] [--rows 10000] [--url tandem://…] [--no-cpp]
//
// Without --url it starts its own tandem (TANDEM_BIN, default build/proxy/tandem) on a temporary
// database. The query and table are tandem bench's: SELECT id, name, score, payload FROM bench
// WHERE id = ? (payload is a 32-byte blob), random ids. Client and server share the machine.

import { execFileSync } from "node:child_process";
import * as os from "node:os";
import { performance } from "node:perf_hooks";

import { connect, type TandemD1Database } from "../src/index.js";
import { startTandem, tandemBinary, type TandemServer } from "../test/helpers/tandem.js";

const args = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1]! : dflt;
};
const seconds = Number(opt("seconds", "2"));
const rows = Number(opt("rows", "10000"));
const withCpp = !args.includes("--no-cpp");

const SELECT = "SELECT id, name, score, payload FROM bench WHERE id = ?";

async function load(db: TandemD1Database): Promise<void> {
  await db.exec(
    "CREATE TABLE IF NOT EXISTS bench(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL, payload BLOB)\n" +
      "CREATE TABLE IF NOT EXISTS bench_insert(id INTEGER PRIMARY KEY, worker INTEGER, n INTEGER, name TEXT)",
  );
  const ins = db.prepare("INSERT OR REPLACE INTO bench VALUES (?, ?, ?, randomblob(32))");
  for (let i = 1; i <= rows; i += 500) {
    const batch = [];
    for (let k = i; k < i + 500 && k <= rows; k++) batch.push(ins.bind(BigInt(k), `user-${k}`, k * 0.5));
    await db.batch(batch);
  }
}

interface Figures {
  ops: number;
  p50: number;
  p99: number;
}

/** `inFlight` workers per client, each issuing point selects back to back, for `secs`. */
async function run(dbs: TandemD1Database | TandemD1Database[], inFlight: number, secs: number): Promise<Figures> {
  const clients = Array.isArray(dbs) ? dbs : [dbs];
  const lat: number[] = [];
  let stop = false;
  let seed = 12345;
  const nextId = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return BigInt((seed % rows) + 1);
  };
  const worker = async (db: TandemD1Database) => {
    const st = db.prepare(SELECT);
    while (!stop) {
      const t0 = performance.now();
      const r = await st.bind(nextId()).first<{ id: number }>();
      lat.push(performance.now() - t0);
      if (!r) throw new Error("row not found");
    }
  };
  const start = performance.now();
  const timer = setTimeout(() => (stop = true), secs * 1000);
  await Promise.all(clients.flatMap((db) => Array.from({ length: inFlight }, () => worker(db))));
  clearTimeout(timer);
  const elapsed = (performance.now() - start) / 1000;
  lat.sort((a, b) => a - b);
  return {
    ops: lat.length / elapsed,
    p50: lat[Math.floor(lat.length / 2)]! * 1000,
    p99: lat[Math.min(lat.length - 1, Math.floor((lat.length * 99) / 100))]! * 1000,
  };
}

function row(name: string, f: Figures): string {
  return `${name.padEnd(44)} ${f.ops.toFixed(0).padStart(9)} ${f.p50.toFixed(1).padStart(9)} ${f.p99.toFixed(1).padStart(9)}`;
}

async function main(): Promise<void> {
  let server: TandemServer | undefined;
  let url = opt("url", "");
  if (!url) {
    server = await startTandem({ config: { limits: { max_connections: 4096 }, sqlite: { synchronous: "NORMAL" } } });
    url = server.url;
  }
  const db = connect(url);
  try {
    await load(db);
    await run(db, 16, Math.min(0.5, seconds)); // warm up
    console.log(`tandem-js bench: point select, ${rows} rows, ${seconds} s per run, node ${process.version}`);
    console.log(`${"client".padEnd(44)} ${"ops/s".padStart(9)} ${"p50 us".padStart(9)} ${"p99 us".padStart(9)}`);
    for (const n of [1, 16, 64]) console.log(row(`js: 1 connection, ${n} in flight`, await run(db, n, seconds)));
    // Like tandem bench's 16 connections: 16 clients (one connection each), one call in flight each.
    const many = Array.from({ length: 16 }, () => connect(url));
    try {
      console.log(row("js: 16 connections x 1 in flight", await run(many, 1, seconds)));
    } finally {
      await Promise.all(many.map((c) => c.close()));
    }
    if (withCpp) {
      const out = execFileSync(tandemBinary(), ["bench", "--url", url, "--connections", "1,16", "--seconds", String(seconds), "--rows", String(rows)], {
        encoding: "utf8",
        cwd: os.tmpdir(),
      });
      for (const line of out.split("\n")) {
        const m = /^point-select\s+(\d+) \|.*\| +(\d+) +([\d.]+) +([\d.]+) \|/.exec(line);
        if (m) console.log(row(`c++ (tandem bench): ${m[1]} connections x 1`, { ops: Number(m[2]), p50: Number(m[3]), p99: Number(m[4]) }));
      }
    }
  } finally {
    await db.close();
    await server?.stop();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
