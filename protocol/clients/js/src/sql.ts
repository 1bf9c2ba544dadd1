// Splits SQL text into statements the way sqlite3_complete() sees statement ends: a `;` inside
// a string, a quoted identifier, a comment or a CREATE TRIGGER … BEGIN … END body does not end
// a statement. Statements that are only whitespace and comments are dropped. Used by exec().

export interface SqlStatement {
  /** The statement's text, trimmed, without its `;`. */
  sql: string;
  /** Offset of the statement's first character in the input. */
  offset: number;
  /** Whether it has parameters (`?`, `?NNN`, `:name`, `@name`, `$name`). */
  hasParams: boolean;
}

// Tokens and transitions of sqlite3_complete()'s state machine (sqlite/src/complete.c).
const enum Tk {
  Semi,
  Ws,
  Other,
  Explain,
  Create,
  Temp,
  Trigger,
  End,
}
// states: 0 INVALID, 1 START, 2 NORMAL, 3 EXPLAIN, 4 CREATE, 5 TRIGGER, 6 SEMI, 7 END
const TRANS: readonly (readonly number[])[] = [
  [1, 0, 2, 3, 4, 2, 2, 2],
  [1, 1, 2, 3, 4, 2, 2, 2],
  [1, 2, 2, 2, 2, 2, 2, 2],
  [1, 3, 3, 2, 4, 2, 2, 2],
  [1, 4, 2, 2, 2, 4, 5, 2],
  [6, 5, 5, 5, 5, 5, 5, 5],
  [6, 6, 5, 5, 5, 5, 5, 7],
  [1, 7, 5, 5, 5, 5, 5, 5],
];
const KEYWORDS: Record<string, Tk> = {
  explain: Tk.Explain,
  create: Tk.Create,
  temp: Tk.Temp,
  temporary: Tk.Temp,
  trigger: Tk.Trigger,
  end: Tk.End,
};

const WS = /\s/;
const IDENT_START = /[A-Za-z_\u0080-\uffff]/;
const IDENT = /[A-Za-z0-9_$\u0080-\uffff]/;

export function splitSql(sql: string): SqlStatement[] {
  const out: SqlStatement[] = [];
  const n = sql.length;
  let state = 0;
  let i = 0;
  let codeAt = -1; // offset of the current statement's first code token, -1 if none yet
  let hasParams = false;
  const push = (end: number) => {
    if (codeAt >= 0) out.push({ sql: sql.slice(codeAt, end).trim(), offset: codeAt, hasParams });
    codeAt = -1;
    hasParams = false;
  };
  while (i < n) {
    const c = sql[i]!;
    const at = i;
    let tk: Tk = Tk.Other;
    if (c === ";") {
      tk = Tk.Semi;
      i++;
    } else if (WS.test(c)) {
      tk = Tk.Ws;
      i++;
    } else if (c === "-" && sql[i + 1] === "-") {
      tk = Tk.Ws;
      const e = sql.indexOf("\n", i);
      i = e < 0 ? n : e + 1;
    } else if (c === "/" && sql[i + 1] === "*") {
      tk = Tk.Ws;
      const e = sql.indexOf("*/", i + 2);
      i = e < 0 ? n : e + 2;
    } else if (c === "'" || c === '"' || c === "`" || c === "[") {
      const close = c === "[" ? "]" : c;
      let j = i + 1;
      for (;;) {
        const e = sql.indexOf(close, j);
        if (e < 0) {
          j = n;
          break;
        }
        if (close !== "]" && sql[e + 1] === close) {
          j = e + 2; // doubled quote
          continue;
        }
        j = e + 1;
        break;
      }
      i = j;
    } else if (IDENT_START.test(c)) {
      let j = i + 1;
      while (j < n && IDENT.test(sql[j]!)) j++;
      tk = KEYWORDS[sql.slice(i, j).toLowerCase()] ?? Tk.Other;
      i = j;
    } else if (c === "?" || ((c === ":" || c === "@" || c === "$") && i + 1 < n && IDENT.test(sql[i + 1]!))) {
      hasParams = true;
      i++;
    } else {
      i++;
    }
    if (tk !== Tk.Ws && tk !== Tk.Semi && codeAt < 0) codeAt = at;
    state = TRANS[state]![tk]!;
    if (tk === Tk.Semi && state === 1) {
      push(i - 1);
    }
  }
  push(n);
  return out;
}
