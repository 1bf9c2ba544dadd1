// Starts the conformance Worker (test/d1-worker) on a real local D1 with wrangler dev: the
// wrangler that tools/d1-local installs (or WRANGLER_JS), on 127.0.0.1 with a free port, with
// the same no-network settings as tools/d1-local/start.sh, and its state in a temporary folder.
// The wrangler config is written into that folder too, so nothing is written to the work tree.

import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { PACKAGE_DIR } from "./tandem.js";

export function wranglerScript(): string {
  return process.env.WRANGLER_JS
    ? path.resolve(process.env.WRANGLER_JS)
    : path.resolve(PACKAGE_DIR, "../../../tools/d1-local/node_modules/wrangler/bin/wrangler.js");
}

export interface D1Worker {
  url: string;
  dir: string;
  /** Runs one conformance case in the Worker against env.DB. */
  run(name: string): Promise<{ ok: boolean; recorded: [string, unknown][]; error?: string }>;
  stop(): Promise<void>;
}

export async function startD1Worker(timeoutMs = 90000): Promise<D1Worker> {
  const script = wranglerScript();
  if (!fs.existsSync(script)) throw new Error(`wrangler not found at ${script} (run npm ci in tools/d1-local, or set WRANGLER_JS)`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tandem-js-d1-"));
  const main = path.join(PACKAGE_DIR, "dist/test/d1-worker/worker.js");
  const config = {
    name: "tandem-js-conformance",
    main,
    compatibility_date: "2026-01-01",
    workers_dev: false,
    send_metrics: false,
    d1_databases: [
      { binding: "DB", database_name: "tandem-js-conformance", database_id: "00000000-0000-4000-8000-0000000c0de0" },
    ],
  };
  const configPath = path.join(dir, "wrangler.json");
  fs.writeFileSync(configPath, JSON.stringify(config, null, 2));
  const log = fs.openSync(path.join(dir, "wrangler.log"), "a");
  const child = spawn(
    process.execPath,
    [
      script, "dev",
      "--config", configPath,
      "--local",
      "--ip", "127.0.0.1", "--port", "0",
      "--inspector-ip", "127.0.0.1", "--inspector-port", "0",
      "--persist-to", path.join(dir, "state"),
      "--show-interactive-dev-session=false",
      "--log-level", "info",
    ],
    {
      cwd: dir,
      detached: true, // its own process group: wrangler's node processes and workerd stop together
      stdio: ["ignore", "pipe", log],
      env: {
        ...process.env,
        WRANGLER_SEND_METRICS: "false",
        WRANGLER_SEND_ERROR_REPORTS: "false",
        WRANGLER_HIDE_BANNER: "true",
        CLOUDFLARE_CF_FETCH_ENABLED: "false",
        X_LOCAL_EXPLORER: "false",
        WRANGLER_CI_DISABLE_CONFIG_WATCHING: "true",
        WRANGLER_LOG_PATH: path.join(dir, "logs"),
        WRANGLER_REGISTRY_PATH: path.join(dir, "registry"),
        BROWSER: "none",
        FORCE_COLOR: "0",
        NO_COLOR: "1",
      },
    },
  );
  fs.closeSync(log);
  const pgid = child.pid!;
  let output = "";
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));

  const stop = async () => {
    try {
      process.kill(-pgid, "SIGTERM");
    } catch {
      return;
    }
    // Wait until every process of the group has exited (SIGKILL after 10 s, give up after 15 s).
    const start = Date.now();
    let killed = false;
    while (groupAlive(pgid)) {
      const waited = Date.now() - start;
      if (waited > 10000 && !killed) {
        killed = true;
        try {
          process.kill(-pgid, "SIGKILL");
        } catch {
          break;
        }
      }
      if (waited > 15000) {
        process.stderr.write(`d1 worker: process group ${pgid} still running after SIGKILL\n`);
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    await exited;
    fs.rmSync(dir, { recursive: true, force: true });
  };

  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`wrangler dev did not start within ${timeoutMs} ms:\n${output.slice(-3000)}`)), timeoutMs);
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`wrangler dev exited (${code ?? signal}):\n${output.slice(-3000)}${tail(path.join(dir, "wrangler.log"))}`));
      });
      child.stdout!.setEncoding("utf8");
      child.stdout!.on("data", (d: string) => {
        output = (output + d).slice(-20000);
        const m = /Ready on http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      });
    });
    const url = `http://127.0.0.1:${port}`;
    // Ready is printed before the Worker answers: poll /health (each try is a real D1 query).
    const deadline = Date.now() + timeoutMs;
    let last = "";
    for (;;) {
      try {
        const r = await fetch(`${url}/health`, { method: "POST", body: "" });
        const j = (await r.json()) as { ok: boolean };
        if (j.ok) break;
        last = JSON.stringify(j);
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() > deadline) throw new Error(`the conformance Worker did not answer: ${last}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return {
      url,
      dir,
      async run(name: string) {
        const r = await fetch(`${url}/run`, { method: "POST", body: JSON.stringify({ name }) });
        const text = await r.text();
        try {
          return JSON.parse(text);
        } catch {
          return { ok: false, recorded: [], error: `HTTP ${r.status}: ${text.slice(0, 2000)}` };
        }
      },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** Whether a process of group `pgid` is still running. Zombies (exited, waiting to be reaped by
 *  an init that may never do it) count as gone. */
function groupAlive(pgid: number): boolean {
  let entries: string[];
  try {
    entries = fs.readdirSync("/proc");
  } catch {
    try {
      process.kill(-pgid, 0);
      return true;
    } catch {
      return false;
    }
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${e}/stat`, "utf8");
    } catch {
      continue;
    }
    // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(fields[2]) === pgid && fields[0] !== "Z") return true;
  }
  return false;
}

function tail(file: string): string {
  try {
    return "\n" + fs.readFileSync(file, "utf8").slice(-3000);
  } catch {
    return "";
  }
}
