// The JavaScript client with a trusted issuer's tokens whose `channels` claim changes: a token
// renewed in band that no longer lists a channel ends that subscription ('unsubscribed'), and it
// is not followed again; the channels still listed go on.
//
//   cargo build --bin wsguard && npm ci && node --test tests/client/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Client } from '../../clients/js/wsguard.js';
import { Node, WebSocket, apiKey, dataFolder, next, publish, sleep, trustedApplication, until } from './support.mjs';

test('a renewed token that no longer lists a channel ends its subscription, for good', async (t) => {
  const { secretFile, token } = trustedApplication(t);
  const config = `
[[trusted_issuers]]
secret_file = "${secretFile}"

[[namespaces]]
name = "team"
subscribe = "claim"
publish = "api"
`;
  const dir = await dataFolder(config);
  const key = await apiKey(dir);
  // Tokens live 4 s and are warned of 3 s ahead: renewed in band about a second in.
  const node = await Node.start(dir, ['--expiry-warning', '3s']);
  const grants = [['team:*'], ['team:red']];
  const asked = [];
  const client = new Client({
    WebSocket,
    url: node.wsUrl,
    minReconnectDelay: 100,
    maxReconnectDelay: 500,
    getToken: ({ reason }) => {
      asked.push(reason);
      return token('bob', grants[Math.min(asked.length - 1, 1)], 4);
    },
  });
  t.after(async () => {
    client.close();
    await node.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const red = client.subscribe('team:red');
  const blue = client.subscribe('team:blue');
  const got = { red: [], blue: [] };
  red.on('publication', (p) => got.red.push(p.data));
  blue.on('publication', (p) => got.blue.push(p.data));
  client.connect();
  await Promise.all([red.ready, blue.ready]);

  const ended = await next(blue, 'unsubscribed', 10_000);
  assert.deepEqual([ended.code, blue.state], ['forbidden', 'ended']);
  assert.equal(client.subscription('team:blue'), undefined);
  assert.deepEqual(asked, ['connect', 'expiring']);
  await publish(node.base, key, 'team:blue', 'not for bob any more');
  await publish(node.base, key, 'team:red', 'still for bob');
  await sleep(500);
  assert.deepEqual(got, { red: ['still for bob'], blue: [] });

  // Across a reconnect (the next renewal, a new socket after the node restarts): red is followed
  // again from its position, blue is not asked for.
  await node.restart();
  await next(client, 'state', 10_000, (state) => state === 'connected');
  // Delivered live or, when red resubscribes after it was stored, recovered: either may come
  // before the API call returns.
  await publish(node.base, key, 'team:red', 'after the restart');
  await until(() => got.red.length >= 2, 'the publication after the restart');
  assert.deepEqual(got, { red: ['still for bob', 'after the restart'], blue: [] });
});
