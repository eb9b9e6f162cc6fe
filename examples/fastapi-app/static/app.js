// Logs in through the app's /token, connects straight to wsguard with that token (wsguard's
// JavaScript client: it reconnects after a restart of wsguard and recovers what was published
// meanwhile), subscribes to the user's personal channel and shows what arrives. Text only:
// nothing received becomes markup.
import { Client } from "/js/wsguard.js";

const $ = (id) => document.getElementById(id);
let token = null; // in memory only: never in localStorage, never in a URL
let client = null;
let username = null;

const UNREACHABLE =
  "Cannot reach wsguard: is it running, and is this page's origin in its allowed_origins?";

function showError(text) {
  $("error").textContent = text;
}

async function login(event) {
  event.preventDefault();
  showError("");
  const form = new FormData(event.target);
  const answer = await fetch("/token", { method: "POST", body: new URLSearchParams(form) });
  const body = await answer.json();
  if (!answer.ok) {
    showError(body.detail || "Login failed");
    return;
  }
  token = body.access_token;
  const me = await fetch("/users/me/", { headers: { Authorization: `Bearer ${token}` } });
  const user = await me.json();
  if (!me.ok) {
    showError(user.detail || "Could not read the user");
    return;
  }
  username = user.username;
  $("user").textContent = username;
  $("channel").textContent = `user:${username}`;
  $("login").hidden = true;
  $("session").hidden = false;
  const config = await (await fetch("/config.json")).json();
  connect(config.wsguard_url);
}

function connect(url) {
  loggedOut();
  const mine = new Client({
    url,
    // The token travels as a subprotocol ("bearer, <token>"): a browser cannot set headers on a
    // WebSocket, and a query string would put the token in access logs.
    tokenTransport: "subprotocol",
    getToken: ({ reason }) => {
      if (reason === "connect" && token) return token;
      // Expired or refused: the tutorial's token cannot be renewed without the password.
      throw new Error("your session expired: log in again");
    },
  });
  client = mine;
  let unreachable = 0;
  mine.on("state", (state, detail) => {
    $("state").textContent = detail?.reason ? `${state}: ${detail.reason}` : state;
    // A refused upgrade (403: this page's origin not in wsguard's allowed_origins) or wsguard down
    // looks alike to a page (1006): after two in a row, say where to look.
    unreachable = state === "connected" ? 0 : unreachable + (detail?.code === 1006 ? 1 : 0);
    if (unreachable === 2) showError(UNREACHABLE);
    if (state === "closed" && client === mine) loggedOut("signed out by the server: log in again");
  });
  mine.on("error", (err) => {
    if (err.code === "token" && client === mine) loggedOut(err.message);
  });
  const channel = mine.subscribe(`user:${username}`);
  channel.on("subscribed", () => {
    $("state").textContent = `subscribed to user:${username}`;
  });
  channel.on("publication", show);
  channel.on("error", (err) => showError(`wsguard: ${err.code}: ${err.message}`));
  mine.connect();
}

/** Stops the socket (its token no longer works: expired, revoked) and asks to log in again. */
function loggedOut(why) {
  const previous = client;
  client = null;
  previous?.close();
  if (why) {
    token = null;
    $("login").hidden = false;
    showError(why);
  }
}

function show(publication) {
  const item = document.createElement("li");
  const time = document.createElement("time");
  time.textContent = publication.ts || "";
  item.append(time);
  const data = publication.data || {};
  item.append(typeof data.text === "string" ? data.text : JSON.stringify(data));
  $("publications").prepend(item);
}

async function notify(event) {
  event.preventDefault();
  showError("");
  const text = new FormData(event.target).get("text");
  const answer = await fetch(`/notify/${encodeURIComponent(username)}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify({ text }),
  });
  if (!answer.ok) {
    const body = await answer.json().catch(() => ({}));
    showError(typeof body.detail === "string" ? body.detail : `Notify failed (${answer.status})`);
    return;
  }
  event.target.reset();
}

$("login").addEventListener("submit", (event) => login(event).catch((e) => showError(String(e))));
$("notify").addEventListener("submit", (event) => notify(event).catch((e) => showError(String(e))));
