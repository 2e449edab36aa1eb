// The thread panel: one thread of the open room, beside its timeline. It shows the root
// message, the replies (the newest page first, older pages on scrolling up or "Load older
// replies"), replies arriving live, and a composer whose replies go through the outbox like
// the room's composer's messages, with `thread_root` (and `also_to_room` when "Also send to
// room" is ticked). Opening the thread, and replies arriving while it is open and the page
// visible, move the thread's read cursor forward.
//
// A thread's replies are kept here, apart from the room's items: its older replies may lie
// before the room's loaded history, and the room's timeline does not show them anyway. The
// room's items add what only they have: our own replies being sent (local copies) or just
// acknowledged. Everything is rendered by the timeline's view (views.js), as text.
//
// Reactions to the root and the replies are counted on here from live events like edits are
// (the room's model does the same for its own copies); a pin changes how a message looks
// without changing the message, so a pin event only has it drawn again. Neither is ever a
// reply.

import { h, replace } from './dom.js';
import { TimelineView } from './views.js';
import { bySeq, reactionPatch } from './state.js';
import { editedMentions } from './mentions.js';

const PAGE = 50;

export class ThreadView {
  /**
   * @param {object} els  { panel, root, body (scrolls), replies, form, input, alsoToRoom, send, close }
   * @param {object} deps { api, toast(msg), onToggle(open), onSent(room, alsoToRoom), onClosed() }
   */
  constructor(els, deps) {
    this.els = els;
    this.deps = deps;
    this.state = null;
    this.outbox = null;
    this.view = null;
    this.reset();
    els.close.addEventListener('click', () => {
      this.close();
      deps.onClosed();
    });
    els.form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.send();
    });
    els.input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        els.form.requestSubmit();
      } else if (ev.key === 'Escape') {
        ev.preventDefault();
        this.close();
        deps.onClosed();
      }
    });
    els.body.addEventListener('scroll', () => {
      if (els.body.scrollTop < 120) this.loadOlder();
    });
  }

  /** A new session: its model, outbox, file cache, and what messages do besides (`{
   * reactions, togglePin }`, as the room's timeline has them). */
  start(state, outbox, files, messageActions = {}) {
    this.close();
    this.state = state;
    this.outbox = outbox;
    this.view = new TimelineView(this.els.replies, state, {
      ...messageActions,
      edit: (item, body) => outbox.edit(item, body, (patch) => this.patch(item.id, patch)),
      remove: (item) => outbox.remove(item, (patch) => this.patch(item.id, patch)),
      retry: (item) => outbox.retry(item),
      dismiss: (item) => {
        outbox.dismiss(item);
        this.els.input.focus();
      },
      openThread: () => {},
    }, files, this.deps.toast, {
      scroller: this.els.body,
      inThread: true,
      items: (room) => this.items(room),
      top: (room) => this.top(room),
      find: (key) => this.find(key),
    });
  }

  reset() {
    this.roomId = null;
    this.rootId = null;
    /** The root message, as an item (`key`, `rev`). */
    this.root = null;
    this.shownRoot = null;
    this.shownRootLook = null;
    /** Replies by key (`e<id>`), as the timeline's items. */
    this.replies = new Map();
    this.loaded = false;
    this.loading = false;
    this.error = null;
    this.hasMore = false;
    this.oldest = null;
    /** The thread's read cursor as the server has it, and the last seq we sent. */
    this.readSeq = 0;
    this.sentRead = 0;
    /** Bumped on every open and close: answers for a thread no longer shown are dropped. */
    this.generation = (this.generation || 0) + 1;
  }

  get isOpen() {
    return this.rootId !== null;
  }

  room() {
    return this.roomId === null ? null : this.state?.rooms.get(this.roomId) || null;
  }

  /** Open the thread of message `rootId` of room `roomId` (already open: just focus it). */
  async open(roomId, rootId) {
    const room = this.state?.rooms.get(roomId);
    if (!room || !this.view) return;
    if (this.roomId === roomId && this.rootId === rootId) {
      this.els.input.focus();
      return;
    }
    this.reset();
    this.roomId = roomId;
    this.rootId = rootId;
    // The room's copy of the root shows at once, while the thread loads.
    const known = room.items.get(`e${rootId}`);
    if (known) this.root = { ...known };
    this.els.input.value = '';
    this.els.alsoToRoom.checked = false;
    this.els.panel.hidden = false;
    this.deps.onToggle(true);
    this.view.show(null);
    this.view.show(room);
    this.render('bottom');
    this.els.input.focus();
    await this.loadLatest();
  }

  close() {
    if (!this.isOpen && this.els.panel.hidden) return;
    this.reset();
    this.view?.show(null);
    replace(this.els.root);
    this.els.panel.hidden = true;
    this.deps.onToggle(false);
  }

  /** The newest page of replies (on opening, and after a resume that left a hole). */
  async loadLatest() {
    const gen = this.generation;
    const { roomId, rootId } = this;
    this.loading = true;
    this.error = null;
    let page;
    try {
      page = await this.deps.api.get(`/api/v1/rooms/${roomId}/threads/${rootId}?limit=${PAGE}`);
    } catch (err) {
      if (gen !== this.generation) return;
      this.loading = false;
      if (err.status === 404 || err.code === 'nested_thread') {
        // Deleted, gone past retention, or not a top-level message: nothing to show.
        this.deps.toast(err.message);
        this.close();
        this.deps.onClosed();
        return;
      }
      this.error = err.message;
      this.render();
      return;
    }
    if (gen !== this.generation) return;
    this.loading = false;
    this.root = this.item(page.root, this.root);
    // Replies that arrived live while the page was on its way are kept (merged by key).
    for (const event of page.replies) this.absorb(event);
    this.hasMore = Boolean(page.has_more);
    this.oldest = page.replies.length ? page.replies[0].seq : null;
    this.readSeq = page.read_seq || 0;
    this.loaded = true;
    this.render('bottom');
    this.markRead();
  }

  /** Reload from the newest page (the room's resume was truncated: live replies may be missing). */
  reload() {
    if (!this.isOpen) return;
    this.replies = new Map();
    this.loaded = false;
    this.hasMore = false;
    this.oldest = null;
    this.generation += 1;
    this.render();
    this.loadLatest();
  }

  async loadOlder() {
    if (!this.isOpen || this.loading || !this.loaded || !this.hasMore || this.oldest === null) return;
    const gen = this.generation;
    this.loading = true;
    this.render('keep');
    try {
      const page = await this.deps.api.get(
        `/api/v1/rooms/${this.roomId}/threads/${this.rootId}?before=${this.oldest}&limit=${PAGE}`);
      if (gen !== this.generation) return;
      for (const event of page.replies) this.absorb(event);
      this.hasMore = Boolean(page.has_more);
      if (page.replies.length) this.oldest = page.replies[0].seq;
    } catch (err) {
      if (gen === this.generation) this.deps.toast(err.message);
    } finally {
      if (gen === this.generation) this.loading = false;
    }
    if (gen === this.generation) this.render('keep');
  }

  /** A fresh live event of `room` (from chat.js, after the model applied it). */
  onEvent(room, event) {
    if (!this.isOpen || room.id !== this.roomId) return;
    if (event.kind === 'message' && event.thread_root === this.rootId) {
      this.absorb(event);
      this.render();
      this.markRead();
    } else if (event.kind === 'edit') {
      const old = event.target === this.rootId ? this.root : this.replies.get(`e${event.target}`);
      this.patch(event.target, {
        body: event.body, edited_at: event.created_at, metadata: event.metadata,
        ...editedMentions(this.state, room, old, event.body),
      });
    } else if (event.kind === 'delete') {
      this.patch(event.target, { deleted: true, body: undefined, reactions: undefined });
    } else if (event.kind === 'reaction' || event.kind === 'reaction_removed') {
      const old = event.target === this.rootId ? this.root : this.replies.get(`e${event.target}`);
      if (old && !old.deleted && event.body) {
        this.patch(event.target, { reactions: reactionPatch(old, event, this.state.me.id) });
      }
    } else if (event.kind === 'pinned' || event.kind === 'unpinned') {
      this.patch(event.target, {});
    }
  }

  /** The outbox changed `room` (a send acknowledged, failed, retried, dismissed…). */
  rerender(room) {
    if (this.isOpen && room.id === this.roomId) this.render();
  }

  /** An event as one of our items, on top of what we had for it. */
  item(event, old) {
    const key = `e${event.id}`;
    // Above any rev this key had here or in the room, so the view rebuilds it.
    const inRoom = this.room()?.items.get(key);
    const rev = Math.max(old?.rev || 0, inRoom?.rev || 0) + 1;
    const item = { ...old, ...event, key, rev };
    if (!event.body) delete item.body;
    if (!event.reactions) delete item.reactions;
    if (this.state.modified.has(event.id)) item.modified = true;
    return item;
  }

  absorb(event) {
    if (event.kind !== 'message' || event.thread_root !== this.rootId) return;
    const key = `e${event.id}`;
    this.replies.set(key, this.item(event, this.replies.get(key)));
  }

  /** An edit, delete or edit error for message `id`, if it is the root or one of ours. */
  patch(id, patch) {
    const key = `e${id}`;
    let changed = false;
    if (this.root && id === this.rootId) {
      this.root = { ...this.root, ...patch, rev: this.root.rev + 1 };
      changed = true;
    }
    const old = this.replies.get(key);
    if (old) {
      this.replies.set(key, { ...old, ...patch, rev: old.rev + 1 });
      changed = true;
    }
    if (changed) this.render();
  }

  /** The replies to show, oldest first: ours, plus the room's copies of replies we do not
   * hold (sending, just acknowledged) that are not before the page we have. */
  items(room) {
    const merged = new Map(this.replies);
    for (const item of room.items.values()) {
      if (item.thread_root !== this.rootId || merged.has(item.key)) continue;
      if (!item.local && this.hasMore && this.oldest !== null && item.seq < this.oldest) continue;
      merged.set(item.key, item);
    }
    return [...merged.values()].sort(bySeq);
  }

  find(key) {
    return this.replies.get(key) || this.room()?.items.get(key) || null;
  }

  top(room) {
    if (this.error) {
      return [h('span', { class: 'form-error' }, `Replies not loaded: ${this.error}`), ' ',
        h('button', { type: 'button', class: 'link', onclick: () => this.loadLatest() }, 'Retry')];
    }
    if (!this.loaded) return h('span', { class: 'loading' }, 'Loading replies…');
    if (this.hasMore) {
      return h('button', {
        type: 'button', id: 'thread-older', class: 'link', disabled: this.loading,
        onclick: () => this.loadOlder(),
      }, this.loading ? 'Loading older replies…' : 'Load older replies');
    }
    return this.items(room).length ? null : h('span', {}, 'No replies yet.');
  }

  render(mode = 'auto') {
    const room = this.room();
    if (!room || !this.view) return;
    // Drawn again when it changes, or its pin does (the pins list may load after it).
    const rootLook = this.root ? this.view.look(this.root) : null;
    if (this.shownRoot !== this.root || this.shownRootLook !== rootLook) {
      this.shownRoot = this.root;
      this.shownRootLook = rootLook;
      replace(this.els.root, this.root
        ? this.view.build(this.root, false)
        : h('p', { class: 'muted' }, 'Loading…'));
    }
    // No replies to a deleted root (the server refuses them).
    const closed = Boolean(this.root?.deleted);
    this.els.input.disabled = closed;
    this.els.send.disabled = closed;
    this.els.alsoToRoom.disabled = closed;
    this.view.render(room, mode);
  }

  send() {
    const room = this.room();
    if (!room || !this.outbox || this.root?.deleted) return;
    const body = this.els.input.value;
    if (!body.trim()) return;
    const alsoToRoom = this.els.alsoToRoom.checked;
    this.els.input.value = '';
    this.els.alsoToRoom.checked = false;
    this.outbox.send(room, body, [], { thread_root: this.rootId, also_to_room: alsoToRoom });
    this.render('bottom');
    this.deps.onSent(room, alsoToRoom);
  }

  /** Move the thread's read cursor to its newest stored reply, once we have shown it. */
  markRead() {
    if (!this.isOpen || !this.loaded || document.visibilityState !== 'visible') return;
    const room = this.room();
    if (!room) return;
    const last = this.items(room).reduce((max, i) => (Number.isFinite(i.seq) ? Math.max(max, i.seq) : max), 0);
    if (!last || last <= Math.max(this.readSeq, this.sentRead)) return;
    this.sentRead = last;
    const gen = this.generation;
    this.deps.api.post(`/api/v1/rooms/${this.roomId}/threads/${this.rootId}/read`, { seq: last })
      .then((answer) => {
        if (gen === this.generation) this.readSeq = Math.max(this.readSeq, answer?.seq || 0);
      })
      .catch(() => {
        if (gen === this.generation) this.sentRead = 0;
      });
  }
}
