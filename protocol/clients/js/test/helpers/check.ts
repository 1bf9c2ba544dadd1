// Small assertions and a value encoding that run the same in Node and inside a Worker (no Node
// modules), for the conformance cases.

/** Encodes any value as plain JSON, keeping what JSON would lose (bigint, -0, ±Infinity, NaN,
 *  undefined, bytes), so values from both targets can be compared and shipped over HTTP. */
export function encode(v: unknown): unknown {
  switch (typeof v) {
    case "bigint":
      return { $bigint: v.toString() };
    case "number":
      if (Object.is(v, -0)) return { $number: "-0" };
      if (!Number.isFinite(v)) return { $number: String(v) };
      return v;
    case "undefined":
      return { $undefined: true };
    case "function":
      return { $function: v.name };
    case "symbol":
      return { $symbol: String(v) };
    case "object": {
      if (v === null) return null;
      if (v instanceof ArrayBuffer) return { $arraybuffer: Array.from(new Uint8Array(v)) };
      if (v instanceof Uint8Array) return { $uint8array: Array.from(v) };
      if (Array.isArray(v)) return v.map(encode);
      if (v instanceof Error) return { $error: v.message };
      const o: Record<string, unknown> = {};
      for (const k of Object.keys(v)) o[k] = encode((v as Record<string, unknown>)[k]);
      return o;
    }
    default:
      return v;
  }
}

export function show(v: unknown): string {
  return JSON.stringify(encode(v));
}

export class CheckError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CheckError";
  }
}

/** Deep strict equality: Object.is for numbers (so -0 ≠ 0), bigint by value, own keys in any order. */
export function equal(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== typeof b || typeof a !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (a instanceof ArrayBuffer || b instanceof ArrayBuffer || ArrayBuffer.isView(a) || ArrayBuffer.isView(b)) {
    return (
      Object.prototype.toString.call(a) === Object.prototype.toString.call(b) &&
      show(a) === show(b)
    );
  }
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  const ka = Object.keys(a as object);
  const kb = Object.keys(b as object);
  if (ka.length !== kb.length) return false;
  for (const k of ka) {
    if (!Object.prototype.hasOwnProperty.call(b, k)) return false;
    if (!equal((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  }
  return true;
}

export function eq(actual: unknown, expected: unknown, what = "value"): void {
  if (!equal(actual, expected)) {
    throw new CheckError(`${what}: expected ${show(expected)}, got ${show(actual)}`);
  }
}

export function ok(cond: unknown, what: string): void {
  if (!cond) throw new CheckError(what);
}

export function match(text: unknown, re: RegExp, what = "text"): void {
  if (typeof text !== "string" || !re.test(text)) throw new CheckError(`${what}: ${show(text)} does not match ${re}`);
}

/** The error a promise rejects with (fails if it resolves). */
export async function rejects(p: Promise<unknown> | (() => Promise<unknown>), what: string): Promise<Error> {
  try {
    const v = await (typeof p === "function" ? p() : p);
    throw new CheckError(`${what}: expected an error, got ${show(v)}`);
  } catch (e) {
    if (e instanceof CheckError) throw e;
    if (!(e instanceof Error)) throw new CheckError(`${what}: rejected with a non-Error ${show(e)}`);
    return e;
  }
}

/** The error a function throws synchronously (fails if it returns). */
export function throws(fn: () => unknown, what: string): Error {
  let v: unknown;
  try {
    v = fn();
  } catch (e) {
    if (!(e instanceof Error)) throw new CheckError(`${what}: threw a non-Error ${show(e)}`);
    return e;
  }
  throw new CheckError(`${what}: expected a thrown error, got ${show(v)}`);
}
