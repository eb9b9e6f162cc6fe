// The example FastAPI app (examples/fastapi-app) in Chromium, with wsguard as its gateway. Its
// documents page: the app's session cookie (HttpOnly: the page holds no token) admits the socket
// through wsguard's connect proxy; the app's data decides who follows a document (the subscribe
// proxy); notes shared by one member reach another's page. Its notifications page: the app's own
// JWT admits the socket. Both pages (wsguard's JS client) reconnect by themselves after a wsguard
// restart and show what is published afterwards. No CSP violation, no error.
//
//   cargo build && scripts/setup && node --test tests/e2e/
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Node, apiKey, dataFolder, launchChromium, publish, sleep } from '../client/support.mjs';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const UVICORN = path.join(ROOT, '.venv', 'bin', 'uvicorn');
const WAIT = 10_000;

let dir;
let node;
let app;
let appLog = '';
let appBase;
let browser;
let apiKeyOf;
const problems = [];

/** A free loopback port (the app's: wsguard's configuration names it before either starts). */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** The example app under uvicorn, answering once `/config.json` does. */
async function startApp(port, env) {
  const argv = ['main:app', '--app-dir', path.join(ROOT, 'examples', 'fastapi-app'), '--port', String(port)];
  app = spawn(UVICORN, [...argv, '--log-level', 'warning'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  app.stderr.on('data', (d) => { appLog = (appLog + d).slice(-20_000); });
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (app.exitCode !== null) throw new Error(`the example app exited\n${appLog}`);
    try {
      if ((await fetch(`http://127.0.0.1:${port}/config.json`)).ok) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`the example app did not answer in 30 s\n${appLog}`);
}

before(async () => {
  const port = await freePort();
  appBase = `http://127.0.0.1:${port}`;
  // The app's HS256 secret, which wsguard trusts as an issuer's (the notifications page).
  const secret = crypto.randomBytes(32).toString('hex');
  const secretDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsguard-example-'));
  const secretFile = path.join(secretDir, 'app.secret');
  fs.writeFileSync(secretFile, secret, { mode: 0o600 });
  dir = await dataFolder(`
allowed_origins = ["${appBase}"]

[[trusted_issuers]]
secret_file = "${secretFile}"

[proxy]
connect = "${appBase}/rt/connect"
forward_headers = ["Cookie"]

[[namespaces]]
name = "doc"
subscribe = "proxy"
subscribe_proxy = "${appBase}/rt/subscribe"
presence = true
`);
  const key = await apiKey(dir);
  apiKeyOf = key;
  node = await Node.start(dir);
  await startApp(port, {
    SECRET_KEY: secret,
    WSGUARD_URL: node.base,
    WSGUARD_API_KEY: key,
    WSGUARD_PUBLIC_URL: node.wsUrl,
  });
  browser = await launchChromium();
});

after(async () => {
  await browser?.close().catch(() => {});
  app?.kill('SIGTERM');
  await node?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** The documents page in a context of its own, logged in as `user`. */
async function loggedIn(user, password) {
  const context = await browser.newContext();
  context.setDefaultTimeout(WAIT);
  const page = await context.newPage();
  page.on('pageerror', (err) => problems.push(`${user}: ${err.message}`));
  page.on('console', (message) => {
    if (/Content Security Policy|Refused to/i.test(message.text())) problems.push(`${user}: ${message.text()}`);
  });
  await page.goto(`${appBase}/documents`);
  await page.fill('#login input[name=username]', user);
  await page.fill('#login input[name=password]', password);
  await page.click('#login button');
  await page.waitForFunction(() => document.getElementById('state').textContent === 'connected');
  return { context, page };
}

async function share(page, text) {
  await page.fill('#note input[name=text]', text);
  await page.click('#note button');
}

test('members follow a document by their session cookie; others are refused; it survives a restart', async () => {
  const john = await loggedIn('johndoe', 'secret');
  const jane = await loggedIn('janedoe', 'secret2');
  const cookies = await john.context.cookies(appBase);
  const session = cookies.find((c) => c.name === 'session');
  assert.ok(session?.httpOnly, 'an HttpOnly session cookie');
  assert.equal(await john.page.evaluate(() => document.cookie), '', 'the page sees no credential');

  await john.page.click('button[data-doc="1"]');
  await jane.page.click('button[data-doc="1"]');
  await sleep(500); // both subscribed
  await share(jane.page, 'ship it on Friday');
  await john.page.waitForFunction(() => document.getElementById('notes').textContent.includes('janedoe: ship it on Friday'));

  // Salaries is janedoe's only: the app's data refuses johndoe at subscribe time.
  await john.page.click('button[data-doc="2"]');
  await john.page.waitForFunction(() => document.getElementById('error').textContent.includes('not a member'));

  // wsguard restarts: the page reconnects through the connect proxy and follows again.
  await john.page.click('button[data-doc="1"]');
  await sleep(500);
  await node.restart();
  await john.page.waitForFunction(() => document.getElementById('state').textContent === 'connected', null, { timeout: 20_000 });
  await jane.page.waitForFunction(() => document.getElementById('state').textContent === 'connected', null, { timeout: 20_000 });
  await sleep(500);
  await share(jane.page, 'after the restart');
  await john.page.waitForFunction(() => document.getElementById('notes').textContent.includes('janedoe: after the restart'));

  assert.deepEqual(problems, []);
});

test("the notifications page follows the user's channel with the app's token and survives a restart", async () => {
  const context = await browser.newContext();
  context.setDefaultTimeout(WAIT);
  const page = await context.newPage();
  page.on('pageerror', (err) => problems.push(`notifications: ${err.message}`));
  await page.goto(`${appBase}/`);
  await page.fill('#login input[name=username]', 'johndoe');
  await page.fill('#login input[name=password]', 'secret');
  await page.click('#login button');
  await page.waitForFunction(() => document.getElementById('state').textContent === 'subscribed to user:johndoe');
  await page.fill('#notify input[name=text]', 'a note to self');
  await page.click('#notify button');
  await page.waitForFunction(() => document.getElementById('publications').textContent.includes('a note to self'));

  await node.restart();
  await page.waitForFunction(() => document.getElementById('state').textContent === 'subscribed to user:johndoe', null, { timeout: 20_000 });
  await publish(node.base, apiKeyOf, 'user:johndoe', { text: 'after the restart' });
  await page.waitForFunction(() => document.getElementById('publications').textContent.includes('after the restart'));
  assert.deepEqual(problems, []);
});


test('a page whose origin wsguard refuses says where to look', async () => {
  // The same app under another name: http://localhost:<port> is not in allowed_origins.
  const context = await browser.newContext();
  context.setDefaultTimeout(WAIT);
  const page = await context.newPage();
  await page.goto(appBase.replace('127.0.0.1', 'localhost') + '/');
  await page.fill('#login input[name=username]', 'johndoe');
  await page.fill('#login input[name=password]', 'secret');
  await page.click('#login button');
  await page.waitForFunction(() => document.getElementById('error').textContent.includes('allowed_origins'), null, { timeout: 20_000 });
  await context.close();
});
