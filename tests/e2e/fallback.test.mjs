// The chat where WebSockets are refused: Chromium reaches wsguard through a relay that answers
// every WebSocket upgrade with 403, as some corporate proxies do. The page's client falls back to
// an HTTP stream (POST /chat/ws/stream, frames sent by POST /emulation): two users log in, join,
// and exchange messages in order, and the page says what it runs on.
//
// Environment: WSGUARD_BIN (default target/debug/wsguard), CHROMIUM_PATH (default /usr/bin/chromium).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Node, Relay, dataFolder, launchChromium } from '../client/support.mjs';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SHOT = path.join(ROOT, 'target', 'e2e', 'chat-streaming.png');

let dir;
let node;
let relay;
let browser;
const problems = [];

before(async () => {
  dir = await dataFolder('');
  node = await Node.start(dir);
  relay = await Relay.start(node.port);
  relay.refuseUpgrades = true;
  browser = await launchChromium();
});

after(async () => {
  await browser?.close().catch(() => {});
  await relay?.close();
  await node?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** The chat, logged in as `user` through the relay. */
async function chat(user, password) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  page.on('pageerror', (err) => problems.push(`${user}: ${err}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && /Content Security Policy/.test(msg.text())) problems.push(`${user}: ${msg.text()}`);
  });
  const upgrades = [];
  page.on('websocket', (ws) => upgrades.push(ws.url()));
  await page.goto(`http://127.0.0.1:${relay.port}/chat`);
  await page.waitForURL((url) => url.pathname === '/login');
  await page.fill('#username', user);
  await page.fill('#password', password);
  await Promise.all([page.waitForURL((url) => url.pathname === '/chat'), page.click('#login-submit')]);
  await page.waitForSelector('#conn[data-state="open"]');
  return { page, upgrades };
}

async function send(page, text) {
  await page.fill('#message-input', text);
  await page.press('#message-input', 'Enter');
}

function texts(page, from) {
  return page.$$eval(`#messages li[data-id][data-from="${from}"] .text`, (nodes) => nodes.map((n) => n.textContent));
}

test('with WebSockets refused, the chat falls back to HTTP streaming: log in, join, send and receive', async () => {
  const john = await chat('johndoe', 'secret');
  const jane = await chat('janedoe', 'secret2');
  assert.ok(john.upgrades.length >= 1, 'a WebSocket was tried first');
  assert.match(await john.page.textContent('#conn'), /HTTP streaming/);
  for (const { page } of [john, jane]) {
    await page.waitForSelector('#members [data-user="janedoe"]');
    await page.waitForSelector('#members [data-user="johndoe"]');
  }
  const burst = ['one', 'two', 'three'].map((n) => `streamed ${n}`);
  for (const text of burst) await send(john.page, text);
  await jane.page.waitForFunction((last) => [...document.querySelectorAll('#messages li[data-id] .text')].some((n) => n.textContent === last), burst[2]);
  assert.deepEqual((await texts(jane.page, 'johndoe')).filter((t) => burst.includes(t)), burst, 'in order');
  await send(jane.page, 'heard you');
  await john.page.waitForFunction(() => [...document.querySelectorAll('#messages li[data-id] .text')].some((n) => n.textContent === 'heard you'));
  // Each message shown once on the sender's page (the ack and the echo are one message).
  const mine = await texts(john.page, 'johndoe');
  assert.deepEqual(mine.filter((t) => burst.includes(t)), burst);
  fs.mkdirSync(path.dirname(SHOT), { recursive: true });
  await john.page.screenshot({ path: SHOT });
  await john.page.close();
  await jane.page.close();
  assert.deepEqual(problems, []);
});
