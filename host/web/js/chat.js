// The chat client's entry point: wires the API, the socket and the views together.

import { Api } from './api.js';
import { Outbox } from './outbox.js';
import { Socket } from './socket.js';
import { ChatState } from './state.js';
import { $, h, replace, sleep } from './dom.js';
import { renderRoomList, renderTyping, TimelineView } from './views.js';
import { FileCache, formatSize, uploadFile } from './files.js';
import { addMemberDialog, directDialog, newGroupDialog } from './dialogs.js';
import { SearchView } from './search.js';
import { ThreadView } from './thread.js';
import {
  MentionAutocomplete, MentionsView, Notifier, mentionCandidates, mentionNodes, mentionRanges, mentionsMe,
} from './mentions.js';
import { renderMarkdown } from './markdown.js';
import { Reactions, closePicker } from './reactions.js';
import { PinsView } from './pins.js';
import { PresenceControl, presenceDot } from './presence.js';

const TYPING_SEND_EVERY_MS = 3_000;
const TYPING_IDLE_MS = 4_000;
const TYPING_SHOWN_MS = 6_000;

const api = new Api(() => endChat('Your session ended. Please log in again.'));
let state = null;
let socket = null;
let timeline = null;
let outbox = null;
let currentId = null;
let typingSentAt = 0;
let typingTimer = null;

const els = {
  login: $('#login-view'),
  loginForm: $('#login-form'),
  loginError: $('#login-error'),
  chat: $('#chat-view'),
  me: $('#me'),
  roomList: $('#room-list'),
  status: $('#conn-status'),
  room: $('#room'),
  roomTitle: $('#room-title'),
  roomTopic: $('#room-topic'),
  addMember: $('#add-member'),
  timeline: $('#timeline'),
  typing: $('#typing'),
  notices: $('#notices'),
  composer: $('#composer'),
  input: $('#composer-input'),
  attach: $('#attach'),
  attachInput: $('#attach-input'),
  pending: $('#pending-files'),
};

const thread = new ThreadView(
  {
    panel: $('#thread-panel'),
    root: $('#thread-root'),
    body: $('#thread-body'),
    replies: $('#thread-replies'),
    form: $('#thread-composer'),
    input: $('#thread-input'),
    alsoToRoom: $('#thread-also-to-room'),
    send: $('#thread-send'),
    close: $('#thread-close'),
  },
  {
    api,
    toast,
    onToggle: (open) => {
      els.chat.classList.toggle('thread-open', open);
      // One panel beside the timeline at a time.
      if (open) pins.close();
    },
    // A reply also sent to the room shows in the timeline too.
    onSent: (room, alsoToRoom) => {
      if (room.id === currentId) timeline.render(room, alsoToRoom ? 'bottom' : 'auto');
    },
    onClosed: () => {
      if (currentId !== null) els.input.focus();
    },
  },
);

const search = new SearchView(
  {
    form: $('#search-form'),
    input: $('#search-input'),
    panel: $('#search-panel'),
    list: $('#search-list'),
    more: $('#search-more'),
    status: $('#search-status'),
    close: $('#search-close'),
    rooms: $('#room-nav'),
  },
  {
    api,
    roomTitle: (result) => {
      const room = state?.rooms.get(result.room.id);
      return room ? state.roomTitle(room) : result.room.name || `Room #${result.room.id}`;
    },
    open: (roomId, seq) => jumpTo(roomId, seq),
  },
);

// ---- pins: the header's button, the panel, the markers ----

const pins = new PinsView(
  {
    button: $('#pins-button'),
    count: $('#pins-count'),
    panel: $('#pins-panel'),
    list: $('#pins-list'),
    status: $('#pins-status'),
    setting: $('#pins-setting'),
    membersMayPin: $('#pins-members-may-pin'),
    close: $('#pins-close'),
  },
  {
    api,
    toast,
    userName: (id) => state?.userName(id) ?? `user #${id}`,
    // Like the timeline: Markdown, with the mentions the server recorded highlighted.
    body: (message) => {
      const text = message.body ?? '';
      return renderMarkdown(text, { marks: state ? mentionRanges(text, message, state) : [] });
    },
    jump: (roomId, seq) => {
      // Below 700 px the panel covers the timeline: make way for the message.
      if (window.matchMedia('(max-width: 700px)').matches) pins.close();
      jumpTo(roomId, seq);
    },
    onToggle: (open) => {
      els.chat.classList.toggle('pins-open', open);
      if (open) thread.close();
    },
    onChange: (room) => rerender(room),
    refreshRoom: (room) => loadRoomDetail(room),
  },
);

// ---- mentions: the list, the autocomplete in both composers, notifications ----

const mentions = new MentionsView(
  {
    button: $('#mentions-button'),
    panel: $('#mentions-panel'),
    list: $('#mentions-list'),
    more: $('#mentions-more'),
    status: $('#mentions-status'),
    close: $('#mentions-close'),
    rooms: $('#room-nav'),
  },
  {
    api,
    roomTitle: (roomId) => {
      const room = state?.rooms.get(roomId);
      return room ? state.roomTitle(room) : `Room #${roomId}`;
    },
    userName: (id) => state?.userName(id) ?? `user #${id}`,
    body: (message) => (state ? mentionNodes(message.body ?? '', message, state) : message.body ?? ''),
    open: (roomId, seq) => jumpTo(roomId, seq),
    // One sidebar panel at a time.
    onOpen: () => {
      if (!$('#search-panel').hidden) search.close();
    },
  },
);
// A search takes the mentions list's place (the search shows its own panel).
$('#search-form').addEventListener('submit', () => mentions.close(false));

const composerMentions = new MentionAutocomplete(els.input,
  (prefix) => mentionCandidates(state, state?.rooms.get(currentId), prefix),
  (id) => presenceDot(state?.presence, id));
const threadMentions = new MentionAutocomplete($('#thread-input'),
  (prefix) => mentionCandidates(state, thread.room(), prefix),
  (id) => presenceDot(state?.presence, id));

const notifier = new Notifier($('#enable-notifications'));

// ---- presence: the dots, our own dot and "Hide my presence", saying away / online ----

const presence = new PresenceControl(
  { me: $('#me-presence'), toggle: $('#presence-toggle'), hidden: $('#presence-hidden') },
  {
    api,
    toast,
    socket: () => socket,
    // Dots repaint themselves; the room list's labels say the peers' presence in words.
    onChange: ({ all }) => {
      if (!state) return;
      renderRooms();
      // Turned on or off: the timeline's and the header's dots come or go.
      const room = state.rooms.get(currentId);
      if (all && room) {
        renderRoomTitle(room);
        rerender(room);
      }
    },
  },
);

/** Load the room's detail: its members (for the autocomplete; kept up to date by the
 * membership events), our role and whether members may pin. Done each time the room is
 * opened (and the pins panel, and the window focused): no event says the setting changed. */
async function loadRoomDetail(room) {
  if (room.detailLoading || !state) return;
  if (room.kind === 'direct' && room.peer) {
    // Both people of a direct room may pin; there is nothing else to learn.
    room.members = new Set([state.me.id, room.peer]);
    return;
  }
  room.detailLoading = true;
  const current = state;
  try {
    const detail = await api.get(`/api/v1/rooms/${room.id}`);
    if (current !== state) return;
    room.members = new Set(detail.members.map((m) => m.user_id));
    const role = detail.members.find((m) => m.user_id === state.me.id)?.role ?? room.role;
    const maySay = Boolean(detail.members_may_pin);
    if (role !== room.role || maySay !== Boolean(room.members_may_pin)) {
      room.role = role;
      room.members_may_pin = maySay;
      // The Pin actions, the panel's Unpin buttons and its setting follow.
      rerender(room);
      pins.render();
    }
    if ([...room.members].some((id) => id !== state.me.id && !state.users.has(id))) {
      await refreshUsers().catch(() => {});
    }
  } catch {
    // Tried again when the room is next opened.
  } finally {
    room.detailLoading = false;
  }
  // Someone may be typing `@` already.
  composerMentions.refresh();
  threadMentions.refresh();
}

/** A live message that mentions us, from someone else: the list, and a notification unless
 * we are looking at the room. Not for the replay of a resume (the badges say it). */
function onMention(room, event) {
  mentions.add(event);
  if (!socket?.online) return;
  if (room.visible && document.hasFocus()) return;
  const sender = state.userName(event.sender_id);
  const title = room.kind === 'direct' ? sender : `${sender} in ${state.roomTitle(room)}`;
  notifier.show(title, event.body ?? '', `switchboard-room-${room.id}`, () => jumpTo(room.id, event.seq));
}

/** Uploads for the next message: `{ file, roomId, progress, id?, error?, el }`. */
let pendingFiles = [];

// ---- login ----

function showLogin(message = '') {
  els.chat.hidden = true;
  els.login.hidden = false;
  els.loginError.textContent = message;
  $('#username').focus();
}

els.loginForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const data = new FormData(els.loginForm);
  els.loginError.textContent = '';
  try {
    await api.login(String(data.get('username')).trim(), String(data.get('password')));
    els.loginForm.reset();
    startChat();
  } catch (err) {
    els.loginError.textContent = err.message;
  }
});

$('#logout').addEventListener('click', async () => {
  await api.logout();
  endChat('You are logged out.');
});

function endChat(message) {
  socket?.stop();
  socket = null;
  thread.close();
  pins.close();
  closePicker();
  mentions.close();
  presence.stop();
  state = null;
  currentId = null;
  history.replaceState(null, '', location.pathname);
  showLogin(message);
}

// ---- start ----

async function startChat() {
  els.login.hidden = true;
  els.chat.hidden = false;
  els.me.textContent = api.user.display_name || api.user.name;
  notifier.update();
  state = new ChatState(api.user);
  presence.start(state);
  outbox = new Outbox({ api, state, socket: () => socket, rerender, toast, focusComposer: () => els.input.focus() });
  const files = new FileCache(api);
  // What a message offers besides edit and delete, the same in the timeline and a thread.
  const messageActions = {
    reactions: new Reactions(api, state, toast),
    togglePin: (item) => pins.toggle(item),
  };
  timeline = new TimelineView(els.timeline, state, {
    ...messageActions,
    edit: (item, body) => outbox.edit(item, body),
    remove: (item) => outbox.remove(item),
    retry: (item) => outbox.retry(item),
    dismiss: (item) => outbox.dismiss(item),
    openThread: (roomId, rootId) => thread.open(roomId, rootId),
  }, files, toast);
  thread.start(state, outbox, files, messageActions);
  pins.start(state);
  // The socket needs the rooms' cursors before its first `sync`, so load them first.
  for (let delay = 500; ; delay = Math.min(delay * 2, 10_000)) {
    try {
      await Promise.all([refreshUsers(), refreshRooms()]);
      break;
    } catch (err) {
      if (!state || !err.transient) return;
      setStatus('offline');
      await sleep(delay);
    }
  }
  socket = new Socket(api, {
    cursors: () => state.cursors(),
    onFrame,
    onStatus: setStatus,
    onSynced,
    onSessionEnded: () => api.end(),
  });
  socket.start();
  // `#room-3` opens a room; `#room-3-seq-17` (a search result's link) opens it at a message.
  const [, hashRoom, hashSeq] = location.hash.match(/^#room-(\d+)(?:-seq-(\d+))?$/) || [];
  const fromHash = Number(hashRoom);
  if (fromHash && state.rooms.has(fromHash)) {
    if (hashSeq) jumpTo(fromHash, Number(hashSeq));
    else openRoom(fromHash);
  } else renderRooms();
}

async function refreshUsers() {
  state.setUsers(await api.get('/api/v1/users'));
}

async function refreshRooms() {
  const gone = state.setRooms(await api.get('/api/v1/rooms'));
  if (gone.includes(currentId)) closeRoom();
  renderRooms();
  // Our role or the room's pin setting may have changed: only what changed is redrawn.
  const room = state.rooms.get(currentId);
  if (room) {
    rerender(room);
    pins.render();
  }
}

function setStatus(status, detail) {
  els.status.dataset.state = status;
  els.status.textContent = {
    connecting: 'Connecting…',
    syncing: 'Catching up…',
    online: 'Online',
    offline: detail?.retryInMs ? `Offline, retrying in ${Math.ceil(detail.retryInMs / 1000)} s` : 'Offline',
  }[status];
}

function renderRooms() {
  renderRoomList(els.roomList, state, currentId, openRoom);
}

// ---- socket frames ----

function onFrame(frame) {
  if (!state) return;
  if (frame.type === 'event') onEvent(frame);
  else if (frame.type === 'typing') onTyping(frame);
  else if (frame.type === 'read') onRead(frame);
  else if (frame.type === 'presence') presence.onFrame(frame);
  else if (frame.type === 'notice') onNotice(frame);
}

/** Text for this user alone (a plugin's private reply, the assistant's private answer or
 * its question before a tool runs), kept per room until dismissed; never stored. */
const notices = new Map();
const MAX_NOTICES = 20;

function onNotice(frame) {
  const list = notices.get(frame.room) || [];
  list.push({ plugin: frame.plugin, body: frame.body, at: Date.now() });
  notices.set(frame.room, list.slice(-MAX_NOTICES));
  if (frame.room === currentId) renderNotices();
  else toast(`${frame.plugin}: a message for you in another room`);
}

function renderNotices() {
  const list = notices.get(currentId) || [];
  replace(els.notices, list.map((n, i) => h('li', { class: 'notice' },
    h('span', { class: 'notice-from' }, `${n.plugin} · only you can see this`),
    // Plain text: a plugin's or a model's words are never markup.
    h('div', { class: 'notice-body' }, n.body),
    h('button', {
      type: 'button',
      class: 'link notice-dismiss',
      'aria-label': 'Dismiss',
      onclick: () => { list.splice(i, 1); renderNotices(); },
    }, 'Dismiss'))));
}

function onEvent(event) {
  const result = state.applyLive(event);
  if (!result) {
    // A room we do not know yet: we were just added to it (its people's presence too).
    refreshRooms().catch(() => {});
    presence.loadSoon();
    return;
  }
  const { room, fresh } = result;
  if (!fresh) return;
  thread.onEvent(room, event);
  pins.onEvent(room, event);
  if (event.kind === 'message' && event.sender_id !== state.me.id && mentionsMe(event, state.me.id)) {
    onMention(room, event);
  }
  if (event.kind === 'member_joined') room.members?.add(event.target);
  if (event.kind === 'member_left') room.members?.delete(event.target);
  // Who shares a room with us changed: no presence frame says so.
  if (event.kind === 'member_joined' || event.kind === 'member_left') presence.loadSoon();
  if (event.kind === 'member_joined' && !state.users.has(event.target)) refreshUsers().catch(() => {});
  if (event.kind === 'member_left' && event.target === state.me.id) {
    refreshRooms().catch(() => {});
    return;
  }
  if (event.kind === 'message') room.typing.delete(event.sender_id);
  if (room.id === currentId) {
    timeline.render(room);
    renderTyping(els.typing, state, room);
    markRead(room);
  }
  renderRooms();
}

function onSynced(frame) {
  // A resume may have stopped short (`truncated`): those rooms have a hole, so reload them.
  for (const id of frame.truncated || []) {
    const room = state.rooms.get(Number(id));
    if (room) room.loaded = false;
    if (room && room.id === currentId) loadLatest(room);
    if (room && room.id === thread.roomId) thread.reload();
  }
  // Rooms we were added to while offline, and authoritative unread counts.
  refreshRooms().catch(() => {});
  // Presence frames sent while we were away are lost: ask again, and say how we are.
  presence.connected();
}

function onTyping(frame) {
  if (frame.user === state.me.id) return;
  const room = state.rooms.get(frame.room);
  if (!room) return;
  if (frame.active) room.typing.set(frame.user, Date.now() + TYPING_SHOWN_MS);
  else room.typing.delete(frame.user);
  if (room.id === currentId) renderTyping(els.typing, state, room);
}

function onRead(frame) {
  const room = state.rooms.get(frame.room);
  if (!room || frame.user !== state.me.id) return;
  // Another of our sessions read this room.
  room.read_seq = Math.max(room.read_seq, frame.seq);
  if (room.read_seq >= room.last_seq) {
    room.unread = 0;
    room.mentions = 0;
  }
  renderRooms();
}

setInterval(() => {
  const room = state?.rooms.get(currentId);
  if (room) renderTyping(els.typing, state, room);
}, 1_000);

// ---- rooms ----

function openRoom(id) {
  const room = state.rooms.get(id);
  if (!room) return;
  if (thread.roomId !== id) thread.close();
  currentId = id;
  history.replaceState(null, '', `#room-${id}`);
  els.chat.classList.add('room-open');
  els.room.hidden = false;
  renderRoomTitle(room);
  els.roomTopic.textContent = room.topic || (room.kind === 'direct' ? 'Direct chat' : '');
  els.addMember.hidden = room.kind !== 'group' || room.role === 'member';
  closePicker();
  timeline.show(room);
  pins.showRoom(room);
  loadRoomDetail(room);
  renderPending();
  renderTyping(els.typing, state, room);
  renderNotices();
  updateVisibility();
  renderRooms();
  if (room.loaded) {
    timeline.render(room, 'bottom');
    markRead(room);
  } else {
    loadLatest(room);
  }
  els.input.focus();
}

/** The room's title, with the peer's presence dot in a direct room. */
function renderRoomTitle(room) {
  const dot = room.kind === 'direct' && room.peer ? presenceDot(state.presence, room.peer) : null;
  replace(els.roomTitle, dot, state.roomTitle(room));
}

/** Open a room at a message: load older pages until it is in the timeline, then show it. */
async function jumpTo(roomId, seq) {
  const room = state?.rooms.get(roomId);
  if (!room) {
    toast('That room is no longer in your list.');
    return;
  }
  openRoom(roomId);
  for (let waited = 0; !room.loaded && waited < 10_000; waited += 50) await sleep(50);
  // Bounded: a message far back in a long history is reached page by page.
  for (let pages = 0; pages < 200 && room.hasMore && room.oldest !== null && room.oldest > seq; pages++) {
    if (room.loading) await sleep(50);
    else await loadOlder(room);
    if (currentId !== roomId) return;
  }
  const el = els.timeline.querySelector(`[data-seq="${seq}"]`);
  if (!el) {
    // A reply kept in its thread: open the thread instead.
    const reply = [...room.items.values()].find((item) => item.seq === seq && item.thread_root);
    if (reply) {
      thread.open(roomId, reply.thread_root);
      return;
    }
    toast('That message is no longer there (deleted, or past the retention period).');
    return;
  }
  el.scrollIntoView({ block: 'center' });
  el.classList.add('found');
  setTimeout(() => el.classList.remove('found'), 3_000);
}

function closeRoom() {
  thread.close();
  closePicker();
  currentId = null;
  pins.showRoom(null);
  els.chat.classList.remove('room-open');
  els.room.hidden = true;
  timeline.show(null);
  updateVisibility();
  history.replaceState(null, '', location.pathname);
  renderRooms();
  els.roomList.querySelector('button')?.focus();
}

async function loadLatest(room) {
  room.loading = true;
  try {
    const page = await api.get(`/api/v1/rooms/${room.id}/messages?limit=50`);
    state.loadLatest(room, page);
  } catch (err) {
    toast(err.message);
    return;
  } finally {
    room.loading = false;
  }
  if (room.id !== currentId) return;
  timeline.render(room, 'bottom');
  markRead(room);
  fillViewport(room);
}

async function loadOlder(room) {
  if (room.loading || !room.hasMore || !room.loaded || room.oldest === null) return;
  room.loading = true;
  timeline.render(room, 'keep');
  try {
    const page = await api.get(`/api/v1/rooms/${room.id}/messages?before=${room.oldest}&limit=50`);
    state.loadOlder(room, page);
  } catch (err) {
    toast(err.message);
  } finally {
    room.loading = false;
  }
  if (room.id === currentId) {
    timeline.render(room, 'keep');
    fillViewport(room);
  }
}

/** Keep loading older pages until the timeline can scroll (or history is exhausted). */
function fillViewport(room) {
  const c = els.timeline;
  if (room.hasMore && c.scrollHeight <= c.clientHeight + 10) loadOlder(room);
}

els.timeline.addEventListener('scroll', () => {
  const room = state?.rooms.get(currentId);
  if (room && els.timeline.scrollTop < 120) loadOlder(room);
});

function updateVisibility() {
  const visible = document.visibilityState === 'visible';
  for (const room of state?.rooms.values() || []) room.visible = visible && room.id === currentId;
}

/** Tell the server we have seen everything up to the room's cursor (only when we have). */
function markRead(room) {
  updateVisibility();
  if (!room.visible) return;
  // Seen: its mentions too (the server's count is of messages after the read cursor).
  if (room.mentions) {
    room.mentions = 0;
    renderRooms();
  }
  if (room.cursor <= room.sentRead) return;
  const seq = room.cursor;
  room.sentRead = seq;
  room.read_seq = Math.max(room.read_seq, seq);
  room.unread = 0;
  renderRooms();
  if (!socket?.send({ type: 'read', room: room.id, seq })) {
    api.post(`/api/v1/rooms/${room.id}/read`, { seq }).catch(() => { room.sentRead = 0; });
  }
}

document.addEventListener('visibilitychange', () => {
  const room = state?.rooms.get(currentId);
  if (room) markRead(room);
  thread.markRead();
});
window.addEventListener('online', () => socket?.kick());
// Back to the window: the room's pin setting may have changed meanwhile (no event says so).
window.addEventListener('focus', () => {
  const room = state?.rooms.get(currentId);
  if (room) loadRoomDetail(room);
});

// ---- sending ----

els.input.addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    els.composer.requestSubmit();
  } else if (ev.key === 'Escape' && window.matchMedia('(max-width: 700px)').matches) {
    closeRoom();
  }
});

els.input.addEventListener('input', () => {
  const room = state?.rooms.get(currentId);
  if (!room || !socket) return;
  if (Date.now() - typingSentAt > TYPING_SEND_EVERY_MS) {
    typingSentAt = Date.now();
    socket.send({ type: 'typing', room: room.id, active: true });
  }
  clearTimeout(typingTimer);
  typingTimer = setTimeout(() => stopTyping(room), TYPING_IDLE_MS);
});

function stopTyping(room) {
  clearTimeout(typingTimer);
  if (!typingSentAt) return;
  typingSentAt = 0;
  socket?.send({ type: 'typing', room: room.id, active: false });
}

els.composer.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const room = state?.rooms.get(currentId);
  if (!room) return;
  const ready = pendingFiles.filter((p) => p.roomId === room.id && p.id);
  if (pendingFiles.some((p) => p.roomId === room.id && !p.id && !p.error)) {
    toast('Wait for the uploads to finish.');
    return;
  }
  // A message with files needs no text of its own: it names them.
  const body = els.input.value.trim() ? els.input.value : ready.map((p) => p.file.name).join(', ');
  if (!body.trim()) return;
  els.input.value = '';
  stopTyping(room);
  outbox.send(room, body, ready.map((p) => p.id));
  pendingFiles = pendingFiles.filter((p) => p.roomId !== room.id);
  renderPending();
  timeline.render(room, 'bottom');
});

// ---- attaching files ----

function renderPending() {
  const shown = pendingFiles.filter((p) => p.roomId === currentId);
  els.pending.replaceChildren(...shown.map((p) => p.el));
  els.pending.hidden = shown.length === 0;
}

function attach(files) {
  const room = state?.rooms.get(currentId);
  if (!room) return;
  for (const file of files) {
    const bar = document.createElement('progress');
    bar.max = 1;
    bar.value = 0;
    const status = document.createElement('span');
    status.className = 'pending-status muted';
    status.textContent = formatSize(file.size);
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'link';
    remove.textContent = 'Remove';
    const el = document.createElement('li');
    el.className = 'pending-file';
    el.dataset.name = file.name;
    const name = document.createElement('span');
    name.className = 'file-name';
    name.textContent = file.name;
    el.append(name, bar, status, remove);
    const pending = { file, roomId: room.id, el };
    remove.addEventListener('click', () => {
      pendingFiles = pendingFiles.filter((p) => p !== pending);
      renderPending();
      // Uploaded already: take it back from the server too (it would expire unattached).
      if (pending.id) api.delete(`/api/v1/files/${pending.id}`).catch(() => {});
    });
    pendingFiles.push(pending);
    uploadFile(api, room.id, file, (fraction) => { bar.value = fraction; })
      .then((uploaded) => {
        bar.value = 1;
        if (uploaded.state === 'quarantined') {
          // Kept for an administrator's review: it cannot be attached until released.
          pending.error = uploaded.quarantine_reason || 'held for review';
          el.dataset.state = 'quarantined';
          el.setAttribute('role', 'alert');
          status.textContent = `Held for review: ${pending.error}`;
          bar.remove();
          return;
        }
        pending.id = uploaded.id;
        el.dataset.state = 'ready';
        status.textContent = `${formatSize(uploaded.size)} · ${uploaded.content_type}`;
        if (uploaded.name !== file.name) name.textContent = uploaded.name;
      })
      .catch((err) => {
        // The server's reason, as it gave it (too large, a plugin's verdict, …).
        pending.error = err.message;
        el.dataset.state = 'rejected';
        el.setAttribute('role', 'alert');
        status.textContent = `Not uploaded: ${err.message}`;
        bar.remove();
      });
  }
  renderPending();
}

els.attach.addEventListener('click', () => els.attachInput.click());
els.attachInput.addEventListener('change', () => {
  attach([...els.attachInput.files]);
  els.attachInput.value = '';
});
els.room.addEventListener('dragover', (ev) => {
  if ([...(ev.dataTransfer?.types || [])].includes('Files')) {
    ev.preventDefault();
    els.room.classList.add('dropping');
  }
});
els.room.addEventListener('dragleave', () => els.room.classList.remove('dropping'));
els.room.addEventListener('drop', (ev) => {
  if (!ev.dataTransfer?.files?.length) return;
  ev.preventDefault();
  els.room.classList.remove('dropping');
  attach([...ev.dataTransfer.files]);
});

function rerender(room) {
  if (room.id === currentId) timeline.render(room);
  thread.rerender(room);
}

// ---- creating rooms ----

$('#new-group').addEventListener('click', async () => {
  await refreshUsers().catch(() => {});
  newGroupDialog(state, async (name, topic, members) => {
    const room = await api.post('/api/v1/rooms', { kind: 'group', name, topic, members });
    return room.id;
  }, openCreated);
});

$('#new-direct').addEventListener('click', async () => {
  await refreshUsers().catch(() => {});
  directDialog(state, async (user) => (await api.post('/api/v1/rooms', { kind: 'direct', user })).id, openCreated);
});

els.addMember.addEventListener('click', async () => {
  const room = state.rooms.get(currentId);
  if (!room) return;
  await refreshUsers().catch(() => {});
  const detail = await api.get(`/api/v1/rooms/${room.id}`);
  const members = new Set(detail.members.map((m) => m.user_id));
  addMemberDialog(state, members, (user) => api.post(`/api/v1/rooms/${room.id}/members`, { user, role: 'member' }));
});

async function openCreated(id) {
  await refreshRooms();
  openRoom(id);
}

$('#back').addEventListener('click', closeRoom);

function toast(message) {
  const el = $('#toast');
  el.textContent = message;
  el.hidden = false;
  clearTimeout(el.timer);
  el.timer = setTimeout(() => { el.hidden = true; }, 5_000);
}

// ---- single sign-on ----

/** What a failed sign-in at the identity provider means, by the server's code. */
const SIGN_IN_ERRORS = {
  invalid_state: 'The sign-in took too long or was already used. Please try again.',
  provider_refused: 'The identity provider did not sign you in.',
  provider_unavailable: 'The identity provider cannot be reached. Try again later.',
  account_not_linked: 'An account with your name already exists here. Ask an admin to link it.',
  no_account: 'There is no account for you here. Ask an admin to create one.',
  user_deactivated: 'Your account is deactivated.',
};

function signInError(code) {
  return SIGN_IN_ERRORS[code] || `The sign-in failed (${code}).`;
}

/** A "Sign in with …" link for each configured identity provider. */
async function offerProviders() {
  const box = $('#sso');
  const providers = await api.signInProviders();
  box.replaceChildren(...providers.map((p) => {
    const link = document.createElement('a');
    link.className = 'button';
    link.href = `/api/v1/auth/oidc/${encodeURIComponent(p.id)}/start`;
    link.textContent = `Sign in with ${p.display_name}`;
    return link;
  }));
  box.hidden = providers.length === 0;
}

/** Back from the identity provider: `#oidc_ticket=…` or `#oidc_error=…` (removed from the
 * address at once, so a reload or a bookmark does not carry it). */
async function boot() {
  const back = new URLSearchParams(location.hash.slice(1));
  const ticket = back.get('oidc_ticket');
  const error = back.get('oidc_error');
  if (ticket || error) history.replaceState(null, '', location.pathname + location.search);
  let message = error ? signInError(error) : '';
  if (ticket) {
    try {
      await api.redeem(ticket);
    } catch (err) {
      message = signInError(err.code);
    }
  }
  if (api.loggedIn) {
    startChat();
  } else {
    showLogin(message);
  }
  offerProviders();
}

boot();
