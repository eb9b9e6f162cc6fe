// The JavaScript client in a namespace whose channels need a subscription token: `getToken` is
// asked before the subscribe and ahead of each token's expiry, the subscription renewed in band
// across several 2 s tokens without a gap; a token for another user is refused, the refusal
// reaching that subscription even right after an unsubscribe.
//
//   cargo build --bin wsguard && npm ci && node --test tests/client/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Client } from '../../clients/js/wsguard.js';
import { Node, WebSocket, apiKey, dataFolder, login, next, publish, sleep, trustedApplication } from './support.mjs';

test('a subscription token is fetched, renewed before it expires, and refused for another user', async (t) => {
  const { secretFile, subscriptionToken } = trustedApplication(t);
  const dir = await dataFolder(`
[[trusted_issuers]]
secret_file = "${secretFile}"

[[namespaces]]
name = "priv"
subscribe = "token"
`);
  const key = await apiKey(dir);
  const node = await Node.start(dir);
  const { access_token: token } = await login(node.base, 'johndoe', 'secret');
  const client = new Client({
    WebSocket, url: node.wsUrl, getToken: () => token, minReconnectDelay: 100, maxReconnectDelay: 500,
  });
  t.after(async () => {
    client.close();
    await node.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const asked = [];
  const mine = client.subscribe('priv:1', {
    getToken: ({ channel }) => {
      asked.push(channel);
      return subscriptionToken('johndoe', channel, 2);
    },
  });
  const got = [];
  let ended = 0;
  mine.on('publication', (p) => got.push(p.data));
  mine.on('unsubscribed', () => { ended += 1; });
  client.connect();
  await mine.ready;

  await sleep(5000);
  assert.ok(asked.length >= 3, `tokens asked: ${asked.length}`);
  assert.ok(asked.every((channel) => channel === 'priv:1'));
  await publish(node.base, key, 'priv:1', 'after several renewals');
  await sleep(300);
  assert.deepEqual(got, ['after several renewals']);
  assert.equal(ended, 0, 'never ended');
  assert.equal(mine.state, 'active');

  // Unsubscribed (answered only if refused), then a refused subscribe: the error is the new
  // subscription's, since it names its channel, not the unsubscribe's.
  const clientErrors = [];
  client.on('error', (err) => clientErrors.push(err));
  mine.unsubscribe();
  const theirs = client.subscribe('priv:2', { getToken: () => subscriptionToken('alice', 'priv:2', 60) });
  const refused = await next(theirs, 'error');
  assert.equal(refused.code, 'forbidden');
  assert.equal(theirs.state, 'failed');
  assert.deepEqual(clientErrors, []);
});
