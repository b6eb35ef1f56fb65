"""``GET /chat``: a small chat page on the realtime WebSocket; open it in two tabs to talk.

Plain HTML and JavaScript, no build step: the page speaks the ``RealtimeClient`` protocol on
``/_rt/ws?cid=`` itself (subscribe with ``lastEventId: 0`` to replay the kept history of
``chat:lobby`` (``platform.toml`` keeps ``chat:*``), ``publish``, ``presence:join``/``leave``).
``?name=`` picks the name shown (a random guest name otherwise). Every text is inserted with
``textContent``: a message can never become markup.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Route

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Chat - platform-shim</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 0; display: grid;
         grid-template-columns: 1fr 14rem; height: 100vh; }
  main { display: flex; flex-direction: column; padding: 1rem; min-height: 0; }
  #messages { flex: 1; overflow-y: auto; list-style: none; padding: 0; margin: 0; }
  #messages li { padding: .2rem 0; }
  #messages b { margin-right: .4rem; }
  form { display: flex; gap: .5rem; margin-top: .5rem; }
  #text { flex: 1; padding: .4rem; }
  aside { border-left: 1px solid #ddd; padding: 1rem; background: #fafafa; }
  #status { color: #777; font-size: 13px; }
</style>
</head>
<body>
<main>
  <h1>#lobby <span id="status">connecting…</span></h1>
  <ul id="messages" aria-live="polite"></ul>
  <form id="form">
    <input id="text" autocomplete="off" placeholder="Say something" maxlength="2000" required>
    <button>Send</button>
  </form>
</main>
<aside>
  <h2>Here now</h2>
  <ul id="members"></ul>
</aside>
<script>
"use strict";
const CHANNEL = "chat:lobby";
const params = new URLSearchParams(location.search);
const me = (params.get("name") || "guest-" + Math.random().toString(36).slice(2, 7)).slice(0, 40);
const cid = "chat-" + me + "-" + Math.random().toString(36).slice(2, 10);
const messages = document.getElementById("messages");
const members = document.getElementById("members");
const status = document.getElementById("status");
const present = new Map();
let lastSeq = 0;
let socket = null;

function addMessage(from, text) {
  const item = document.createElement("li");
  const who = document.createElement("b");
  who.textContent = from || "anonymous";
  item.append(who, document.createTextNode(text));
  messages.append(item);
  messages.scrollTop = messages.scrollHeight;
}

function renderMembers() {
  members.replaceChildren(...[...present.keys()].sort().map((name) => {
    const item = document.createElement("li");
    item.textContent = name + (name === me ? " (you)" : "");
    return item;
  }));
}

function onEvent(event) {
  if (event.channel !== CHANNEL) return;
  if (event.event === "message") {
    if (event.seq && event.seq <= lastSeq) return;  // already shown (a reconnect's replay)
    if (event.seq) lastSeq = event.seq;
    const data = event.data || {};
    addMessage(event.userId, typeof data.text === "string" ? data.text : JSON.stringify(data));
  } else if (event.event === "presence:join" || event.event === "presence:update") {
    present.set(event.userId, event.metadata);
    renderMembers();
  } else if (event.event === "presence:leave") {
    present.delete(event.userId);
    renderMembers();
  } else if (event.event === "subscribed") {
    status.textContent = "connected as " + me;
    document.body.dataset.ready = "1";
  }
}

async function loadMembers() {
  const answer = await fetch("/api/realtime/presence/" + encodeURIComponent(CHANNEL));
  if (!answer.ok) return;
  for (const member of (await answer.json()).members) present.set(member.userId, member.metadata);
  renderMembers();
}

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  socket = new WebSocket(proto + "//" + location.host + "/_rt/ws?cid=" + encodeURIComponent(cid));
  socket.onopen = () => {
    socket.send(JSON.stringify({ action: "subscribe", channel: CHANNEL, lastEventId: lastSeq }));
    socket.send(JSON.stringify({ action: "presence:join", channel: CHANNEL, userId: me }));
    loadMembers();
  };
  socket.onmessage = (message) => onEvent(JSON.parse(message.data));
  socket.onclose = () => {
    status.textContent = "reconnecting…";
    delete document.body.dataset.ready;
    setTimeout(connect, 1000);
  };
}

document.getElementById("form").addEventListener("submit", (submitted) => {
  submitted.preventDefault();
  const input = document.getElementById("text");
  if (!input.value || !socket || socket.readyState !== WebSocket.OPEN) return;
  socket.send(JSON.stringify({ action: "publish", channel: CHANNEL, userId: me,
                               data: { text: input.value } }));
  input.value = "";
});

window.addEventListener("pagehide", () => {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ action: "presence:leave", channel: CHANNEL }));
  }
});

connect();
</script>
</body>
</html>
"""


async def chat(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE)


routes: list[BaseRoute] = [Route("/chat", chat, methods=["GET"])]
