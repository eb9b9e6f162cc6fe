// Real parts for the JavaScript client's tests: wsguard processes (target/debug/wsguard, or
// WSGUARD_BIN), their data folders and API keys, a PostgreSQL schema of a test's own, and a TCP
// relay between client and server that can be cut (every connection dropped, new ones refused)
// or frozen (connections kept open, nothing forwarded: a dead network path).
import { spawn, execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

export { WebSocket };

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = path.resolve(ROOT, process.env.WSGUARD_BIN || 'target/debug/wsguard');
const run = promisify(execFile);

export const POSTGRES = 'postgres://postgres@127.0.0.1:5432/test';
export const REDIS = '127.0.0.1:6379';

/** A data folder with the demo users (johndoe/secret, janedoe/secret2) and `config` as wsguard.toml. */
export async function dataFolder(config = '', extra = []) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsguard-client-'));
  fs.writeFileSync(path.join(dir, 'wsguard.toml'), config);
  await cli(dir, ['demo', ...extra]);
  return dir;
}

/** `wsguard <args> --data-dir <dir>` with the folder's wsguard.toml; its stdout. */
export async function cli(dir, args) {
  const argv = ['--config', path.join(dir, 'wsguard.toml'), ...args, '--data-dir', dir];
  const env = withoutWsguardVars();
  const { stdout } = await run(BIN, argv, { cwd: dir, env, timeout: 60_000 });
  return stdout;
}

/** A server-API key with every scope (`wsguard apikey add` prints it alone). */
export async function apiKey(dir, extra = []) {
  const out = await cli(dir, ['apikey', 'add', `k${Date.now().toString(36)}`, '--scopes', 'publish,disconnect,read', ...extra]);
  return out.trim();
}

function withoutWsguardVars() {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('WSGUARD_')));
}

/** A `wsguard serve` process on `dir`; `port` 0 takes a free one (restart() keeps it). */
export class Node {
  constructor(dir, args = []) {
    this.dir = dir;
    this.args = args;
    this.port = 0;
    this.log = '';
    this.proc = null;
  }

  static async start(dir, args = []) {
    const node = new Node(dir, args);
    await node.start();
    return node;
  }

  get base() {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/connect`;
  }

  async start() {
    const argv = ['--config', path.join(this.dir, 'wsguard.toml'), 'serve', '--bind', `127.0.0.1:${this.port}`];
    argv.push('--data-dir', this.dir, ...this.args);
    const env = { ...withoutWsguardVars(), RUST_LOG: process.env.RUST_LOG || 'warn' };
    const proc = spawn(BIN, argv, { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'], env });
    this.proc = proc;
    proc.stderr.on('data', (d) => (this.log = (this.log + d).slice(-20_000)));
    const line = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`wsguard did not start in 30 s\n${this.log}`)), 30_000);
      proc.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`wsguard exited (${code ?? signal}) on start\n${this.log}`));
      });
      readline.createInterface({ input: proc.stdout }).once('line', (l) => {
        clearTimeout(timer);
        resolve(l);
      });
    });
    const match = /wsguard listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(line);
    if (!match) throw new Error(`unexpected first line: ${line}`);
    this.port = Number(match[1]);
    proc.removeAllListeners('exit');
  }

  /** Ends the process with `signal` and waits for it. */
  async stop(signal = 'SIGTERM') {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill(signal);
    const force = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(force);
  }

  async restart() {
    await this.stop('SIGTERM');
    await this.start();
  }
}

/** JSON over HTTP to `base`. */
export async function post(base, pathname, body, headers = {}) {
  const res = await fetch(base + pathname, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`POST ${pathname}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** A password login: `{access_token, refresh_token, expires_in}`. */
export function login(base, username, password) {
  return post(base, '/login', { username, password });
}

/** Rotates a refresh token: the next pair. */
export async function refresh(base, refreshToken) {
  return post(base, '/refresh', undefined, { authorization: `Bearer ${refreshToken}` });
}

/** A login that hands out access tokens: the first, then each by rotating the refresh token. */
export class Session {
  constructor(base, username, password) {
    Object.assign(this, { base, username, password, pair: null, issued: [] });
  }

  async token() {
    const base = typeof this.base === 'function' ? this.base() : this.base;
    this.pair = this.pair ? await refresh(base, this.pair.refresh_token) : await login(base, this.username, this.password);
    this.issued.push(this.pair.access_token);
    return this.pair.access_token;
  }
}

/** Debian's Chromium (or CHROMIUM_PATH), headless, through playwright-core. */
export async function launchChromium() {
  const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
  if (!fs.existsSync(executablePath)) {
    throw new Error(`no Chromium at ${executablePath}: apt-get install chromium (or set CHROMIUM_PATH)`);
  }
  // Imported here: only the browser tests need it.
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
}

/** An HS256 JWT of `claims`, signed with `secret`: an application's token, as a trusted issuer makes it. */
export function hs256(secret, claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const unsigned = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${unsigned}.${crypto.createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
}

/**
 * An application whose HS256 tokens wsguard trusts: a random secret in a 0600 file (`secretFile`,
 * for `[[trusted_issuers]]`), removed with `t`, `token(sub, channels, ttl)` signing a token for
 * `sub` with `channels`, living `ttl` seconds, and `subscriptionToken(sub, channel, ttl)` one that
 * lets `sub` follow `channel`.
 */
export function trustedApplication(t) {
  const secret = crypto.randomBytes(32).toString('hex');
  const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'wsguard-app-'));
  const secretFile = path.join(folder, 'app.secret');
  fs.writeFileSync(secretFile, secret, { mode: 0o600 });
  t.after(() => fs.rmSync(folder, { recursive: true, force: true }));
  const token = (sub, channels, ttl) => {
    const now = Math.floor(Date.now() / 1000);
    return hs256(secret, { sub, iat: now, exp: now + ttl, channels });
  };
  const subscriptionToken = (sub, channel, ttl) => {
    const now = Math.floor(Date.now() / 1000);
    return hs256(secret, { sub, channel, iat: now, exp: now + ttl });
  };
  return { secretFile, token, subscriptionToken };
}

/** The claims of a JWT (not verified: the server did). */
export function claims(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
}

/** Publishes through the server API; resolves with the offset. */
export async function publish(base, key, channel, data) {
  const reply = await post(base, '/api/publish', { channel, data }, { authorization: `Bearer ${key}` });
  return reply.offset;
}

/**
 * Publishes `count` items `{n}` (1..count) to `channel` at a steady pace (`every` ms), through
 * `base()` (a function: the node may change). A publish that fails is retried until it is
 * acknowledged, so the acknowledged ones are all of them; `acked` maps n to its offset.
 */
export function publishStream({ base, key, channel, count, every, onAck = () => {} }) {
  const acked = new Map();
  const done = (async () => {
    const start = Date.now();
    for (let n = 1; n <= count; n++) {
      const due = start + n * every;
      if (due > Date.now()) await sleep(due - Date.now());
      for (;;) {
        try {
          const offset = await publish(base(), key, channel, { n });
          acked.set(n, offset);
          onAck(n, offset);
          break;
        } catch {
          await sleep(50);
        }
      }
    }
    return acked;
  })();
  return { acked, done };
}

/** A TCP relay to 127.0.0.1:`target` that a test can cut and freeze. */
export class Relay {
  constructor(target) {
    this.target = target;
    this.open = true;
    /** Answers every WebSocket upgrade with 403, as proxies that refuse WebSockets do. */
    this.refuseUpgrades = false;
    this.connections = new Set();
    this.accepted = 0;
    this.server = net.createServer((inbound) => this._accept(inbound));
  }

  static async start(target) {
    const relay = new Relay(target);
    await new Promise((resolve) => relay.server.listen(0, '127.0.0.1', resolve));
    relay.port = relay.server.address().port;
    return relay;
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/connect`;
  }

  _accept(inbound) {
    if (!this.open) {
      inbound.destroy();
      return;
    }
    this.accepted++;
    const outbound = net.connect(this.target, '127.0.0.1');
    const pair = { inbound, outbound, frozen: false };
    this.connections.add(pair);
    const refused = (chunk) => this.refuseUpgrades && /\r\nupgrade:\s*websocket/i.test(chunk.toString('latin1'));
    inbound.on('data', (chunk) => {
      if (refused(chunk)) {
        inbound.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
        outbound.destroy();
      } else if (!pair.frozen) {
        outbound.write(chunk);
      }
    });
    outbound.on('data', (chunk) => {
      if (!pair.frozen) inbound.write(chunk);
    });
    const end = () => {
      this.connections.delete(pair);
      inbound.destroy();
      outbound.destroy();
    };
    for (const s of [inbound, outbound]) {
      s.on('error', end);
      s.on('close', end);
    }
  }

  /** Drops every connection and refuses new ones, for `ms` (then open again), or until restore(). */
  cut(ms) {
    this.open = false;
    for (const { inbound, outbound } of this.connections) {
      inbound.destroy();
      outbound.destroy();
    }
    this.connections.clear();
    if (ms !== undefined) return sleep(ms).then(() => this.restore());
    return Promise.resolve();
  }

  restore() {
    this.open = true;
  }

  /**
   * The client stops reading: nothing from the server reaches it until resume(), and the server's
   * writes back up (a slow reader).
   */
  pause() {
    for (const pair of this.connections) pair.outbound.pause();
  }

  resume() {
    for (const pair of this.connections) pair.outbound.resume();
  }

  /** The connections open now stop carrying anything, without closing; new ones work. */
  freeze() {
    for (const pair of this.connections) pair.frozen = true;
  }

  async close() {
    await this.cut();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/** Whether a TCP service answers at `hostPort` within a second. */
export function reachable(hostPort) {
  const [host, port] = hostPort.split(':');
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), host);
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * PostgreSQL and Redis answer: true. When not: a test fails under CI or WSGUARD_REQUIRE_SERVICES,
 * and is otherwise skipped with the reason (`t.skip`).
 */
export async function services(t) {
  for (const [name, at] of [['PostgreSQL', '127.0.0.1:5432'], ['Redis', REDIS]]) {
    if (await reachable(at)) continue;
    const reason = `${name} is not reachable at ${at}; start it (see README, Testing) to run this test`;
    if (process.env.CI || process.env.WSGUARD_REQUIRE_SERVICES) throw new Error(`${reason}, and it is required`);
    t.skip(reason);
    return false;
  }
  return true;
}

/** A schema of its own in the test database (psql), and the URL that uses it. */
export async function createSchema() {
  const base = process.env.WSGUARD_TEST_DATABASE_URL || POSTGRES;
  const name = `wsguard_js_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  await run('psql', [base, '-v', 'ON_ERROR_STOP=1', '-qc', `CREATE SCHEMA ${name}`]);
  const separator = base.includes('?') ? '&' : '?';
  return {
    url: `${base}${separator}options=-c%20search_path%3D${name}`,
    drop: () => run('psql', [base, '-qc', `DROP SCHEMA ${name} CASCADE`]).catch(() => {}),
  };
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits until `predicate()` holds, polling; fails with `what` (or what it returns) after `timeout` ms. */
export async function until(predicate, what, timeout = 10_000) {
  const deadline = Date.now() + timeout;
  while (!(await predicate())) {
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${typeof what === 'function' ? what() : what}`);
    }
    await sleep(20);
  }
}

/** The next `name` event of `emitter` (an Emitter of the client), within `timeout` ms. */
export function next(emitter, name, timeout = 10_000, filter = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${name} event within ${timeout} ms`));
    }, timeout);
    const off = emitter.on(name, (...args) => {
      if (!filter(...args)) return;
      clearTimeout(timer);
      off();
      resolve(args.length > 1 ? args : args[0]);
    });
  });
}

/** Records a client's states and errors, for assertions and for failure messages. */
export function journal(client) {
  const entries = [];
  client.on('state', (state, detail) => entries.push(`${state} ${JSON.stringify(detail)}`));
  client.on('error', (err) => entries.push(`error ${err.code} ${err.detail ?? err.message}`));
  return entries;
}
