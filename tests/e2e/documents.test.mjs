// The example FastAPI app's documents page (examples/fastapi-app) in Chromium, with wsguard as its
// gateway: the app's session cookie (HttpOnly: the page holds no token) admits the socket through
// wsguard's connect proxy; the app's data decides who follows a document (the subscribe proxy);
// notes shared by one member reach another's page; the page (wsguard's JS client) reconnects by
// itself after a wsguard restart and shows what is shared afterwards. No CSP violation, no error.
//
//   cargo build && scripts/setup && node --test tests/e2e/
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Node, apiKey, dataFolder, launchChromium, sleep } from '../client/support.mjs';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const UVICORN = path.join(ROOT, '.venv', 'bin', 'uvicorn');
const WAIT = 10_000;

let dir;
let node;
let app;
let appLog = '';
let appBase;
let browser;
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
  dir = await dataFolder(`
allowed_origins = ["${appBase}"]

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
  node = await Node.start(dir);
  await startApp(port, {
    SECRET_KEY: crypto.randomBytes(32).toString('hex'),
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
