// Position tokens (PROTOCOL.md §15): tandem's `meta.seq`, "<journal>:<seq>" such as "sqlite:42".
// The client keeps the newest it has seen and sends it back as `min_seq`, so a read after a
// reconnect (or on another connection) sees no older data than this client already saw.

const TOKEN = /^([a-z0-9_-]{1,32}):(0|[1-9][0-9]{0,18})$/;

/** Whether `s` has the form of a tandem position token. */
export function isToken(s: unknown): s is string {
  return typeof s === "string" && TOKEN.test(s);
}

/**
 * The newer of two tokens: the higher seq of the same journal; of two journals (after a
 * switch-primary), the one seen later, `seen`.
 */
export function newerToken(held: string | null | undefined, seen: string): string {
  if (held == null) return seen;
  const a = TOKEN.exec(held);
  const b = TOKEN.exec(seen);
  if (!a || !b || a[1] !== b[1]) return seen;
  return BigInt(b[2]!) > BigInt(a[2]!) ? seen : held;
}

/** The token of a query or batch result (each result of a batch carries the batch's). */
export function tokenOf(result: unknown): string | undefined {
  const r = result as { meta?: { seq?: unknown }; results?: { meta?: { seq?: unknown } }[] } | null;
  const seq = r?.meta?.seq ?? r?.results?.[r.results.length - 1]?.meta?.seq;
  return isToken(seq) ? seq : undefined;
}

/** The newest token per routing key (undefined: the connection's own), for at most `max` keys. */
export class Positions {
  private readonly byKey = new Map<string | undefined, string>();
  constructor(private readonly max = 1024) {}

  get(key: string | undefined): string | undefined {
    return this.byKey.get(key);
  }

  note(key: string | undefined, token: string): void {
    const held = this.byKey.get(key);
    this.byKey.delete(key); // re-inserted last: the least recently noted key is the first
    this.byKey.set(key, newerToken(held, token));
    if (this.byKey.size > this.max) this.byKey.delete(this.byKey.keys().next().value as string | undefined);
  }

  get size(): number {
    return this.byKey.size;
  }
}
