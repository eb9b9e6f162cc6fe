// The application decides, as Centrifugo's SDK (`centrifuge` from npm) meets it: subscription
// tokens fetched and renewed through the SDK's `getToken` across several expiries; the subscribe
// proxy's refusal reaching the Subscription with the application's code; the publish proxy
// rewriting what subscribers receive; `rpc` answered by the application with the user it names.
//
//   cargo build --bin wsguard && npm ci && node --test tests/centrifuge/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import { Centrifuge } from 'centrifuge';
import { Node, WebSocket, apiKey, dataFolder, login, publish, sleep, trustedApplication } from '../client/support.mjs';
import { once as next } from './support.mjs';

/** The application's proxy endpoints: documents 1 and 2 exist, only 1 is johndoe's; `shout` upper-cases. */
async function application() {
  const calls = { subscribe: [], publish: [], rpc: [] };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      const event = req.url.split('/').pop();
      const call = JSON.parse(body);
      calls[event]?.push(call);
      const answer = (value) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(value));
      };
      if (event === 'subscribe') {
        if (call.channel === 'doc:1' && call.user === 'johndoe') return answer({ result: { data: { title: 'Plans' } } });
        return answer({ error: { code: 4031, message: 'not a member' } });
      }
      if (event === 'publish') return answer({ result: { data: { text: call.data.text.toUpperCase(), by: call.user } } });
      if (event === 'rpc') return answer({ result: { data: { method: call.method, user: call.user, echo: call.data } } });
      res.writeHead(404).end();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}/rt`;
  return { url, calls, close: () => new Promise((resolve) => server.close(resolve)) };
}

test('subscription tokens, the subscribe and publish proxies and rpc, through the SDK', async (t) => {
  const app = await application();
  const issuer = trustedApplication(t);
  const dir = await dataFolder(`
[proxy]
rpc = "${app.url}/rpc"

[[namespaces]]
name = "doc"
subscribe = "proxy"
subscribe_proxy = "${app.url}/subscribe"
publish = "proxy"
publish_proxy = "${app.url}/publish"

[[namespaces]]
name = "priv"
subscribe = "token"

[[trusted_issuers]]
secret_file = "${issuer.secretFile}"
`);
  const key = await apiKey(dir);
  const node = await Node.start(dir);
  const clients = [];
  t.after(async () => {
    for (const client of clients) client.disconnect();
    await node.stop();
    await app.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const { access_token: token } = await login(node.base, 'johndoe', 'secret');
  const sdk = () => {
    const client = new Centrifuge(`ws://127.0.0.1:${node.port}/connection/websocket`, {
      websocket: WebSocket, token, minReconnectDelay: 100, maxReconnectDelay: 500, timeout: 3000,
    });
    clients.push(client);
    client.connect();
    return client;
  };
  const client = sdk();
  let disconnects = 0;
  client.on('disconnected', () => { disconnects += 1; });

  // A subscription token of 2 s, renewed by the SDK's getToken three times on one subscription.
  const fetched = [];
  const secret = client.newSubscription('priv:1', {
    getToken: async (ctx) => {
      fetched.push(ctx.channel);
      return issuer.subscriptionToken('johndoe', ctx.channel, 2);
    },
  });
  let unsubscribed = 0;
  secret.on('unsubscribed', () => { unsubscribed += 1; });
  const first = next(secret, 'subscribed');
  secret.subscribe();
  await first;
  await sleep(5000);
  assert.ok(fetched.length >= 3, `tokens fetched: ${fetched.length}`);
  const received = next(secret, 'publication');
  await publish(node.base, key, 'priv:1', { text: 'still here' });
  assert.deepEqual((await received).data, { text: 'still here' });
  assert.equal(unsubscribed, 0);
  assert.equal(disconnects, 0, 'one connection throughout');

  // A token for another user is refused with 103; the SDK gives up on that subscription.
  const stolen = client.newSubscription('priv:2', { token: issuer.subscriptionToken('alice', 'priv:2', 60) });
  const denied = next(stolen, 'unsubscribed');
  stolen.subscribe();
  assert.equal((await denied).code, 103);

  // The subscribe proxy: document 1 is johndoe's (with the application's data), 2 is not.
  const mine = client.newSubscription('doc:1');
  const opened = next(mine, 'subscribed');
  mine.subscribe();
  assert.deepEqual((await opened).data, { title: 'Plans' });
  const theirs = client.newSubscription('doc:2');
  const refused = next(theirs, 'unsubscribed');
  theirs.subscribe();
  const ended = await refused;
  assert.equal(ended.code, 4031);
  assert.equal(ended.reason, 'not a member');
  assert.equal(app.calls.subscribe.at(-1).user, 'johndoe');

  // The publish proxy rewrites what a second connection receives.
  const reader = sdk();
  const readers = reader.newSubscription('doc:1');
  const ready = next(readers, 'subscribed');
  readers.subscribe();
  await ready;
  const arrived = next(readers, 'publication');
  await mine.publish({ text: 'hello' });
  assert.deepEqual((await arrived).data, { text: 'HELLO', by: 'johndoe' });

  // rpc: the application answers with the connection's user.
  const answer = await client.rpc('getPrice', { id: 12 });
  assert.deepEqual(answer.data, { method: 'getPrice', user: 'johndoe', echo: { id: 12 } });
});
