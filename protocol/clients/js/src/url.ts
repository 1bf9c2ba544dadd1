// Connection URLs (protocol/PROTOCOL.md §11):
//   tandem://host:port/?token=…&routing_key=…&tls=1&tls_verify=0&ca_file=…&timeout_ms=…

export interface UrlOptions {
  host: string;
  port: number;
  token?: string;
  routingKey?: string;
  tls: boolean;
  tlsVerify: boolean;
  caFile?: string;
  timeoutMs?: number;
}

const DEFAULT_PORT = 6440;
const KNOWN = new Set(["token", "routing_key", "tls", "tls_verify", "ca_file", "timeout_ms"]);

function bad(url: string, what: string): never {
  throw new TypeError(`invalid tandem URL ${JSON.stringify(redact(url))}: ${what}`);
}

/** The URL with its token replaced, for messages. */
export function redact(url: string): string {
  return url.replace(/([?&]token=)[^&#]*/g, "$1***");
}

function flag(url: string, name: string, v: string): boolean {
  if (v === "1" || v === "true") return true;
  if (v === "0" || v === "false") return false;
  return bad(url, `${name} must be 1 or 0, not ${JSON.stringify(v)}`);
}

/** Parses a tandem:// URL. Anything unknown or malformed throws a TypeError naming it. */
export function parseUrl(url: string): UrlOptions {
  if (typeof url !== "string" || url === "") {
    throw new TypeError("tandem connect(): a tandem:// URL is required (is TANDEM_URL set?)");
  }
  const m = /^tandem:\/\/(\[[^\]]*\]|[^/:?#\[\]]*)(?::([^/?#]*))?(\/)?(?:\?([^#]*))?$/.exec(url);
  if (!m) return bad(url, "expected tandem://host[:port][/][?option=value&…]");
  let host = m[1]!;
  if (host.startsWith("[")) host = host.slice(1, -1);
  if (host === "") return bad(url, "the host is missing");
  let port = DEFAULT_PORT;
  if (m[2] !== undefined) {
    if (!/^\d{1,5}$/.test(m[2]) || Number(m[2]) < 1 || Number(m[2]) > 65535) {
      return bad(url, `bad port ${JSON.stringify(m[2])}`);
    }
    port = Number(m[2]);
  }
  const out: UrlOptions = { host, port, tls: false, tlsVerify: true };
  const seen = new Set<string>();
  for (const part of (m[4] ?? "").split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    let key: string, value: string;
    try {
      key = decodeURIComponent(eq < 0 ? part : part.slice(0, eq));
      value = eq < 0 ? "" : decodeURIComponent(part.slice(eq + 1).replace(/\+/g, " "));
    } catch {
      return bad(url, `bad percent-encoding in ${JSON.stringify(eq < 0 ? part : part.slice(0, eq))}`);
    }
    if (!KNOWN.has(key)) return bad(url, `unknown option ${JSON.stringify(key)}`);
    if (seen.has(key)) return bad(url, `option ${JSON.stringify(key)} given twice`);
    seen.add(key);
    switch (key) {
      case "token":
        out.token = value;
        break;
      case "routing_key":
        out.routingKey = value;
        break;
      case "tls":
        out.tls = flag(url, key, value);
        break;
      case "tls_verify":
        out.tlsVerify = flag(url, key, value);
        break;
      case "ca_file":
        if (value === "") return bad(url, "ca_file is empty");
        out.caFile = value;
        break;
      case "timeout_ms":
        if (!/^\d+$/.test(value) || Number(value) < 1) return bad(url, "timeout_ms must be a positive integer");
        out.timeoutMs = Number(value);
        break;
    }
  }
  return out;
}
