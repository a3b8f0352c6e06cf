/**
 * A fault-injecting HTTP proxy between bkp and the test S3 server. For a seeded share of requests
 * it answers 500 or 503 SlowDown itself, resets the connection, delays, cuts the response body
 * short (after sending a Content-Length for all of it), stalls a body half-way for longer than the
 * client's socket timeout ('stall', only when asked for), or passes the request on and drops the
 * answer (the server did it; the client must find out). Everything else is passed through
 * unchanged (the Host header too, so SigV4 signatures stay valid).
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mulberry32 } from './random.js';

export type Fault = 'pass' | 'error500' | 'slowdown503' | 'reset' | 'delay' | 'truncate' | 'drop' | 'stall';

export interface FaultProxyOptions {
  upstream: string;
  seed: number;
  /** Share of requests that get a fault (0..1). */
  rate: number;
  /** Longest delay of a 'delay' fault, ms. */
  maxDelayMs?: number;
  /** A fixed delay for every 'delay' fault instead of a random one, ms. */
  delayMs?: number;
  /** How long a 'stall' fault holds a response body before dropping the connection, ms (default 3000). */
  stallMs?: number;
  /** Faults to choose from (default: all but 'stall'). */
  faults?: Fault[];
  /** Chooses the fault of a request itself (undefined: the seeded random choice). */
  pick?: (method: string, url: string) => Fault | undefined;
  /** An S3 error to answer instead of forwarding, for requests it picks (e.g. reads of archived objects). */
  answer?: (method: string, url: string) => { status: number; code: string } | undefined;
}

export interface FaultProxy {
  endpoint: string;
  /** How many of each fault were injected, and requests seen. */
  counts: Record<Fault, number>;
  setRate(rate: number): void;
  close(): Promise<void>;
}

const XML = (code: string, msg: string) => `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${msg}</Message></Error>`;

export async function startFaultProxy(o: FaultProxyOptions): Promise<FaultProxy> {
  const up = new URL(o.upstream);
  const rnd = mulberry32(o.seed);
  const kinds: Fault[] = o.faults ?? ['error500', 'slowdown503', 'reset', 'delay', 'truncate', 'drop'];
  const counts: Record<Fault, number> = { pass: 0, error500: 0, slowdown503: 0, reset: 0, delay: 0, truncate: 0, drop: 0, stall: 0 };
  let rate = o.rate;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });

  const server = http.createServer((req, res) => {
    const fault: Fault = o.pick?.(req.method ?? 'GET', req.url ?? '/') ?? (rnd() < rate ? kinds[Math.floor(rnd() * kinds.length)]! : 'pass');
    const randomDelay = Math.floor(rnd() * (o.maxDelayMs ?? 1500));
    const delay = o.delayMs ?? randomDelay;
    counts[fault]++;
    const reply = (status: number, code: string) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(status, { 'content-type': 'application/xml', connection: 'close' });
        res.end(XML(code, 'injected by the test proxy'));
      });
    };
    const answer = o.answer?.(req.method ?? 'GET', req.url ?? '/');
    if (answer) return reply(answer.status, answer.code);
    if (fault === 'error500') return reply(500, 'InternalError');
    if (fault === 'slowdown503') return reply(503, 'SlowDown');
    if (fault === 'reset') {
      // let part of the request in, then drop the connection
      req.once('data', () => req.socket.destroy());
      req.once('end', () => req.socket.destroy());
      return;
    }
    let gone = false; // the client closed the connection before its answer (it gave up, aborted)
    res.on('close', () => void (gone = !res.writableFinished));
    const forward = (body?: Buffer) => {
      if (gone) return; // not forwarded: the client abandoned the request while it was held back
      const p = http.request(
        { host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers, agent },
        (ur) => {
          if (fault === 'drop') {
            // the server did the request; its answer never arrives
            ur.resume();
            ur.on('end', () => res.socket?.destroy());
            return;
          }
          res.writeHead(ur.statusCode ?? 502, ur.headers);
          if (fault === 'stall' && Number(ur.headers['content-length'] ?? 0) > 1) {
            // half the body, then silence longer than the client's socket timeout, then a drop
            const cut = Math.max(1, Math.floor(Number(ur.headers['content-length']) / 2));
            let sent = 0;
            ur.on('data', (d: Buffer) => {
              if (sent >= cut) return;
              const part = d.subarray(0, cut - sent);
              sent += part.length;
              res.write(part);
              if (sent >= cut) setTimeout(() => res.socket?.destroy(), o.stallMs ?? 3000);
            });
            return;
          }
          if (fault === 'truncate' && Number(ur.headers['content-length'] ?? 0) > 1) {
            const cut = Math.max(1, Math.floor(Number(ur.headers['content-length']) / 2));
            let sent = 0;
            ur.on('data', (d: Buffer) => {
              if (sent >= cut) return;
              const part = d.subarray(0, cut - sent);
              sent += part.length;
              res.write(part);
              if (sent >= cut) {
                ur.destroy();
                res.socket?.destroy();
              }
            });
            ur.on('end', () => res.socket?.destroy());
            return;
          }
          ur.pipe(res);
        },
      );
      p.on('error', () => res.socket?.destroy());
      if (body) p.end(body);
      else req.pipe(p);
    };
    if (fault === 'delay') {
      // take the request in while holding it back, so that a client that gives up is seen to go
      const body: Buffer[] = [];
      req.on('data', (d: Buffer) => body.push(d));
      req.on('end', () => setTimeout(() => forward(Buffer.concat(body)), delay));
    } else forward();
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    counts,
    setRate(r: number) {
      rate = r;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        agent.destroy();
        server.close(() => r());
      }),
  };
}
