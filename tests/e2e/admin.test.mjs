// The admin console (/admin) in Chromium, against a real wsguard: an admin logs in through the
// login form and sees johndoe, connected from the chat in another browser; publishes to his room
// (a socket of his receives it), disconnects him (4003; his login stays valid), adds an API key
// (shown once, working) and revokes it (refused); every action is in the audit log. A user without
// the role gets the 403 page; a role withdrawn from the command line stops the open console. No
// CSP violation, no error. Screenshots: target/e2e/admin.png (the console live), admin-actions.png
// (after the actions), admin-withdrawn.png (the console stopped).
//
//   cargo build && npm ci && node --test tests/e2e/
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BIN, Node, WebSocket, cli, dataFolder, launchChromium, login as passwordLogin } from '../client/support.mjs';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SHOTS = path.join(ROOT, 'target', 'e2e');
const WAIT = 10_000;
const ADMIN = ['root', 'r00t-pass'];

let dir;
let node;
let browser;
let admin; // the admin's page
let john; // johndoe's chat page
let johnSocket; // and a socket of his in #general, frames kept in `frames`
const frames = [];
const problems = [];

async function newPage(viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport });
  context.setDefaultTimeout(WAIT);
  const page = await context.newPage();
  page.on('pageerror', (err) => problems.push(`pageerror on ${page.url()}: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && /Content Security Policy|Refused to/i.test(msg.text())) {
      problems.push(`CSP on ${page.url()}: ${msg.text()}`);
    }
  });
  return page;
}

/** Logs in through the login form that `path` sends to, and comes back to `path`. */
async function login(page, path, [user, password]) {
  await page.goto(node.base + path);
  await page.waitForURL((url) => url.pathname === '/login');
  await page.fill('#username', user);
  await page.fill('#password', password);
  await Promise.all([page.waitForURL((url) => url.pathname === path), page.click('#login-submit')]);
}

/** A chat socket of `user` joined to `room`; every frame it receives goes to `frames`. */
async function roomSocket(user, password, room) {
  const { access_token: token } = await passwordLogin(node.base, user, password);
  const ws = new WebSocket(`${node.base.replace('http', 'ws')}/chat/ws?token=${token}`);
  ws.on('message', (data) => frames.push(JSON.parse(data.toString())));
  ws.closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  ws.send(JSON.stringify({ type: 'join', room }));
  await until(() => frames.some((f) => f.type === 'history' && f.room === room), `${user} in ${room}`);
  return ws;
}

/** Waits until `predicate()` holds, polling. */
async function until(predicate, what, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The console's notice, to say what it said when a wait fails. */
function noticeOf(page) {
  return page.textContent('#notice').catch(() => '(no page)');
}

/** The text of the console's table `id`, row by row. */
function rows(page, id) {
  return page.$$eval(`#${id} tr`, (trs) => trs.map((tr) => tr.textContent));
}

async function waitForRow(page, selector) {
  await page.waitForSelector(selector, { timeout: WAIT });
}

before(async () => {
  dir = await dataFolder();
  execFileSync(BIN, ['--config', path.join(dir, 'wsguard.toml'), 'user', 'add', ADMIN[0], '--admin', '--data-dir', dir],
    { cwd: dir, input: `${ADMIN[1]}\n`, stdio: ['pipe', 'pipe', 'pipe'], timeout: 30_000 });
  node = await Node.start(dir);
  browser = await launchChromium();
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (node) await node.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('an admin logs in and sees who is connected, the channels and the counters', async () => {
  john = await newPage({ width: 1000, height: 700 });
  await login(john, '/chat', ['johndoe', 'secret']);
  await john.waitForSelector('#conn[data-state="open"]');

  admin = await newPage();
  await login(admin, '/admin', ADMIN);
  await admin.waitForFunction((name) => document.querySelector('#me')?.textContent === name, ADMIN[0]);
  await waitForRow(admin, '#connections tr[data-user="johndoe"]');
  const connection = (await rows(admin, 'connections')).find((r) => r.startsWith('johndoe'));
  assert.match(connection, /johndoe\/chat\/wscookie/);
  await waitForRow(admin, '#channels tr[data-channel="general"]');
  await waitForRow(admin, '#nodes tr[data-node] .badge');
  await admin.waitForSelector('#live[data-state="open"]');
  // The counters refresh: deliveries/s is a number once two readings are in.
  await admin.waitForFunction(() => /^\d+\.\d$/.test(document.querySelector('[data-counter="deliveries"] strong')?.textContent));
  assert.equal(await admin.textContent('[data-counter="sockets"] strong'), '1');
});

test('the admin publishes to a channel and johndoe receives it', async () => {
  johnSocket = await roomSocket('johndoe', 'secret', 'general');
  await admin.click('#channels tr[data-channel="general"] button');
  await admin.waitForFunction(() => document.querySelector('#channel-name').textContent === 'general');
  assert.equal(await admin.inputValue('#publish-channel'), 'general');
  await admin.waitForFunction(() => /present: johndoe/.test(document.querySelector('#channel-presence').textContent));
  const text = 'Maintenance at 18:00, from the admin console';
  await admin.fill('#publish-data', JSON.stringify({ text }));
  await admin.click('#publish');
  await admin.waitForFunction(() => document.querySelector('#notice').dataset.kind === 'ok')
    .catch(async (err) => assert.fail(`${err.message}; the console says: ${await noticeOf(admin)}`));
  // A server publication (`from: null`): the chat page shows users' messages only, so a socket checks.
  await until(() => frames.some((f) => f.type === 'message' && f.text === text && f.from === null), 'the publication');
  await admin.waitForFunction((t) => [...document.querySelectorAll('#history .data')].some((n) => n.textContent.includes(t)), text);
  fs.mkdirSync(SHOTS, { recursive: true });
  await admin.screenshot({ path: path.join(SHOTS, 'admin.png'), fullPage: true });
});

test('the admin disconnects johndoe: his sockets close (4003), his login stays valid', async () => {
  await admin.click('#connections tr[data-user="johndoe"] [data-testid="disconnect"]');
  assert.equal(await johnSocket.closed, 4003);
  await admin.waitForSelector('#audit tr[data-action="disconnect"][data-target="johndoe"]')
    .catch(async (err) => assert.fail(`${err.message}; the console says: ${await noticeOf(admin)}`));
  // The chat's client stops at 4003 and its page goes to the login page; nothing was revoked, so
  // his cookies still open the chat.
  await john.waitForURL((url) => url.pathname === '/login');
  await john.goto(node.base + '/chat');
  await john.waitForSelector('#conn[data-state="open"]');
  await admin.waitForSelector('#connections tr[data-user="johndoe"]');
});

test('the admin adds an API key, shown once, and revokes it', async () => {
  await admin.fill('#key-name', 'e2e-backend');
  await admin.click('#key-add');
  await admin.waitForSelector('#new-key:not([hidden])');
  const key = await admin.textContent('#new-key-value');
  assert.match(key, /^wsg_[A-Za-z0-9_-]{43}$/);
  await waitForRow(admin, '#keys tr[data-key="e2e-backend"]');
  const listed = (await rows(admin, 'keys')).join('\n');
  assert.ok(listed.includes('publish, read') && !listed.includes(key), listed);
  const channels = await fetch(`${node.base}/api/channels`, { headers: { Authorization: `Bearer ${key}` } });
  assert.equal(channels.status, 200);
  await admin.click('#new-key-done');
  assert.equal(await admin.textContent('#new-key-value'), '', 'the key leaves the page');

  // Revoking asks for a second click.
  const revoke = '#keys tr[data-key="e2e-backend"] [data-testid="revoke-key"]';
  await admin.click(revoke);
  await admin.waitForSelector(`${revoke}.armed`);
  await admin.click(revoke);
  await admin.waitForSelector('#keys tr[data-key="e2e-backend"]', { state: 'detached' });
  const refused = await fetch(`${node.base}/api/channels`, { headers: { Authorization: `Bearer ${key}` } });
  assert.equal(refused.status, 401);

  const actions = await admin.$$eval('#audit tr[data-action]', (trs) => trs.map((tr) => tr.dataset.action));
  assert.deepEqual(actions.slice(0, 4), ['apikey.revoke', 'apikey.add', 'disconnect', 'publish']);
  const audit = (await rows(admin, 'audit')).join('\n');
  assert.ok(!audit.includes(key), 'never the key in the log');
  await admin.screenshot({ path: path.join(SHOTS, 'admin-actions.png'), fullPage: true });
});

test('a user without the admin role gets the 403 page', async () => {
  const jane = await newPage();
  await login(jane, '/admin', ['janedoe', 'secret2']).catch(() => {});
  const response = await jane.goto(node.base + '/admin');
  assert.equal(response.status(), 403);
  assert.match(await jane.textContent('[data-testid="admin-denied"]'), /Admin role required/);
  const api = await jane.evaluate(async () => (await fetch('/api/admin/stats')).status);
  assert.equal(api, 403);
});

test('a role withdrawn from the command line stops the open console', async () => {
  await cli(dir, ['user', 'admin', ADMIN[0], '--off']);
  await admin.waitForFunction(() => /Admin role required/.test(document.querySelector('#notice').textContent));
  assert.equal(await admin.getAttribute('#live', 'data-state'), 'closed');
  await admin.screenshot({ path: path.join(SHOTS, 'admin-withdrawn.png') });
});

test('the pages ran without script errors or CSP violations', () => {
  assert.deepEqual(problems, []);
});
