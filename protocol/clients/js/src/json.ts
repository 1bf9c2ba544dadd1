// JSON for protocol v1 lines.
//
// tandem sends 64-bit integers as exact JSON integers. JSON.parse would round anything beyond
// 2^53, so parseLine() only uses JSON.parse when the line cannot hold such an integer, and
// otherwise parses the line itself, returning integers outside the safe range as `bigint`.
// Floats always come back as numbers (`1e999` is Infinity, `-0.0` is -0).

/** A JSON value as parseLine() returns it: unsafe integers are bigints. */
export type Json = null | boolean | number | bigint | string | Json[] | { [key: string]: Json };

// A run of 16+ digits that is not part of a fraction or exponent: the only way a JSON text can
// hold an integer beyond 2^53 (9007199254740992 has 16 digits). It may also match inside a
// string, which only costs the slow path.
const LONG_INT = /(?<![\d.eE+-])-?\d{16,}(?![\d.eE])/;

/** Parses one JSON text, keeping integers beyond ±(2^53 − 1) exact as bigint. */
export function parseLine(text: string): Json {
  if (!LONG_INT.test(text)) return JSON.parse(text) as Json;
  return new Parser(text).parseDocument();
}

class Parser {
  private i = 0;
  constructor(private readonly s: string) {}

  parseDocument(): Json {
    const v = this.value();
    this.ws();
    if (this.i !== this.s.length) this.fail("unexpected text after the value");
    return v;
  }

  private fail(what: string): never {
    throw new SyntaxError(`invalid JSON at offset ${this.i}: ${what}`);
  }

  private ws(): void {
    const s = this.s;
    let i = this.i;
    for (;;) {
      const c = s.charCodeAt(i);
      if (c === 32 || c === 10 || c === 13 || c === 9) i++;
      else break;
    }
    this.i = i;
  }

  private value(): Json {
    this.ws();
    const c = this.s.charCodeAt(this.i);
    switch (c) {
      case 123 /* { */: {
        this.i++;
        const o: { [key: string]: Json } = {};
        this.ws();
        if (this.s.charCodeAt(this.i) === 125) {
          this.i++;
          return o;
        }
        for (;;) {
          this.ws();
          if (this.s.charCodeAt(this.i) !== 34) this.fail("expected a string key");
          const k = this.string();
          this.ws();
          if (this.s.charCodeAt(this.i) !== 58) this.fail("expected ':'");
          this.i++;
          const v = this.value();
          // Own data property even for "__proto__", as JSON.parse does.
          if (k === "__proto__") Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
          else o[k] = v;
          this.ws();
          const d = this.s.charCodeAt(this.i++);
          if (d === 125) return o;
          if (d !== 44) this.fail("expected ',' or '}'");
        }
      }
      case 91 /* [ */: {
        this.i++;
        const a: Json[] = [];
        this.ws();
        if (this.s.charCodeAt(this.i) === 93) {
          this.i++;
          return a;
        }
        for (;;) {
          a.push(this.value());
          this.ws();
          const d = this.s.charCodeAt(this.i++);
          if (d === 93) return a;
          if (d !== 44) this.fail("expected ',' or ']'");
        }
      }
      case 34 /* " */:
        return this.string();
      case 116 /* t */:
        return this.word("true", true);
      case 102 /* f */:
        return this.word("false", false);
      case 110 /* n */:
        return this.word("null", null);
      default:
        return this.number();
    }
  }

  private word<T extends Json>(w: string, v: T): T {
    if (!this.s.startsWith(w, this.i)) this.fail(`expected ${w}`);
    this.i += w.length;
    return v;
  }

  private string(): string {
    const s = this.s;
    const start = this.i; // at the opening quote
    let i = start + 1;
    let escaped = false;
    for (;;) {
      const c = s.charCodeAt(i);
      if (Number.isNaN(c)) {
        this.i = i;
        this.fail("unterminated string");
      }
      if (c === 34) break;
      if (c === 92) {
        escaped = true;
        i += 2;
        continue;
      }
      i++;
    }
    this.i = i + 1;
    if (!escaped) return s.slice(start + 1, i);
    return JSON.parse(s.slice(start, i + 1)) as string;
  }

  private number(): number | bigint {
    const s = this.s;
    const start = this.i;
    let i = start;
    if (s.charCodeAt(i) === 45) i++;
    const digits0 = i;
    while (isDigit(s.charCodeAt(i))) i++;
    if (i === digits0) this.fail("unexpected character");
    let integer = true;
    if (s.charCodeAt(i) === 46) {
      integer = false;
      i++;
      while (isDigit(s.charCodeAt(i))) i++;
    }
    const e = s.charCodeAt(i);
    if (e === 101 || e === 69) {
      integer = false;
      i++;
      const sign = s.charCodeAt(i);
      if (sign === 43 || sign === 45) i++;
      while (isDigit(s.charCodeAt(i))) i++;
    }
    this.i = i;
    const text = s.slice(start, i);
    if (!integer) return Number(text);
    if (i - digits0 <= 15) return Number(text);
    const big = BigInt(text);
    if (big >= -MAX_SAFE && big <= MAX_SAFE) return Number(big);
    return big;
  }
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** True when a bigint fits SQLite's INTEGER (64-bit signed). */
export function fitsInt64(v: bigint): boolean {
  return v >= INT64_MIN && v <= INT64_MAX;
}

/**
 * A JS number as a protocol value, bound as D1's documented type table says
 * (https://developers.cloudflare.com/d1/worker-api/#type-conversion): an integral number in the
 * safe range (Number.isSafeInteger, so ±(2^53 − 1)) binds as INTEGER and is sent as a JSON
 * integer (`42`, `-0` as `0`); any other number binds as REAL and is sent with a `.` or an
 * exponent, which keeps it REAL on tandem (PROTOCOL.md §4). NaN and ±Infinity bind as NULL,
 * which is what D1's JSON makes of them. Use a bigint for an exact INTEGER beyond 2^53.
 */
export function numberToJson(n: number): string {
  if (!Number.isFinite(n)) return "null";
  if (Number.isSafeInteger(n)) return String(n); // String(-0) is "0"
  const t = String(n); // shortest round-trip form
  if (/[.eE]/.test(t)) return t;
  // An integral double beyond 2^53 (16 to 21 digits): REAL. Written as `NNNe0`, not `NNN.0`:
  // the `.0` lengthens the mantissa, and tandem's JSON reader (Boost.JSON 1.81) can then read
  // the value back 1 ulp off (it did for 1732540000000000.0).
  return `${t}e0`;
}
