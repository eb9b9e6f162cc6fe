// End-to-end test of the browser chat: a real wsguard server on a random port, driven by headless
// Chromium from the system (playwright-core only, no downloaded browsers).
//
//   cargo build && npm ci && node --test tests/e2e/
//
// Environment: WSGUARD_BIN (default target/debug/wsguard), CHROMIUM_PATH (default /usr/bin/chromium).
// E2E_STATIC_FROM_DISK=1 serves /static/* from web/ instead of the copies compiled into the
// binary: for working on the scripts and styles without a rebuild (the HTML still comes from it).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = path.resolve(ROOT, process.env.WSGUARD_BIN || 'target/debug/wsguard');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SHOT = path.join(ROOT, 'target', 'e2e', 'chat.png');
const WAIT = 10_000; // default timeout of one wait

let dataDir;
let server;
let serverLog = '';
let base;
let browser;
const contexts = [];
const problems = []; // page errors and CSP violations, checked at the end
let john; // { context, page, dialogs }
let jane;
const runId = Date.now().toString(36);

/** Starts `wsguard serve` and resolves to the base URL from its first stdout line. */
function startServer(bind = '127.0.0.1:0') {
  return new Promise((resolve, reject) => {
    server = spawn(BIN, ['serve', '--bind', bind, '--data-dir', dataDir], {
      cwd: dataDir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' },
    });
    const timer = setTimeout(() => reject(new Error('the server printed no address within 20 s\n' + serverLog)), 20_000);
    server.on('error', (err) => { clearTimeout(timer); reject(err); });
    server.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the server exited early (code ${code}, signal ${signal})\n${serverLog}`));
    });
    server.stderr.on('data', (d) => { serverLog = (serverLog + d).slice(-20_000); });
    const lines = readline.createInterface({ input: server.stdout });
    lines.once('line', (line) => {
      const m = /wsguard listening on (https?:\/\/\S+)/.exec(line);
      clearTimeout(timer);
      if (m) resolve(m[1].replace(/\/$/, ''));
      else reject(new Error('unexpected first line from the server: ' + line));
    });
    lines.on('line', (line) => { serverLog = (serverLog + line + '\n').slice(-20_000); });
  });
}

async function stopServer() {
  if (!server || server.exitCode !== null || server.signalCode !== null) return;
  server.removeAllListeners('exit');
  const exited = new Promise((r) => server.once('exit', r));
  server.kill('SIGTERM');
  const t = setTimeout(() => server.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

async function newUserPage(viewport = { width: 1100, height: 720 }) {
  const context = await browser.newContext({ viewport });
  context.setDefaultTimeout(WAIT);
  if (process.env.E2E_STATIC_FROM_DISK === '1') {
    await context.route('**/static/*', (route) => {
      const name = path.basename(new URL(route.request().url()).pathname);
      const file = path.join(ROOT, 'web', name);
      if (!fs.existsSync(file)) return route.fulfill({ status: 404, body: '' });
      const type = name.endsWith('.css') ? 'text/css' : 'text/javascript';
      return route.fulfill({ body: fs.readFileSync(file), contentType: type });
    });
  }
  contexts.push(context);
  const page = await context.newPage();
  const dialogs = [];
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  page.on('pageerror', (err) => problems.push(`pageerror on ${page.url()}: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && /Content Security Policy|Refused to/i.test(msg.text())) {
      problems.push(`CSP on ${page.url()}: ${msg.text()}`);
    }
  });
  return { context, page, dialogs };
}

/** Logs in through the login form (as a person would) and waits for the chat to be connected. */
async function login(user, password, viewport) {
  const u = await newUserPage(viewport);
  await u.page.goto(base + '/chat');
  await u.page.waitForURL((url) => url.pathname === '/login');
  await u.page.fill('#username', user);
  await u.page.fill('#password', password);
  await Promise.all([
    u.page.waitForURL((url) => url.pathname === '/chat'),
    u.page.click('#login-submit'),
  ]);
  await u.page.waitForFunction((name) => document.querySelector('#me')?.textContent === name, user);
  await u.page.waitForSelector('#conn[data-state="open"]');
  return u;
}

async function waitForMember(page, user, present = true) {
  await page.waitForFunction(
    ([name, want]) => !!document.querySelector(`#members [data-user="${name}"]`) === want,
    [user, present],
  );
}

async function sendMessage(page, text) {
  await page.fill('#message-input', text);
  await page.press('#message-input', 'Enter');
}

/** Texts of the stored (acknowledged or received) messages from `from`, in display order. */
function textsFrom(page, from) {
  return page.$$eval(
    `#messages li[data-testid="message"][data-id][data-from="${from}"] .text`,
    (nodes) => nodes.map((n) => n.textContent),
  );
}

async function waitForText(page, from, text) {
  await page.waitForFunction(
    ([f, t]) => [...document.querySelectorAll(`#messages li[data-id][data-from="${f}"] .text`)]
      .some((n) => n.textContent === t),
    [from, text],
  );
}

before(async () => {
  assert.ok(fs.existsSync(BIN), `no server binary at ${BIN}: run cargo build first (or set WSGUARD_BIN)`);
  assert.ok(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM_PATH)`);
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsguard-e2e-'));
  execFileSync(BIN, ['demo', '--data-dir', dataDir], { cwd: dataDir, stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
  base = await startServer();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  if (browser) await browser.close().catch(() => {});
  await stopServer();
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

test('/chat without a login redirects to the login page', async () => {
  const { page } = await newUserPage();
  const res = await page.goto(base + '/chat');
  const url = new URL(page.url());
  assert.equal(url.pathname, '/login');
  assert.equal(url.searchParams.get('next'), '/chat');
  assert.equal(res.status(), 200);
  // The page is the login form, carrying next through to the cookie login.
  assert.equal(await page.getAttribute('form#login-form', 'action'), '/login/cookie');
  assert.equal(await page.inputValue('input[name="next"]'), '/chat');
  assert.equal(await page.textContent('#error'), '');
});

test('a wrong password comes back to the login page with an error', async () => {
  const { page } = await newUserPage();
  await page.goto(base + '/login?next=/chat');
  await page.fill('#username', 'johndoe');
  await page.fill('#password', 'not-the-password');
  await Promise.all([
    page.waitForURL((url) => url.pathname === '/login' && url.searchParams.has('error')),
    page.click('#login-submit'),
  ]);
  assert.notEqual((await page.textContent('#error')).trim(), '');
  assert.equal(await page.inputValue('input[name="next"]'), '/chat');
});

test('two users log in, see each other, and exchange messages in order', async () => {
  john = await login('johndoe', 'secret');
  jane = await login('janedoe', 'secret2', { width: 1200, height: 760 });

  // Both are members of #general, and each sees the other.
  await waitForMember(john.page, 'janedoe');
  await waitForMember(john.page, 'johndoe');
  await waitForMember(jane.page, 'johndoe');
  await waitForMember(jane.page, 'janedoe');
  assert.equal(await jane.page.textContent('#room-title'), '#general');

  const hello = `hello from john`;
  await sendMessage(john.page, hello);
  await waitForText(jane.page, 'johndoe', hello);
  // john's own copy is acknowledged (stored with an id) and not duplicated.
  await waitForText(john.page, 'johndoe', hello);
  await john.page.waitForFunction(() => !document.querySelector('#messages li.pending'));
  assert.equal((await textsFrom(john.page, 'johndoe')).filter((t) => t === hello).length, 1);

  // Three quick messages arrive in order.
  const burst = [1, 2, 3].map((i) => `burst ${runId} #${i}`);
  for (const t of burst) await sendMessage(john.page, t);
  await waitForText(jane.page, 'johndoe', burst[2]);
  const seen = (await textsFrom(jane.page, 'johndoe')).filter((t) => burst.includes(t));
  assert.deepEqual(seen, burst);

  // jane answers; john sees it.
  await sendMessage(jane.page, 'hi john, welcome back');
  await waitForText(john.page, 'janedoe', 'hi john, welcome back');
  // Nothing is shown twice on either side.
  for (const p of [john.page, jane.page]) {
    const ids = await p.$$eval('#messages li[data-id]', (ns) => ns.map((n) => n.dataset.id));
    assert.equal(new Set(ids).size, ids.length, 'duplicate message ids on the page');
  }
});

test('a message is shown as text, never as HTML', async () => {
  const payload = '<img src=x onerror=alert(1)>';
  await sendMessage(john.page, payload);
  await waitForText(jane.page, 'johndoe', payload);
  await waitForText(john.page, 'johndoe', payload);
  // Give a (wrongly) inserted image the time to fail loading and run its handler.
  await jane.page.waitForTimeout(300);
  for (const u of [jane, john]) {
    const texts = await textsFrom(u.page, 'johndoe');
    assert.ok(texts.includes(payload), 'the payload is shown as literal text');
    assert.equal(await u.page.locator('#messages img').count(), 0, 'no <img> inside #messages');
    assert.deepEqual(u.dialogs, [], 'no dialog was opened');
  }
});

test('screenshot of the chat with messages', async () => {
  fs.mkdirSync(path.dirname(SHOT), { recursive: true });
  await sendMessage(jane.page, 'Looks good! The screenshot should show this conversation.');
  await waitForText(jane.page, 'janedoe', 'Looks good! The screenshot should show this conversation.');
  await jane.page.waitForFunction(() => !document.querySelector('#messages li.pending'));
  await jane.page.screenshot({ path: SHOT, fullPage: true });
  const size = fs.statSync(SHOT).size;
  assert.ok(size > 5000, `screenshot written (${size} bytes)`);
});

test('logout ends the session: presence leave for others, /chat redirects to /login', async () => {
  await Promise.all([
    john.page.waitForURL((url) => url.pathname === '/login'),
    john.page.click('#logout'),
  ]);
  // jane sees johndoe leave #general.
  await waitForMember(jane.page, 'johndoe', false);
  await jane.page.waitForFunction(() => [...document.querySelectorAll('#messages li.system')]
    .some((n) => n.textContent === 'johndoe left'));
  // jane is still connected and can still chat.
  await jane.page.waitForSelector('#conn[data-state="open"]');

  // john's cookies are gone: /chat sends him to the login page again.
  await john.page.goto(base + '/chat');
  const url = new URL(john.page.url());
  assert.equal(url.pathname, '/login');
  assert.equal(url.searchParams.get('next'), '/chat');
  const cookies = await john.context.cookies(base);
  assert.ok(!cookies.some((c) => c.name === 'access_token_cookie' && c.value !== ''),
    'the access cookie is cleared');
});

test('after a server restart the chat reconnects, re-joins and shows nothing twice', async () => {
  const page = jane.page;
  const before = await page.$$eval('#messages li[data-id]', (ns) => ns.map((n) => n.dataset.id));
  assert.ok(before.length >= 5);
  await stopServer();
  await page.waitForSelector('#conn[data-state="reconnecting"]');
  assert.match(await page.textContent('#conn'), /reconnecting/);
  // Same port, same data folder: the session cookies stay valid.
  const again = await startServer('127.0.0.1:' + new URL(base).port);
  assert.equal(again, base);
  await page.waitForSelector('#conn[data-state="open"]', { timeout: 20_000 });
  // The history re-sent on join is merged: every message once, none lost.
  await page.waitForFunction((n) => document.querySelectorAll('#messages li[data-id]').length >= n, before.length);
  const after = await page.$$eval('#messages li[data-id]', (ns) => ns.map((n) => n.dataset.id));
  assert.equal(new Set(after).size, after.length, 'duplicate message ids after the reconnect');
  for (const id of before) assert.ok(after.includes(id), `message ${id} kept`);
  // And the socket is live again: a new message is acknowledged.
  const text = `back after the restart ${runId}`;
  await sendMessage(page, text);
  await waitForText(page, 'janedoe', text);
  await page.waitForFunction(() => !document.querySelector('#messages li.pending'));
});

test('offline and back, the chat shows the messages sent meanwhile, once each', async () => {
  const away = await login('johndoe', 'secret');
  await waitForMember(away.page, 'janedoe');
  await waitForMember(jane.page, 'johndoe');
  // The members frame comes before the history: count only once the newest message jane
  // shows is on john's page too.
  const newest = await jane.page.$$eval('#messages li[data-id]', (ns) => ns.map((n) => n.dataset.id).pop());
  if (newest) await away.page.waitForSelector(`#messages li[data-id="${newest}"]`);
  const before = await away.page.$$eval('#messages li[data-id]', (ns) => ns.length);
  await away.context.setOffline(true);
  const started = Date.now();
  await away.page.waitForSelector('#conn[data-state="reconnecting"]', { timeout: 45_000 });
  const noticed = Date.now() - started;
  const texts = [1, 2, 3].map((i) => `said while johndoe was offline ${i} ${runId}`);
  for (const text of texts) {
    await sendMessage(jane.page, text);
    await waitForText(jane.page, 'janedoe', text);
  }
  await away.context.setOffline(false);
  await away.page.waitForSelector('#conn[data-state="open"]', { timeout: 45_000 });
  for (const text of texts) await waitForText(away.page, 'janedoe', text);
  const shown = await textsFrom(away.page, 'janedoe');
  for (const text of texts) assert.equal(shown.filter((t) => t === text).length, 1, `${text} once`);
  const ids = await away.page.$$eval('#messages li[data-id]', (ns) => ns.map((n) => n.dataset.id));
  assert.equal(new Set(ids).size, ids.length, 'no message twice');
  assert.equal(ids.length, before + texts.length, 'nothing else lost or added');
  // The browser's offline event, not the pings (20 s + 10 s), told the client.
  assert.ok(noticed < 5000, `offline noticed after ${noticed} ms`);
  await away.context.close();
});

test('the token demo connects to /chat/ws with the bearer subprotocol', async () => {
  const { page } = await newUserPage();
  await page.goto(base + '/token-demo');
  await page.fill('#demo-username', 'janedoe');
  await page.fill('#demo-password', 'secret2');
  await page.click('#get-token');
  await page.waitForFunction(() => document.querySelector('#token').value.split('.').length === 3);
  await page.selectOption('#endpoint', 'chat-subprotocol');
  await page.click('#connect');
  await page.waitForFunction(() => [...document.querySelectorAll('#log li[data-kind="in"] .body')]
    .some((n) => n.textContent.includes('"welcome"') && n.textContent.includes('janedoe')));
  await page.click('#disconnect');
  await page.waitForSelector('#log li[data-kind="close"]');
});

test('the API docs render under their Content-Security-Policy', async () => {
  const { page } = await newUserPage();
  const response = await page.goto(base + '/docs/');
  assert.match(response.headers()['content-security-policy'] || '', /script-src 'self'/);
  const usersMe = page.locator('.opblock-summary-path', { hasText: '/users/me' }).first();
  await usersMe.waitFor({ timeout: WAIT });
  await usersMe.click();
  await page.waitForSelector('.opblock.is-open .responses-wrapper', { timeout: WAIT });
});

test('the pages ran without script errors or CSP violations', () => {
  assert.deepEqual(problems, []);
});
