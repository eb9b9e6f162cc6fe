// Logs in through the app's /token, connects straight to wsguard with that token, subscribes to
// the user's personal channel and shows what arrives. Text only: nothing received becomes markup.
"use strict";

const $ = (id) => document.getElementById(id);
let token = null; // in memory only: never in localStorage, never in a URL
let socket = null;
let username = null;

// Why wsguard closed the socket (docs/protocol.md, close codes).
const CLOSE_REASONS = {
  1000: "closed",
  1001: "wsguard is restarting",
  1008: "refused",
  4001: "your session expired: log in again",
  4003: "signed out by the server: log in again",
  4029: "too many connections or messages",
};

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
  if (socket) socket.close(1000);
  // The token travels as a subprotocol ("bearer, <token>"): a browser cannot set headers on a
  // WebSocket, and a query string would put the token in access logs.
  socket = new WebSocket(url, ["bearer", token]);
  $("state").textContent = "connecting";
  socket.addEventListener("message", (event) => handle(JSON.parse(event.data)));
  socket.addEventListener("close", (event) => {
    const reason = CLOSE_REASONS[event.code] || `closed (${event.code})`;
    $("state").textContent = event.reason ? `${reason}: ${event.reason}` : reason;
    if (event.code === 4001 || event.code === 4003) {
      token = null;
      $("login").hidden = false;
    }
  });
}

function handle(frame) {
  switch (frame.type) {
    case "welcome":
      $("state").textContent = "open";
      socket.send(JSON.stringify({ type: "subscribe", channel: `user:${username}` }));
      break;
    case "subscribed":
      $("state").textContent = `subscribed to ${frame.channel}`;
      break;
    case "publication":
      show(frame);
      break;
    case "error":
      showError(`wsguard: ${frame.code}: ${frame.detail || ""}`);
      break;
    default: // expiring, refreshed, …: nothing to show
      break;
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
