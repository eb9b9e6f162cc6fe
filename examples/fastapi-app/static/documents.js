// The documents page: logs in with the app's session cookie (HttpOnly: no token in the page),
// connects to wsguard with wsguard's JavaScript client and no token (wsguard asks the app who the
// cookie's user is), and follows a document (wsguard asks the app whether she is a member).
// The client reconnects and recovers what was missed after a wsguard restart. Text only: nothing
// received becomes markup.
import { Client } from '/js/wsguard.js';

const $ = (id) => document.getElementById(id);
let client = null;
let followed = null;

const UNREACHABLE = "Cannot reach wsguard: is it running, and is this page's origin in its allowed_origins?";

function showError(text) {
  $('error').textContent = text;
}

async function login(event) {
  event.preventDefault();
  showError('');
  const answer = await fetch('/session', { method: 'POST', body: new URLSearchParams(new FormData(event.target)) });
  const body = await answer.json();
  if (!answer.ok) {
    showError(body.detail || 'Login failed');
    return;
  }
  await start(body.username);
}

async function start(username) {
  $('user').textContent = username;
  $('login').hidden = true;
  $('session').hidden = false;
  const config = await (await fetch('/config.json')).json();
  // No token: the session cookie travels with the upgrade, and wsguard asks the app about it.
  client = new Client({ url: config.wsguard_url, getToken: () => null });
  let unreachable = 0;
  client.on('state', (state, detail) => {
    $('state').textContent = state;
    // A refused upgrade (403: this page's origin not in wsguard's allowed_origins) or wsguard down
    // looks alike to a page (1006): after two in a row, say where to look.
    unreachable = state === 'connected' ? 0 : unreachable + (detail?.code === 1006 ? 1 : 0);
    if (unreachable === 2) showError(UNREACHABLE);
    // Refused for good (the session ended, say): the client does not retry.
    if (state === 'closed' && detail?.reason) showError(`Disconnected: ${detail.reason}`);
  });
  client.connect();
  const answer = await fetch('/documents.json');
  if (!answer.ok) {
    showError('Could not list the documents');
    return;
  }
  const list = $('documents');
  list.replaceChildren();
  for (const doc of await answer.json()) {
    const item = document.createElement('li');
    const open = document.createElement('button');
    open.type = 'button';
    open.textContent = `${doc.title}${doc.member ? '' : ' (not a member)'}`;
    open.dataset.doc = doc.id;
    open.addEventListener('click', () => follow(doc));
    item.append(open);
    list.append(item);
  }
}

function follow(doc) {
  showError('');
  followed?.unsubscribe();
  $('notes').replaceChildren();
  $('title').textContent = doc.title;
  $('document').hidden = false;
  $('document').dataset.doc = doc.id;
  followed = client.subscribe(`doc:${doc.id}`);
  followed.on('publication', (p) => {
    const item = document.createElement('li');
    item.textContent = `${p.data.by}: ${p.data.text}`;
    $('notes').append(item);
  });
  followed.on('error', (err) => {
    showError(`Refused: ${err.message}`);
    $('document').hidden = true;
  });
}

async function share(event) {
  event.preventDefault();
  const form = event.target;
  const text = new FormData(form).get('text');
  const doc = $('document').dataset.doc;
  const answer = await fetch(`/documents/${encodeURIComponent(doc)}/notes`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ text }),
  });
  if (!answer.ok) showError((await answer.json()).detail || 'Could not share the note');
  else form.reset();
}

async function logout() {
  await fetch('/session', { method: 'DELETE' });
  client?.close();
  window.location.reload();
}

$('login').addEventListener('submit', login);
$('note').addEventListener('submit', share);
$('logout').addEventListener('click', logout);
