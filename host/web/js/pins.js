// Pins in the chat client: the room header's "Pins" button (with the count), the pins panel
// beside the timeline (each pinned message rendered like a message, who pinned it and when,
// "Jump" to it in the timeline and "Unpin"), the "Members may pin" setting for a group
// room's owners and admins, and pinning or unpinning from a message's actions.
//
// The list is the server's (`GET /rooms/{id}/pins`, the latest pinned first): it is loaded
// when a room is opened (the timeline's "📌 Pinned by …" markers read it too) and again after
// each `pinned` or `unpinned` event of the open room, and after an edit or delete of a message
// it lists; a pin may be of a message the client has not loaded, so the list cannot be worked
// out from events alone. The model (state.js) applies the events to the markers at once.
// Who may pin is the model's `mayPin`; the server checks again and its refusal is shown.

import { h, replace, formatTime } from './dom.js';
import { mayManagePins, mayPin } from './state.js';

/** How long after a pin event the list is loaded again (the events of a burst share it). */
const RELOAD_AFTER_MS = 100;

export class PinsView {
  /**
   * @param {object} els  { button, count, panel, list, status, setting, membersMayPin, close }
   * @param {object} deps { api, toast(msg), userName(id), body(message) -> nodes,
   *                        jump(roomId, seq), onToggle(open), onChange(room),
   *                        refreshRoom(room) }
   */
  constructor(els, deps) {
    this.els = els;
    this.deps = deps;
    this.state = null;
    /** The room whose pins the header and the panel show (the open room). */
    this.roomId = null;
    /** Bumped on every load: an answer for an older load (or another room) is dropped. */
    this.generation = 0;
    this.timer = null;
    this.error = null;
    els.button.addEventListener('click', () => (this.isOpen ? this.close(true) : this.open()));
    els.close.addEventListener('click', () => this.close(true));
    els.panel.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape' && !ev.defaultPrevented) {
        ev.preventDefault();
        this.close(true);
      }
    });
    els.membersMayPin.addEventListener('change', () => this.setMembersMayPin(els.membersMayPin.checked));
  }

  /** A new session. */
  start(state) {
    this.close();
    this.state = state;
    this.roomId = null;
  }

  get isOpen() {
    return !this.els.panel.hidden;
  }

  room() {
    return this.roomId === null ? null : this.state?.rooms.get(this.roomId) || null;
  }

  /** The room opened (null: none). Another room closes the panel; its pins are loaded. */
  showRoom(room) {
    if ((room?.id ?? null) !== this.roomId) {
      this.close();
      this.roomId = room?.id ?? null;
      this.error = null;
    }
    this.render();
    if (room) this.load(room);
  }

  open() {
    const room = this.room();
    if (!room) return;
    this.els.panel.hidden = false;
    this.els.button.setAttribute('aria-expanded', 'true');
    this.deps.onToggle(true);
    this.render();
    this.load(room);
    // The setting may have changed elsewhere (no event says so).
    this.deps.refreshRoom(room);
    this.els.close.focus();
  }

  /** Close the panel; `refocus` returns the focus to the header's button. */
  close(refocus = false) {
    if (!this.isOpen) return;
    this.els.panel.hidden = true;
    this.els.button.setAttribute('aria-expanded', 'false');
    this.deps.onToggle(false);
    if (refocus) this.els.button.focus();
  }

  /** (Re)load the pins of `room`; the latest load wins. */
  async load(room) {
    const gen = ++this.generation;
    let list;
    try {
      list = await this.deps.api.get(`/api/v1/rooms/${room.id}/pins`);
    } catch (err) {
      if (gen !== this.generation) return;
      this.error = err.message;
      this.render();
      return;
    }
    if (gen !== this.generation || this.state?.rooms.get(room.id) !== room) return;
    this.error = null;
    this.state.setPins(room, list);
    if (room.id === this.roomId) this.render();
    this.deps.onChange(room);
  }

  /** A fresh live event of `room` (after the model applied it): reload what it changes. */
  onEvent(room, event) {
    const listed = (room.pinList || []).some((pin) => pin.message.id === event.target);
    const changes = event.kind === 'pinned' || event.kind === 'unpinned'
      || ((event.kind === 'edit' || event.kind === 'delete') && listed);
    if (!changes) return;
    if (room.id === this.roomId) this.loadSoon(room);
    else room.pinList = null; // Loaded again when the room is opened.
  }

  /** Load once for a burst of events (a resume replays many at once). */
  loadSoon(room) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      if (room.id === this.roomId) this.load(room);
    }, RELOAD_AFTER_MS);
  }

  /** A message's "Pin" / "Unpin" action. */
  toggle(item) {
    const room = this.state?.rooms.get(item.room_id);
    if (!room) return;
    if (this.state.pinOf(room, item.id)) this.unpin(room, item.id);
    else this.pin(room, item.id);
  }

  pin(room, id) {
    return this.write(room, 'PUT', id);
  }

  unpin(room, id) {
    return this.write(room, 'DELETE', id);
  }

  async write(room, method, id) {
    try {
      await this.deps.api.request(method, `/api/v1/rooms/${room.id}/pins/${id}`);
    } catch (err) {
      this.deps.toast(err.message);
      // Refused: we thought we could, so the setting changed meanwhile.
      if (err.code === 'not_allowed') this.deps.refreshRoom(room);
      if (err.code !== 'not_pinned' && err.code !== 'message_deleted') return;
    }
    // The event updates every page; this one may be offline, so it asks too.
    if (room.id === this.roomId) this.load(room);
  }

  /** The "Members may pin" box changed (owners and admins of a group room). */
  async setMembersMayPin(allowed) {
    const room = this.room();
    if (!room) return;
    const box = this.els.membersMayPin;
    box.disabled = true;
    try {
      const detail = await this.deps.api.patch(`/api/v1/rooms/${room.id}`, { members_may_pin: allowed });
      room.members_may_pin = Boolean(detail.members_may_pin);
    } catch (err) {
      this.deps.toast(err.message);
    } finally {
      box.disabled = false;
    }
    this.render();
    this.deps.onChange(room);
  }

  /** The header's button and, when open, the panel. */
  render() {
    const room = this.room();
    const count = room?.pins?.size || 0;
    this.els.count.textContent = count ? String(count) : '';
    this.els.button.setAttribute('aria-label', count ? `Pins, ${count} pinned` : 'Pins');
    if (!this.isOpen || !room) return;
    this.els.setting.hidden = !mayManagePins(room);
    this.els.membersMayPin.checked = Boolean(room.members_may_pin);
    const list = room.pinList;
    if (this.error) this.els.status.textContent = `Pins not loaded: ${this.error}`;
    else if (!list) this.els.status.textContent = 'Loading…';
    else this.els.status.textContent = list.length ? '' : 'No pinned messages yet.';
    replace(this.els.list, (list || []).map((pin) => this.item(room, pin)));
  }

  item(room, pin) {
    const { message } = pin;
    const sender = this.deps.userName(message.sender_id);
    return h('li', { class: 'pin-item', dataset: { id: message.id, seq: message.seq } },
      h('p', { class: 'pin-where' },
        h('span', { class: 'pin-sender' }, sender), ' · ',
        h('time', { datetime: new Date(message.created_at).toISOString() }, formatTime(message.created_at))),
      h('div', { class: 'pin-body' }, this.deps.body(message)),
      h('p', { class: 'pin-meta' },
        h('span', { class: 'pin-by' }, `Pinned by ${this.deps.userName(pin.pinned_by)}`), ' · ',
        h('time', { datetime: new Date(pin.pinned_at).toISOString() }, formatTime(pin.pinned_at))),
      h('div', { class: 'pin-actions' },
        h('button', {
          type: 'button',
          class: 'pin-jump',
          'aria-label': `Jump to the message from ${sender}`,
          onclick: () => this.deps.jump(room.id, message.seq),
        }, 'Jump'),
        mayPin(room)
          ? h('button', {
            type: 'button',
            class: 'pin-unpin',
            'aria-label': `Unpin the message from ${sender}`,
            onclick: () => this.unpin(room, message.id),
          }, 'Unpin')
          : null));
  }
}
