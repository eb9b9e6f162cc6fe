// The JavaScript client in a real browser (Debian's Chromium through playwright-core), imported
// from the server itself (`/client.js`) by a page of wsguard's origin, authenticated by the
// login cookies as the README's recipe does: no token on connect, `POST /refresh` for renewals.
//
// Environment: WSGUARD_BIN (default target/debug/wsguard), CHROMIUM_PATH (default /usr/bin/chromium).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Node, dataFolder, launchChromium } from './support.mjs';

let dir;
let node;
let browser;

before(async () => {
  dir = await dataFolder('');
  node = await Node.start(dir, ['--access-ttl=3s']);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close().catch(() => {});
  await node?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** A page of wsguard's origin, logged in as `user` through the login form (cookies). */
async function loggedIn(user, password) {
  const context = await browser.newContext();
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(String(err)));
  await page.goto(`${node.base}/login?next=/token-demo`);
  await page.fill('#username', user);
  await page.fill('#password', password);
  await Promise.all([page.waitForURL((url) => url.pathname === '/token-demo'), page.click('#login-submit')]);
  return { page, problems };
}

test('in Chromium: imported from /client.js, cookies authenticate, rooms work, renewals by /refresh keep the socket', async () => {
  const { page, problems } = await loggedIn('johndoe', 'secret');
  const result = await page.evaluate(async () => {
    const { Client } = await import('/client.js');
    const cookie = (name) => document.cookie.split('; ').find((c) => c.startsWith(`${name}=`))?.split('=')[1] ?? '';
    const asked = [];
    const client = new Client({
      url: () => `ws://${location.host}/chat/ws?csrf_token=${cookie('csrf_access_token')}`,
      getToken: async ({ reason }) => {
        asked.push(reason);
        if (reason === 'connect') return null;
        const res = await fetch('/refresh', {
          method: 'POST',
          credentials: 'same-origin',
          headers: { 'X-CSRF-Token': decodeURIComponent(cookie('csrf_refresh_token')) },
        });
        if (!res.ok) throw new Error(`refresh ${res.status}`);
        const token = (await res.json()).access_token;
        return reason === 'expiring' ? token : null;
      },
      pingInterval: 1000,
    });
    const states = [];
    const refreshed = [];
    client.on('state', (state) => states.push(state));
    client.on('refreshed', (exp) => refreshed.push(exp));
    const room = client.join('general');
    const messages = [];
    room.on('message', (m) => messages.push(m.text));
    client.connect();
    await room.ready;
    const ack = await room.send('from the browser');
    // Three access tokens' lives (3 s each), renewed in band through /refresh with the cookies.
    await new Promise((resolve) => setTimeout(resolve, 8000));
    const later = await room.send('still connected');
    for (let i = 0; i < 100 && messages.length < 2; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    const result = {
      user: client.user, ack: ack.id, later: later.id, messages, states: [...states], refreshed: refreshed.length,
      asked, members: room.members,
    };
    client.close();
    return result;
  });
  assert.equal(result.user, 'johndoe');
  assert.deepEqual(result.members, ['johndoe']);
  assert.equal(result.later, result.ack + 1);
  assert.deepEqual(result.messages, ['from the browser', 'still connected']);
  assert.deepEqual(result.states, ['connecting', 'connected'], 'one connection the whole time');
  assert.ok(result.refreshed >= 3, `renewed ${result.refreshed} times`);
  assert.equal(result.asked[0], 'connect');
  assert.ok(result.asked.slice(1).every((r) => r === 'expiring'), result.asked.join());
  assert.deepEqual(problems, []);
});

test('in Chromium: a token left to expire (4001) is renewed by /refresh and the socket reopens with the new cookie', async () => {
  const { page, problems } = await loggedIn('janedoe', 'secret2');
  const result = await page.evaluate(async () => {
    const { Client } = await import('/client.js');
    const cookie = (name) => document.cookie.split('; ').find((c) => c.startsWith(`${name}=`))?.split('=')[1] ?? '';
    const asked = [];
    const urls = [];
    const client = new Client({
      url: () => {
        urls.push(cookie('csrf_access_token'));
        return `ws://${location.host}/chat/ws?csrf_token=${cookie('csrf_access_token')}`;
      },
      getToken: async ({ reason }) => {
        asked.push(reason);
        if (reason !== 'expired') return null; // no in-band renewal: let it expire
        const res = await fetch('/refresh', {
          method: 'POST',
          credentials: 'same-origin',
          headers: { 'X-CSRF-Token': decodeURIComponent(cookie('csrf_refresh_token')) },
        });
        if (!res.ok) throw new Error(`refresh ${res.status}`);
        return null; // the new cookies authenticate the reconnect
      },
    });
    const states = [];
    client.on('state', (state, detail) => states.push([state, detail.code ?? null]));
    const room = client.join('general');
    const histories = [];
    room.on('history', (h) => histories.push(h.recovered ?? null));
    client.connect();
    await room.ready;
    const first = client.exp;
    const deadline = Date.now() + 12000;
    while (Date.now() < deadline && !(states.length >= 5 && client.state === 'connected')) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    const result = { states: [...states], asked, first, exp: client.exp, urls, histories };
    client.close();
    return result;
  });
  assert.deepEqual(result.states.slice(0, 5), [
    ['connecting', null], ['connected', null], ['disconnected', 4001], ['connecting', null], ['connected', null],
  ]);
  assert.deepEqual(result.asked.slice(0, 3), ['connect', 'expiring', 'expired']);
  assert.ok(result.exp > result.first, 'a new token');
  assert.notEqual(result.urls[1], result.urls[0], 'the URL carries the new CSRF value');
  assert.deepEqual(result.histories.slice(0, 2), [null, true], 'the room re-joined and recovered');
  assert.deepEqual(problems, []);
});
