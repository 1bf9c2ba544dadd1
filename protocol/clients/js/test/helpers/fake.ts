// Test doubles on 127.0.0.1 port 0: a scriptable protocol server (to see exactly what the client
// sends and answer when and how a test wants), and a TCP proxy in front of a real tandem (to
// count connections and cut them).

import * as net from "node:net";

export interface FakeConnection {
  socket: net.Socket;
  /** Every request line received on this connection, parsed. */
  received: Record<string, unknown>[];
  send(obj: unknown): void;
  /** Answers a request with ok:true and this result. */
  ok(req: Record<string, unknown>, result?: unknown): void;
}

export interface FakeServer {
  port: number;
  url: string;
  connections: FakeConnection[];
  close(): Promise<void>;
}

/** `onLine` is called for each request line; by default hello and ping are answered. */
export async function fakeServer(
  onLine: (req: Record<string, unknown>, conn: FakeConnection) => void,
  onConnect?: (conn: FakeConnection) => void,
  serverOptions: net.ServerOpts = {},
): Promise<FakeServer> {
  const connections: FakeConnection[] = [];
  const server = net.createServer(serverOptions, (socket) => {
    socket.setEncoding("utf8");
    const conn: FakeConnection = {
      socket,
      received: [],
      send: (obj) => {
        if (!socket.destroyed) socket.write(JSON.stringify(obj) + "\n");
      },
      ok: (req, result = {}) => conn.send({ id: req.id, ok: true, result }),
    };
    connections.push(conn);
    socket.on("error", () => {});
    let rest = "";
    socket.on("data", (chunk: string) => {
      rest += chunk;
      let nl: number;
      while ((nl = rest.indexOf("\n")) >= 0) {
        const line = rest.slice(0, nl);
        rest = rest.slice(nl + 1);
        const req = JSON.parse(line) as Record<string, unknown>;
        conn.received.push(req);
        onLine(req, conn);
      }
    });
    onConnect?.(conn);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: `tandem://127.0.0.1:${port}`,
    connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of connections) c.socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A result line for a query. */
export function queryResult(columns: string[], rows: unknown[][], meta: Record<string, unknown> = {}) {
  return {
    columns,
    rows,
    meta: { changes: 0, last_row_id: 0, rows_read: rows.length, rows_written: 0, duration_ms: 0.01, served_by: "sqlite", ...meta },
  };
}

export interface Proxy {
  port: number;
  url: string;
  /** Connections accepted so far. */
  accepted: number;
  /** Currently open client sockets. */
  open: Set<net.Socket>;
  /** Resolves when the next client connection closes. */
  nextClose(): Promise<void>;
  /** Cuts every open connection (both sides). */
  cut(): void;
  close(): Promise<void>;
}

/** A TCP proxy on a free port forwarding to host:port. */
export async function tcpProxy(host: string, port: number): Promise<Proxy> {
  const open = new Set<net.Socket>();
  const pairs = new Set<[net.Socket, net.Socket]>();
  let closeWaiters: (() => void)[] = [];
  const p: Proxy = {
    port: 0,
    url: "",
    accepted: 0,
    open,
    nextClose: () => new Promise<void>((resolve) => closeWaiters.push(resolve)),
    cut: () => {
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        p.cut();
        server.close(() => resolve());
      }),
  };
  const server = net.createServer((client) => {
    p.accepted++;
    open.add(client);
    const upstream = net.connect({ host, port });
    const pair: [net.Socket, net.Socket] = [client, upstream];
    pairs.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    const done = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", done);
    upstream.on("error", done);
    upstream.on("close", done);
    client.on("close", () => {
      done();
      open.delete(client);
      pairs.delete(pair);
      const w = closeWaiters;
      closeWaiters = [];
      for (const f of w) f();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  p.port = (server.address() as net.AddressInfo).port;
  p.url = `tandem://127.0.0.1:${p.port}`;
  return p;
}
