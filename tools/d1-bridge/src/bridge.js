// tandem d1-bridge: a Worker that binds one D1 database (DB) and lets tandem reach it over HTTPS
// without D1's REST API (and its account-wide rate limit), with D1's read replicas through the
// Sessions API. The protocol is in ../README.md; the code in core.js.
//
// A module Worker's named exports are entrypoints, so this file exports only the handler.
import { bridge, limitsOf } from "./core.js";

export default {
  async fetch(req, env) {
    // Always read the body, even for an early answer (wrangler dev's proxy breaks otherwise).
    const text = await req.text();
    return bridge(req, text, env.DB, [env.TANDEM_BRIDGE_SECRET, env.TANDEM_BRIDGE_SECRET_NEXT], limitsOf(env));
  },
};
