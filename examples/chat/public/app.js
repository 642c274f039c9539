// sluice chat: one WebSocket per page, to /ws/<room> on the page's own
// host (sluice proxies it to the chat backend). The room is the URL hash
// (#room2), the lobby by default. Everything received is shown with
// textContent, never innerHTML: names and texts come from other people.
'use strict';

(() => {
  const $ = (sel) => document.querySelector(sel);
  const nameInput = $('#name');
  const textInput = $('#text');
  const list = $('#messages');
  const status = $('#status');

  const MAX_ITEMS = 500;     // keep the page light in a busy room
  const MAX_TEXT = 2000;     // bytes; the server closes with 1009 above this
  const BACKOFF_MIN = 500;   // ms before the first reconnect
  const BACKOFF_MAX = 10000; // ms, the cap after repeated failures

  let ws = null;        // current socket, or null between attempts
  let joinedAs = null;  // the name our hello carried on the current socket
  let pending = [];     // texts typed while not joined, sent after hello
  let attempt = 0;      // failed attempts in a row, for the backoff
  let retryTimer = null;

  nameInput.value = localStorage.getItem('chat.name') || '';

  function room() {
    return location.hash.slice(1) || 'lobby';
  }

  function url() {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    return `${scheme}://${location.host}/ws/${encodeURIComponent(room())}`;
  }

  function currentName() {
    return nameInput.value.trim() || 'anon';
  }

  function setStatus(text, ok) {
    status.textContent = text;
    status.classList.toggle('connected', ok);
  }

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    $('#room').textContent = '#' + room();
    setStatus('connecting…', false);

    const sock = new WebSocket(url());
    ws = sock;
    sock.onopen = () => {
      attempt = 0;
      joinedAs = currentName();
      sock.send(JSON.stringify({ type: 'hello', name: joinedAs }));
      for (const text of pending) {
        sock.send(JSON.stringify({ type: 'message', text }));
      }
      pending = [];
      setStatus('connected', true);
    };
    sock.onmessage = (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      show(msg);
    };
    sock.onclose = (ev) => {
      if (ws !== sock) {
        return; // replaced on purpose (new name or room)
      }
      ws = null;
      joinedAs = null;
      // Exponential backoff with jitter, so that a restarted backend is
      // not met by every page at the same instant.
      const delay = Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** attempt) * (0.5 + Math.random() / 2);
      attempt++;
      const why = ev.code === 1009 ? 'message too long; ' : '';
      setStatus(`disconnected (${why}code ${ev.code}), retrying in ${(delay / 1000).toFixed(1)} s`, false);
      retryTimer = setTimeout(connect, delay);
    };
  }

  // reconnect replaces the socket at once: the server takes one hello per
  // connection, so a new name (or room) means a new connection.
  function reconnect() {
    const old = ws;
    ws = null;
    if (old) {
      old.close(1000, 'reconnecting');
    }
    connect();
  }

  function applyName() {
    localStorage.setItem('chat.name', nameInput.value.trim());
    if (ws && ws.readyState === WebSocket.OPEN && joinedAs !== currentName()) {
      reconnect();
    }
  }

  function send() {
    const text = textInput.value;
    if (!text.trim()) {
      applyName();
      return;
    }
    if (new TextEncoder().encode(text).length > MAX_TEXT) {
      notice(`message too long (over ${MAX_TEXT} bytes)`, true);
      return;
    }
    textInput.value = '';
    if (ws && ws.readyState === WebSocket.OPEN && joinedAs === currentName()) {
      ws.send(JSON.stringify({ type: 'message', text }));
      return;
    }
    // Not joined, or joined under another name: send after the hello.
    pending.push(text);
    localStorage.setItem('chat.name', nameInput.value.trim());
    if (ws && ws.readyState === WebSocket.OPEN) {
      reconnect();
    }
  }

  function show(msg) {
    switch (msg.type) {
      case 'message': {
        const li = document.createElement('li');
        li.className = 'msg';
        const time = document.createElement('time');
        const at = new Date(msg.ts);
        time.dateTime = at.toISOString();
        time.textContent = at.toLocaleTimeString();
        const name = document.createElement('span');
        name.className = 'name';
        name.textContent = msg.name;
        const text = document.createElement('span');
        text.className = 'text';
        text.textContent = msg.text;
        li.append(time, name, text);
        append(li);
        break;
      }
      case 'join':
      case 'leave':
        notice(`${msg.name} ${msg.type === 'join' ? 'joined' : 'left'} (${msg.count} here)`, false);
        break;
      case 'error':
        notice(`server: ${msg.error}`, true);
        break;
    }
  }

  function notice(text, isError) {
    const li = document.createElement('li');
    li.className = isError ? 'notice error' : 'notice';
    li.textContent = text;
    append(li);
  }

  function append(li) {
    const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
    list.append(li);
    while (list.children.length > MAX_ITEMS) {
      list.firstElementChild.remove();
    }
    if (atBottom) {
      list.scrollTop = list.scrollHeight;
    }
  }

  $('#composer').addEventListener('submit', (ev) => {
    ev.preventDefault(); // the button and Enter in either field land here
    send();
  });
  nameInput.addEventListener('change', applyName);
  window.addEventListener('hashchange', () => {
    list.replaceChildren();
    reconnect();
  });

  connect();
})();
