// Starts a real tandem server for a test: `tandem serve` on 127.0.0.1 port 0, in a temporary
// folder, from TANDEM_BIN (default: the release build, ../../../build/proxy/tandem from the package).

import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

/** The package folder (protocol/clients/js). */
export const PACKAGE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

export function tandemBinary(): string {
  return process.env.TANDEM_BIN
    ? path.resolve(process.env.TANDEM_BIN)
    : path.resolve(PACKAGE_DIR, "../../../build/proxy/tandem");
}

/** How long stop() and kill() wait for the process to exit before they fail (ASan builds are slow). */
const STOP_TIMEOUT_MS = 30000;

export interface TandemServer {
  host: string;
  port: number;
  url: string;
  dir: string;
  /** SIGTERM (once), then wait for the process to exit; removes `dir` unless keepDir. Fails if it does
   *  not exit within STOP_TIMEOUT_MS or exits with anything but 0. */
  stop(keepDir?: boolean): Promise<void>;
  /** SIGKILL (no graceful shutdown), then wait for the process to exit; removes `dir` unless keepDir. */
  kill(keepDir?: boolean): Promise<void>;
}

export interface ServerOptions {
  /** Extra configuration merged into the generated config file. */
  config?: Record<string, unknown>;
  /** Environment variables for the server (e.g. tokens named in auth.token_envs). */
  env?: Record<string, string>;
  /** Listen on this port instead of a free one (used to restart on the same port). */
  port?: number;
  /** Reuse this folder (and its database) instead of a new temporary one (it is removed by stop()). */
  dir?: string;
}

export async function startTandem(options: ServerOptions = {}): Promise<TandemServer> {
  const bin = tandemBinary();
  if (!fs.existsSync(bin)) {
    throw new Error(`tandem binary not found at ${bin}: build it (./scripts/build.sh release) or set TANDEM_BIN`);
  }
  const dir = options.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), "tandem-js-test-"));
  const config = merge(
    {
      listen: { host: "127.0.0.1", port: options.port ?? 0 },
      sqlite: { path: path.join(dir, "test.db"), synchronous: "OFF" },
      log: { level: "warn" },
      admin: { enabled: false },
      control: { enabled: false },
    },
    options.config ?? {},
  );
  const configPath = path.join(dir, `tandem-${Date.now()}-${Math.random().toString(36).slice(2)}.json`);
  fs.writeFileSync(configPath, JSON.stringify(config, null, 2));
  const child = spawn(bin, ["serve", "--config", configPath], {
    env: { ...process.env, ...(options.env ?? {}) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (d: string) => {
    stderr = (stderr + d).slice(-4000);
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = "";
    const onExit = (code: number | null, signal: string | null) =>
      reject(new Error(`tandem serve exited (${code ?? signal}) before listening:\n${stderr}`));
    child.once("exit", onExit);
    child.once("error", reject);
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (d: string) => {
      out += d;
      const m = /tandem listening on ([^\s]+):(\d+)/.exec(out);
      if (m) {
        child.off("exit", onExit);
        resolve(Number(m[2]));
      }
    });
  });
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
  /** Sends `sig` once and waits for the exit; fails (sending nothing more) if it does not come. */
  const signal = async (sig: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(sig);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        // Let the test process end anyway; the server is left running for whoever looks into it.
        child.stdout!.destroy();
        child.stderr!.destroy();
        child.unref();
        reject(new Error(`tandem (pid ${child.pid}) did not exit within ${STOP_TIMEOUT_MS} ms of ${sig}; its stderr:\n${stderr}`));
      }, STOP_TIMEOUT_MS);
    });
    try {
      await Promise.race([exited, late]);
    } finally {
      clearTimeout(timer);
    }
  };
  return {
    host: "127.0.0.1",
    port,
    url: `tandem://127.0.0.1:${port}`,
    dir,
    stop: async (keepDir = false) => {
      await signal("SIGTERM");
      // A graceful stop exits 0; anything else (a crash, a sanitizer report) fails the test.
      if (child.exitCode !== 0) {
        throw new Error(`tandem (pid ${child.pid}) exited with ${child.exitCode ?? child.signalCode} on SIGTERM; its stderr:\n${stderr}`);
      }
      if (!keepDir) fs.rmSync(dir, { recursive: true, force: true });
    },
    kill: async (keepDir = false) => {
      await signal("SIGKILL");
      if (!keepDir) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** `over` merged into `base`, objects key by key (so {sqlite: {synchronous}} keeps sqlite.path). */
function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] =
      v && typeof v === "object" && !Array.isArray(v) && b && typeof b === "object" && !Array.isArray(b)
        ? merge(b as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

export type { ChildProcess };
