// Rendering for the chat client: the room list and a room's timeline. Views read the model
// (state.js) and call back into the controller (chat.js); they never talk to the network
// themselves (a message's file cards ask the controller's `FileCache`).
//
// The timeline is reconciled by key rather than rebuilt, so live events do not steal focus
// from a message's buttons or reset an edit in progress. The thread panel (thread.js) uses
// the same view for a thread's replies, with its own items.
//
// A message shows its reactions (reactions.js) and, when pinned, who pinned it; both come
// from the model. A pin is kept beside the message rather than in it (state.js), so what an
// entry looks like is its `rev` plus its pin and whether we may pin (`look`).
//
// Presence dots (presence.js) sit beside a direct room's name in the list and beside a
// message's sender (not ours). A dot repaints itself when its user's status changes, so only
// presence being turned on or off changes how an entry looks.

import { h, replace, formatTime } from './dom.js';
import { looksModified, mayPin } from './state.js';
import { reactionsRow } from './reactions.js';
import { attachedIds, fileCards } from './files.js';
import { mentionRanges, mentionsMe } from './mentions.js';
import { renderMarkdown } from './markdown.js';
import { presenceDot, presenceWords } from './presence.js';

export function renderRoomList(list, state, currentId, onOpen) {
  const rooms = [...state.rooms.values()].sort((a, b) =>
    state.roomTitle(a).localeCompare(state.roomTitle(b)));
  if (!rooms.length) {
    replace(list, h('li', { class: 'empty' }, 'No rooms yet. Start a chat or create a group.'));
    return;
  }
  // Rebuilt on every change: keep keyboard focus on the same room's button.
  const focused = list.contains(document.activeElement) ? document.activeElement.dataset.roomId : null;
  replace(list, rooms.map((room) => {
    const unread = room.unread > 0 && room.id !== currentId;
    const mentions = room.mentions > 0 && room.id !== currentId;
    const title = state.roomTitle(room);
    // The button's label is what is read out, so it says the peer's presence too.
    const peer = room.kind === 'direct' && room.peer ? room.peer : null;
    const status = peer ? presenceWords(state.presence, peer) : null;
    let label = status ? `${title}, ${status}` : title;
    if (unread) label += `, ${room.unread} unread`;
    if (mentions) label += `, ${room.mentions} ${room.mentions === 1 ? 'mention' : 'mentions'}`;
    return h('li', {},
      h('button', {
        class: `room-item${unread ? ' has-unread' : ''}${mentions ? ' has-mentions' : ''}`,
        type: 'button',
        dataset: { roomId: room.id },
        'aria-current': room.id === currentId ? 'true' : false,
        'aria-label': label,
        onclick: () => onOpen(room.id),
      },
      h('span', { class: 'room-kind', 'aria-hidden': 'true' }, room.kind === 'direct' ? '@' : '#'),
      peer ? presenceDot(state.presence, peer) : null,
      h('span', { class: 'room-name' }, title),
      // The count only; the "@" before it is the stylesheet's.
      mentions ? h('span', {
        class: 'mention-badge',
        title: `Mentioned ${room.mentions === 1 ? 'once' : `${room.mentions} times`}`,
        'aria-hidden': 'true',
      }, String(room.mentions)) : null,
      unread ? h('span', { class: 'badge', 'aria-hidden': 'true' }, String(room.unread)) : null));
  }));
  if (focused) list.querySelector(`[data-room-id="${focused}"]`)?.focus();
}

/**
 * Keeps one room's timeline in the DOM. `handlers`: { edit(item, body), remove(item),
 * retry(item), dismiss(item), openThread(room, rootId), togglePin(item), reactions (a
 * `Reactions`) }.
 *
 * `options` (all optional) make it a thread's view instead of the room's: `scroller` (the
 * element that scrolls, if not `container`), `items(room)` (what to show, in order),
 * `top(room)` (what goes above the items), `find(key)` (an item as it is now) and `inThread`
 * (no thread links or "Reply in thread" on its messages).
 */
export class TimelineView {
  constructor(container, state, handlers, files, toast, options = {}) {
    this.container = container;
    this.scroller = options.scroller || container;
    this.state = state;
    this.handlers = handlers;
    /** A `FileCache` for the cards of attached files. */
    this.files = files;
    this.toast = toast;
    this.options = options;
    this.roomId = null;
    this.nodes = new Map();
    this.editing = null;
    this.top = h('div', { class: 'timeline-top' });
  }

  /** Show a room (clears the view when the room changes). */
  show(room) {
    if (room?.id !== this.roomId) {
      this.roomId = room?.id ?? null;
      this.nodes.clear();
      this.editing = null;
      replace(this.container, this.top);
    }
  }

  atBottom() {
    const c = this.scroller;
    return c.scrollHeight - c.scrollTop - c.clientHeight < 40;
  }

  /** Re-render; `mode` is 'bottom' (scroll to newest), 'keep' (older page prepended) or 'auto'. */
  render(room, mode = 'auto') {
    const c = this.scroller;
    const stick = mode === 'bottom' || (mode === 'auto' && this.atBottom());
    const anchorHeight = c.scrollHeight - c.scrollTop;
    replace(this.top, this.options.top ? this.options.top(room) : room.hasMore
      ? h('span', { class: 'loading' }, room.loading ? 'Loading older messages…' : 'Scroll up for older messages')
      : h('span', {}, 'This is the beginning of the conversation.'));

    const items = this.options.items ? this.options.items(room) : this.state.timeline(room);
    const live = new Set(items.map((i) => i.key));
    for (const [key, entry] of this.nodes) {
      if (!live.has(key)) {
        entry.el.remove();
        this.nodes.delete(key);
      }
    }
    let prev = this.top;
    for (const item of items) {
      let entry = this.nodes.get(item.key);
      const look = this.look(item);
      if (!entry || (entry.look !== look && this.editing !== item.key)) {
        const el = this.build(item);
        if (entry) entry.el.replaceWith(el);
        entry = { el, look };
        this.nodes.set(item.key, entry);
      }
      if (prev.nextSibling !== entry.el) prev.after(entry.el);
      prev = entry.el;
    }
    if (stick) c.scrollTop = c.scrollHeight;
    else if (mode === 'keep') c.scrollTop = c.scrollHeight - anchorHeight;
  }

  /** What decides how an entry looks: the item (its `rev`), its pin, whether we may pin
   * (which adds the action) and whether presence is on (the sender's dot). An entry is
   * rebuilt when this changes. */
  look(item) {
    const room = this.state.rooms.get(item.room_id);
    const pin = this.state.pinOf(room, item.id);
    const dots = this.state.presence?.enabled ? 'd' : '';
    return `${item.rev}|${pin ? `${pin.pinned_by}@${pin.pinned_at}` : ''}|${mayPin(room) ? 'p' : ''}|${dots}`;
  }

  /** One timeline entry; `withActions` false for a message shown read-only (a thread's
   * root above its replies). */
  build(item, withActions = true) {
    if (item.kind === 'member_joined' || item.kind === 'member_left') {
      const who = this.state.userName(item.target);
      const verb = item.kind === 'member_joined' ? 'joined' : 'left';
      return h('div', { class: 'system', dataset: { seq: item.seq, key: item.key } },
        `${who} ${verb} · ${formatTime(item.created_at)}`);
    }
    const own = item.sender_id === this.state.me.id;
    const pin = item.deleted ? null : this.state.pinOf(this.state.rooms.get(item.room_id), item.id);
    const classes = ['msg', 'message'];
    if (own) classes.push('own');
    if (pin) classes.push('pinned');
    if (item.thread_root) classes.push('reply');
    if (item.local) classes.push('local', item.status);
    if (item.deleted) classes.push('deleted');
    // An assistant's answer still streaming in (edited as the model writes it).
    const streaming = !item.deleted && item.metadata?.['assistant.streaming'] === '1';
    if (streaming) classes.push('streaming');
    if (!own && !item.deleted && mentionsMe(item, this.state.me.id)) classes.push('mentions-me');
    const modified = !item.deleted && looksModified(item);
    const header = h('header', {},
      // A bot's message (its plugin named in the metadata) has no person behind it to be away.
      own || item.metadata?.['bot.plugin'] ? null : presenceDot(this.state.presence, item.sender_id),
      h('span', { class: 'msg-sender' }, this.state.userName(item.sender_id)),
      h('time', { datetime: new Date(item.created_at).toISOString() }, formatTime(item.created_at)),
      streaming ? h('span', { class: 'msg-streaming', title: 'The assistant is still writing this answer' }, 'writing…') : null,
      item.edited_at && !item.deleted && !streaming && !item.metadata?.['bot.plugin']
        ? h('span', { class: 'msg-edited' }, '(edited)') : null,
      modified ? h('span', { class: 'msg-mark', title: 'A server plugin changed this message (e.g. redacted sensitive data)' }, 'redacted/modified') : null,
      // A reply also sent to the room: says so, and opens its thread.
      item.thread_root && !this.options.inThread
        ? h('button', {
          type: 'button',
          class: 'link thread-marker',
          title: 'Open the thread',
          onclick: () => this.handlers.openThread(item.room_id, item.thread_root),
        }, 'replied in thread')
        : null);
    // The body as rich text (markdown.js: DOM nodes only, a documented Markdown subset),
    // with the mentions the server recorded highlighted where they are not code. A div: it
    // may hold lists, quotes and code blocks.
    const text = item.body ?? '';
    const body = item.deleted
      ? h('div', { class: 'msg-body' }, h('em', {}, 'Message deleted'))
      : h('div', { class: 'msg-body' },
        renderMarkdown(text, { marks: mentionRanges(text, item, this.state) }));
    // Chips sit under the body. A row without chips is only the add button, and opens when
    // the message is hovered: it goes below the thread link, with the actions, so nothing a
    // pointer is heading for (the "3 replies" link) moves down when it arrives.
    const reactions = this.reactions(item);
    const chips = reactions && !reactions.classList.contains('empty') ? reactions : null;
    const el = h('article', {
      class: classes.join(' '),
      dataset: { key: item.key, seq: Number.isFinite(item.seq) ? item.seq : '', id: item.id ?? '' },
      tabindex: '-1',
    }, pin ? this.pinMarker(pin) : null, header, body,
    item.deleted ? null : fileCards(this.files, attachedIds(item), this.toast),
    chips, this.note(item), this.threadLink(item), chips ? null : reactions,
    withActions ? this.actions(item, own) : null);
    return el;
  }

  /** "📌 Pinned by alice" above a pinned message. */
  pinMarker(pin) {
    return h('p', { class: 'msg-pin', title: `Pinned ${formatTime(pin.pinned_at)}` },
      h('span', { class: 'msg-pin-icon', 'aria-hidden': 'true' }, '📌 '),
      `Pinned by ${this.state.userName(pin.pinned_by)}`);
  }

  /** The chips and the add button under a stored message (none under a deleted one, or one
   * still being sent: it has no id to react to yet). */
  reactions(item) {
    if (item.deleted || item.local || item.kind !== 'message' || !item.id || !this.handlers.reactions) return null;
    return reactionsRow(item, this.handlers.reactions);
  }

  /** "3 replies" under a root message in the room's timeline; opens the thread. */
  threadLink(item) {
    const count = item.thread?.replies || 0;
    if (this.options.inThread || item.thread_root || count <= 0) return null;
    const last = item.thread.last_reply_at;
    return h('p', { class: 'msg-thread' },
      h('button', {
        type: 'button',
        class: 'link thread-replies-link',
        onclick: () => this.handlers.openThread(item.room_id, item.id),
      }, `${count} ${count === 1 ? 'reply' : 'replies'}`),
      last ? h('span', { class: 'muted' }, `last ${formatTime(last)}`) : null);
  }

  note(item) {
    if (item.local && item.status === 'rejected') {
      const plugin = item.rejection?.plugin ? `Rejected by ${item.rejection.plugin}: ` : 'Rejected: ';
      return h('p', { class: 'msg-note', role: 'alert' }, plugin + item.error);
    }
    if (item.local && item.status === 'failed') {
      return h('p', { class: 'msg-note', role: 'alert' }, `Not sent: ${item.error}`);
    }
    if (item.local && item.status === 'retrying') {
      return h('p', { class: 'msg-note pending' }, 'Offline, will retry…');
    }
    if (item.editError) return h('p', { class: 'msg-note', role: 'alert' }, item.editError);
    return null;
  }

  actions(item, own) {
    if (item.local && (item.status === 'rejected' || item.status === 'failed')) {
      return h('div', { class: 'msg-actions' },
        item.status === 'failed'
          ? h('button', { type: 'button', onclick: () => this.handlers.retry(item) }, 'Retry') : null,
        h('button', { type: 'button', onclick: () => this.handlers.dismiss(item) }, 'Dismiss'));
    }
    if (item.local || item.deleted) return null;
    // Any stored top-level message can start a thread (a reply cannot: threads are one deep).
    const threadable = !this.options.inThread && !item.thread_root && item.id;
    const room = this.state.rooms.get(item.room_id);
    const pinnable = Boolean(item.id) && this.handlers.togglePin && mayPin(room);
    if (!own && !threadable && !pinnable) return null;
    const pinned = Boolean(this.state.pinOf(room, item.id));
    // Edit and Delete stay first, where they always were.
    return h('div', { class: 'msg-actions' },
      own ? h('button', { type: 'button', 'aria-label': 'Edit message', onclick: () => this.startEdit(item) }, 'Edit') : null,
      own ? h('button', { type: 'button', 'aria-label': 'Delete message', onclick: () => this.handlers.remove(item) }, 'Delete') : null,
      threadable
        ? h('button', {
          type: 'button',
          class: 'reply-in-thread',
          onclick: () => this.handlers.openThread(item.room_id, item.id),
        }, 'Reply in thread')
        : null,
      pinnable
        ? h('button', {
          type: 'button',
          class: 'pin-toggle',
          'aria-label': pinned ? 'Unpin message' : 'Pin message',
          onclick: () => this.handlers.togglePin(item),
        }, pinned ? 'Unpin' : 'Pin')
        : null);
  }

  startEdit(item) {
    const entry = this.nodes.get(item.key);
    if (!entry) return;
    this.editing = item.key;
    const input = h('textarea', { class: 'edit-input', 'aria-label': 'Edit message', rows: 2 });
    input.value = item.body ?? '';
    const finish = (save) => {
      this.editing = null;
      const body = input.value.trim();
      if (save && body && body !== item.body) this.handlers.edit(item, body);
      const fresh = (this.options.find
        ? this.options.find(item.key)
        : this.state.rooms.get(item.room_id)?.items.get(item.key)) || item;
      const el = this.build(fresh);
      entry.el.replaceWith(el);
      entry.el = el;
      entry.look = this.look(fresh);
      el.querySelector('.msg-actions button')?.focus();
    };
    input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey) {
        ev.preventDefault();
        finish(true);
      } else if (ev.key === 'Escape') {
        ev.preventDefault();
        ev.stopPropagation();
        finish(false);
      }
    });
    entry.el.querySelector('.msg-body').replaceWith(h('div', { class: 'msg-edit' }, input,
      h('span', { class: 'hint' }, 'Enter to save · Escape to cancel')));
    entry.el.querySelector('.msg-actions')?.remove();
    entry.el.querySelector('.msg-reactions')?.remove();
    input.focus();
  }
}

export function renderTyping(el, state, room) {
  const now = Date.now();
  const names = [];
  for (const [user, until] of room?.typing || []) {
    if (until > now) names.push(state.userName(user));
    else room.typing.delete(user);
  }
  el.textContent = names.length === 0 ? ''
    : names.length === 1 ? `${names[0]} is typing…`
      : `${names.join(', ')} are typing…`;
}
