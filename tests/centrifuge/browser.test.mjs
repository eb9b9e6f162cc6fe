// Centrifugo's JavaScript SDK in a real browser (Debian's Chromium through playwright-core): its
// browser bundle (node_modules/centrifuge/dist, served as a script of the origin) on a page of
// wsguard's origin, logged in by the login cookies; `getToken` takes access tokens from
// `POST /refresh` with the cookies, as a browser app would, across several 3 s tokens.
//
// Environment: WSGUARD_BIN (default target/debug/wsguard), CHROMIUM_PATH (default /usr/bin/chromium).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Node, apiKey, dataFolder, launchChromium, publish } from '../client/support.mjs';

const BUNDLE = fileURLToPath(new URL('../../node_modules/centrifuge/dist/centrifuge.js', import.meta.url));
let dir;
let node;
let key;
let browser;

before(async () => {
  dir = await dataFolder('[[namespaces]]\nname = "feed"\nsubscribe = "any"\npublish = "api"\n');
  key = await apiKey(dir);
  node = await Node.start(dir, ['--access-ttl=3s']);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close().catch(() => {});
  await node?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('in Chromium: the SDK connects with tokens from /refresh, receives publications and renews in band', async () => {
  const context = await browser.newContext();
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(String(err)));
  await page.goto(`${node.base}/login?next=/token-demo`);
  await page.fill('#username', 'johndoe');
  await page.fill('#password', 'secret');
  await Promise.all([page.waitForURL((url) => url.pathname === '/token-demo'), page.click('#login-submit')]);
  // Served at a path of wsguard's origin by the browser's own request interception: the pages'
  // Content-Security-Policy admits scripts of the origin only, as an application's would.
  await page.route('**/centrifuge.js', (route) => route.fulfill({ path: BUNDLE, contentType: 'text/javascript' }));
  await page.addScriptTag({ url: '/centrifuge.js' });

  await page.evaluate(async () => {
    const cookie = (name) => document.cookie.split('; ').find((c) => c.startsWith(`${name}=`))?.split('=')[1] ?? '';
    const state = { tokens: 0, data: [], connects: 0 };
    window.sdkState = state;
    const client = new Centrifuge(`ws://${location.host}/connection/websocket`, {
      getToken: async () => {
        const res = await fetch('/refresh', {
          method: 'POST',
          credentials: 'same-origin',
          headers: { 'X-CSRF-Token': decodeURIComponent(cookie('csrf_refresh_token')) },
        });
        if (!res.ok) throw new Error(`refresh ${res.status}`);
        state.tokens++;
        return (await res.json()).access_token;
      },
    });
    client.on('connected', () => state.connects++);
    const sub = client.newSubscription('feed:browser');
    sub.on('publication', (ctx) => state.data.push(ctx.data));
    const subscribed = new Promise((resolve) => sub.once('subscribed', resolve));
    sub.subscribe();
    client.connect();
    await subscribed;
  });
  await publish(node.base, key, 'feed:browser', { n: 1 });
  await page.waitForFunction(() => window.sdkState.data.length === 1);
  // Three 3 s tokens later, still the one connection; a publication still arrives.
  await page.waitForFunction(() => window.sdkState.tokens >= 4, null, { timeout: 15_000 });
  await publish(node.base, key, 'feed:browser', { n: 2 });
  await page.waitForFunction(() => window.sdkState.data.length === 2);
  const state = await page.evaluate(() => window.sdkState);
  assert.deepEqual(state.data, [{ n: 1 }, { n: 2 }]);
  assert.equal(state.connects, 1, 'renewed in band, never reconnected');
  assert.deepEqual(problems, []);
  await context.close();
});
