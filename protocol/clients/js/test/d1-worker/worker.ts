// A Worker that runs the conformance cases (test/conformance.ts) against the local D1's real
// `env.DB` binding. conformance.test.ts starts it with wrangler dev (test/helpers/d1.ts) and
// POSTs {"name": case} to /run; the answer is {ok, recorded, error?} with values encoded by
// helpers/check.ts's encode().

import { cases, resetDatabase, type Ctx } from "../conformance.js";
import { encode } from "../helpers/check.js";
import type { D1DatabaseLike } from "../../src/types.js";

interface Env {
  DB: D1DatabaseLike;
}

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

export default {
  async fetch(req: Request, env: Env): Promise<Response> {
    // Read the body first, always (wrangler dev's proxy misbehaves otherwise; see tools/d1-local).
    const body = await req.text();
    const path = new URL(req.url).pathname;
    if (path === "/health") {
      const one = await env.DB.prepare("SELECT 1 AS one").first("one");
      return json({ ok: one === 1, cases: cases.length });
    }
    if (path !== "/run") return json({ ok: false, error: "no such route" }, 404);
    const { name } = JSON.parse(body) as { name: string };
    const c = cases.find((x) => x.name === name);
    if (!c) return json({ ok: false, error: `no such case: ${name}` }, 404);
    const recorded: [string, unknown][] = [];
    const ctx: Ctx = { target: "d1", db: env.DB, same: (label, value) => recorded.push([label, encode(value)]) };
    try {
      await resetDatabase(env.DB);
      await c.run(ctx);
      return json({ ok: true, recorded });
    } catch (e) {
      const err = e as Error;
      return json({ ok: false, recorded, error: `${err.message}\n${err.stack ?? ""}` });
    }
  },
};
