// The application behind wsguard for tests/centrifuge/peer-suite.sh: it answers wsguard's connect
// proxy (docs/protocol.md §10, Centrifugo's proxy format) for centrifuge-js's integration suite,
// whose clients connect without a token because its Centrifugo runs with `client.insecure: true`.
// It is the suite's counterpart of that setting and nothing more: no token, no server API, no
// other feature is faked here.
//
// Every connection is admitted as one fixed user, `suite`, without expiry. Centrifugo's insecure
// mode admits every token-less client as the same anonymous user (""), so its presence counts one
// user however many clients there are; one shared name keeps the suite's presence expectations
// (`numUsers` 1 for one client, 0 once it leaves, `numUsers` > 0 alongside `numClients`) meaning
// what they mean against Centrifugo. wsguard refuses an empty user, hence a name. No `expire_at`:
// insecure connections do not expire in Centrifugo either, so no refresh proxy is needed.
//
//   node tests/centrifuge/peer-suite-app.mjs   # prints `listening <port>` once it is ready
//
// Listens on 127.0.0.1 on a port the system picks (PEER_APP_PORT to choose one); answers every
// POST to /connect, counts the calls, and prints the count when it is stopped (SIGTERM, SIGINT).
import http from 'node:http';

const USER = 'suite';
let calls = 0;

const server = http.createServer((req, res) => {
  const answer = (status, value) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(value));
  };
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (chunk) => {
    body += chunk;
  });
  req.on('end', () => {
    if (req.method !== 'POST' || req.url !== '/connect') return answer(404, {});
    let request;
    try {
      request = JSON.parse(body);
    } catch {
      return answer(400, {});
    }
    calls++;
    if (typeof request.client !== 'string' || request.client === '') {
      return answer(200, { error: { code: 400, message: 'no client id' } });
    }
    answer(200, { result: { user: USER } });
  });
});

server.listen(Number(process.env.PEER_APP_PORT ?? 0), '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    console.log(`connect calls: ${calls}`);
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  });
}
