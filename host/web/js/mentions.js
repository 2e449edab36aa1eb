// Mentions in the chat client: `@name` and `@room` highlighted in message bodies, the
// autocomplete under the composers, the list of messages that mention you, desktop
// notifications, and the hint when a name is of someone outside the room.
//
// The server decides who a message mentions (it reads the stored text, see docs/protocol.md)
// and says so in the event (`mentions`: user ids, `mentions_room`). The client only finds the
// `@name` tokens again to highlight those the event lists; `parseMentions` follows the
// server's rules so that both read the same text the same way. Everything is built as text
// nodes (dom.js), never markup from a message.

import { h, replace, formatTime } from './dom.js';

/** Most suggestions shown at once. */
const SUGGESTIONS_MAX = 8;
/** A notification's body is cut to this many characters. */
const NOTIFICATION_BODY_MAX = 140;

/** Can `c` be part of a user name (the server's `name_char`)? */
function isNameChar(c) {
  return /^[A-Za-z0-9._-]$/.test(c);
}

/** Does `c` before an `@` make it part of a word (an address), in any script? */
function isWordChar(c) {
  return /^[\p{L}\p{N}._-]$/u.test(c);
}

/**
 * The `@name` and `@room` tokens of `text`, as the server reads them: an `@` not after a
 * letter or digit of any script, `.`, `_`, `-` or another `@`, the longest run of name characters after it less trailing
 * dots, outside backticks. Returns `[{ start, end, name }]` (`end` exclusive, `name` lower
 * case; `room` for `@room`).
 */
export function parseMentions(text) {
  const tokens = [];
  let inCode = false;
  let previous = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '`') {
      inCode = !inCode;
    } else if (c === '@' && !inCode && !(previous !== null && (isWordChar(previous) || previous === '@'))) {
      let end = i + 1;
      while (end < text.length && isNameChar(text[end])) end++;
      let nameEnd = end;
      while (nameEnd > i + 1 && text[nameEnd - 1] === '.') nameEnd--;
      const name = text.slice(i + 1, nameEnd).toLowerCase();
      previous = text[end - 1];
      if (name && name.length <= 64) tokens.push({ start: i, end: nameEnd, name });
      i = end - 1;
      continue;
    }
    previous = c;
  }
  return tokens;
}

/** Does this message or event mention user `meId` (by name, or `@room`)? */
export function mentionsMe(item, meId) {
  return Boolean(item?.mentions_room) || (item?.mentions || []).includes(meId);
}

function userById(state, id) {
  return id === state.me.id ? state.me : state.users.get(id);
}

function userByName(state, name) {
  if (state.me.name.toLowerCase() === name) return state.me;
  for (const user of state.users.values()) if (user.name.toLowerCase() === name) return user;
  return null;
}

/**
 * The tokens of `text` that are mentions of the message (its `mentions` and
 * `mentions_room`), as `[{ start, end, className }]`: `mention`, plus `mention-me` for the
 * current user and `@room`. The timeline wraps them in spans where they are plain text
 * (markdown.js: not in code, not in a URL).
 */
export function mentionRanges(text, item, state) {
  const byName = new Map();
  for (const id of item.mentions || []) {
    const user = userById(state, id);
    if (user) byName.set(user.name.toLowerCase(), id);
  }
  if (!byName.size && !item.mentions_room) return [];
  const ranges = [];
  for (const token of parseMentions(text)) {
    const room = token.name === 'room';
    if (room ? !item.mentions_room : !byName.has(token.name)) continue;
    const me = room || byName.get(token.name) === state.me.id;
    ranges.push({ start: token.start, end: token.end, className: me ? 'mention mention-me' : 'mention' });
  }
  return ranges;
}

/**
 * A message body as plain nodes (the mentions list): the mentions of the message (see
 * `mentionRanges`) become `<span class="mention">`; everything else stays text.
 */
export function mentionNodes(text, item, state) {
  const nodes = [];
  let at = 0;
  for (const range of mentionRanges(text, item, state)) {
    if (range.start > at) nodes.push(text.slice(at, range.start));
    nodes.push(h('span', { class: range.className }, text.slice(range.start, range.end)));
    at = range.end;
  }
  if (at < text.length || !nodes.length) nodes.push(text.slice(at));
  return nodes;
}

/**
 * The mentions of a message after an edit to `body`. The `edit` event does not carry them
 * (history does), so they are worked out here: the new names that are members of the room
 * (when its members are known), or else that the message mentioned already.
 */
export function editedMentions(state, room, old, body) {
  if (!old) return {};
  const before = new Set(old.mentions || []);
  const users = [];
  let everyone = false;
  for (const { name } of parseMentions(body)) {
    if (name === 'room') {
      everyone = true;
      continue;
    }
    const user = userByName(state, name);
    if (!user || user.active === false || users.includes(user.id)) continue;
    if (room?.members ? room.members.has(user.id) : before.has(user.id)) users.push(user.id);
  }
  return { mentions: users, mentions_room: everyone };
}

/** What the ack's `mentions_not_in_room` tells the sender. */
export function notInRoomHint(names) {
  return `Not in this room, so not notified: @${names.join(', @')}`;
}

/** The room's members to suggest for `prefix` (lower case), by name, then `@room`. */
export function mentionCandidates(state, room, prefix) {
  if (!room?.members) return [];
  const users = [];
  for (const id of room.members) {
    if (id === state.me.id) continue;
    const user = state.users.get(id);
    if (!user || user.active === false) continue;
    const name = user.name.toLowerCase();
    const display = (user.display_name || '').toLowerCase();
    if (name.startsWith(prefix) || display.startsWith(prefix)) users.push(user);
  }
  users.sort((a, b) => a.name.localeCompare(b.name));
  const out = users.slice(0, SUGGESTIONS_MAX).map((user) => ({
    name: user.name,
    label: user.display_name && user.display_name !== user.name ? user.display_name : '',
    user: user.id,
  }));
  if (room.kind !== 'direct' && 'room'.startsWith(prefix)) {
    out.push({ name: 'room', label: 'Everyone in this room' });
  }
  return out;
}

// ---- autocomplete ----

/** One list for every composer: it moves to the one being typed in. */
let suggestions = null;
let owner = null;

function suggestionList() {
  if (!suggestions) {
    suggestions = h('ul', {
      id: 'mention-suggestions',
      class: 'mention-suggestions',
      role: 'listbox',
      'aria-label': 'Mention someone',
      hidden: true,
    });
    // Keep the focus (and the caret) in the input while an item is clicked.
    suggestions.addEventListener('mousedown', (ev) => ev.preventDefault());
  }
  return suggestions;
}

/**
 * `@` autocomplete for a composer's input. `candidates(prefix)` gives the suggestions for
 * the typed prefix (lower case): `[{ name, label, user? }]`. ArrowUp/ArrowDown move, Enter or
 * Tab pick, Escape closes, a click picks; picking puts `@name ` in place of what was typed.
 * `badge(userId)`, if given, is put before a person's name (their presence dot, or null).
 */
export class MentionAutocomplete {
  constructor(input, candidates, badge = () => null) {
    this.input = input;
    this.candidates = candidates;
    this.badge = badge;
    this.options = [];
    this.index = 0;
    this.token = null;
    input.setAttribute('aria-autocomplete', 'list');
    input.setAttribute('aria-expanded', 'false');
    input.addEventListener('input', () => this.refresh());
    input.addEventListener('click', () => this.refresh());
    input.addEventListener('keyup', (ev) => {
      if (['ArrowLeft', 'ArrowRight', 'Home', 'End'].includes(ev.key)) this.refresh();
    });
    input.addEventListener('blur', () => this.hide());
    // Captured on the form, before the input's own handlers (Enter sends, Escape closes the
    // thread): while the list is open these keys are the list's.
    const scope = input.closest('form') || input.parentElement;
    scope.addEventListener('keydown', (ev) => this.keydown(ev), true);
  }

  get isOpen() {
    return owner === this && !suggestionList().hidden;
  }

  keydown(ev) {
    if (ev.target !== this.input || !this.isOpen || ev.isComposing) return;
    if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
      const step = ev.key === 'ArrowDown' ? 1 : -1;
      this.index = (this.index + step + this.options.length) % this.options.length;
      this.render();
    } else if ((ev.key === 'Enter' && !ev.shiftKey) || (ev.key === 'Tab' && !ev.shiftKey)) {
      this.pick(this.options[this.index]);
    } else if (ev.key === 'Escape') {
      this.hide();
    } else {
      return;
    }
    ev.preventDefault();
    ev.stopPropagation();
  }

  /** The `@prefix` just before the caret, if the caret is at the end of one. */
  match() {
    const { value, selectionStart, selectionEnd } = this.input;
    if (document.activeElement !== this.input || selectionStart !== selectionEnd) return null;
    const before = value.slice(0, selectionStart);
    const found = before.match(/(^|[^A-Za-z0-9._@-])@([A-Za-z0-9._-]{0,64})$/);
    if (!found) return null;
    // Inside backticks is code: nobody is mentioned there.
    if ((before.match(/`/g) || []).length % 2 === 1) return null;
    return { start: selectionStart - found[2].length - 1, caret: selectionStart, prefix: found[2].toLowerCase() };
  }

  /** Show, update or hide the list for what is typed now. */
  refresh() {
    const token = this.match();
    const options = token ? this.candidates(token.prefix) : [];
    if (!options.length) {
      this.hide();
      return;
    }
    const same = this.isOpen && this.token?.start === token.start;
    const current = same ? this.options[this.index]?.name : null;
    this.token = token;
    this.options = options;
    this.index = Math.max(0, options.findIndex((o) => o.name === current));
    const list = suggestionList();
    const home = this.input.closest('form') || this.input.parentElement;
    if (list.parentElement !== home) home.append(list);
    if (owner && owner !== this) owner.input.setAttribute('aria-expanded', 'false');
    owner = this;
    list.hidden = false;
    this.input.setAttribute('aria-controls', 'mention-suggestions');
    this.input.setAttribute('aria-expanded', 'true');
    this.render();
  }

  render() {
    const list = suggestionList();
    replace(list, this.options.map((option, i) => h('li', {
      id: `mention-suggestion-${i}`,
      class: 'mention-suggestion',
      role: 'option',
      'aria-selected': i === this.index ? 'true' : 'false',
      dataset: { name: option.name },
      onclick: () => this.pick(option),
    },
    option.user === undefined ? null : this.badge(option.user),
    h('span', { class: 'mention-suggestion-name' }, `@${option.name}`),
    option.label ? h('span', { class: 'muted' }, option.label) : null)));
    this.input.setAttribute('aria-activedescendant', `mention-suggestion-${this.index}`);
    // Keep the chosen item in view (the list scrolls; nothing else should).
    const chosen = list.children[this.index];
    if (chosen && chosen.offsetTop < list.scrollTop) list.scrollTop = chosen.offsetTop;
    else if (chosen && chosen.offsetTop + chosen.offsetHeight > list.scrollTop + list.clientHeight) {
      list.scrollTop = chosen.offsetTop + chosen.offsetHeight - list.clientHeight;
    }
  }

  hide() {
    if (owner !== this) return;
    suggestionList().hidden = true;
    this.input.setAttribute('aria-expanded', 'false');
    this.input.removeAttribute('aria-activedescendant');
    this.options = [];
    this.token = null;
  }

  /** Put `@name ` in place of the typed `@prefix` (and the rest of that word). */
  pick(option) {
    const token = this.match();
    if (!option || !token) {
      this.hide();
      return;
    }
    const { value } = this.input;
    let end = token.caret;
    while (end < value.length && isNameChar(value[end])) end++;
    const insert = `@${option.name} `;
    const after = value.slice(end);
    this.input.value = value.slice(0, token.start) + insert + (after.startsWith(' ') ? after.slice(1) : after);
    const caret = token.start + insert.length;
    this.input.setSelectionRange(caret, caret);
    this.hide();
    this.input.focus();
    // As if typed: the typing indicator and anything else listening follow.
    this.input.dispatchEvent(new Event('input', { bubbles: true }));
  }
}

// ---- the mentions list ----

/**
 * The messages that mention you (`GET /api/v1/mentions`), newest first, in the sidebar in
 * place of the room list; "Load more" pages back; a click opens the room at the message.
 */
export class MentionsView {
  /**
   * @param {object} els  { button, panel, list, more, status, close, rooms }
   * @param {object} deps { api, roomTitle(roomId), userName(id), body(message) -> nodes,
   *                        open(roomId, seq), onOpen() }
   */
  constructor(els, deps) {
    this.els = els;
    this.deps = deps;
    this.cursor = null;
    this.ids = new Set();
    this.loading = false;
    this.generation = 0;
    els.button.addEventListener('click', () => (this.isOpen ? this.close() : this.open()));
    els.close.addEventListener('click', () => {
      this.close();
      els.button.focus();
    });
    els.more.addEventListener('click', () => this.page());
    els.panel.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape') {
        this.close();
        els.button.focus();
      }
    });
  }

  get isOpen() {
    return !this.els.panel.hidden;
  }

  async open() {
    this.deps.onOpen();
    this.reset();
    this.els.panel.hidden = false;
    this.els.rooms.hidden = true;
    this.els.button.setAttribute('aria-expanded', 'true');
    await this.page();
  }

  /** Close the panel; `showRooms` false when another panel takes its place. */
  close(showRooms = true) {
    if (!this.isOpen) return;
    this.reset();
    this.els.panel.hidden = true;
    if (showRooms) this.els.rooms.hidden = false;
    this.els.button.setAttribute('aria-expanded', 'false');
  }

  reset() {
    this.generation += 1;
    this.cursor = null;
    this.ids.clear();
    this.loading = false;
    replace(this.els.list);
    this.els.status.textContent = '';
    this.els.more.hidden = true;
  }

  async page() {
    if (this.loading) return;
    const gen = this.generation;
    const params = new URLSearchParams({ limit: '20' });
    if (this.cursor !== null) params.set('cursor', String(this.cursor));
    this.loading = true;
    this.els.more.disabled = true;
    this.els.status.textContent = 'Loading…';
    let page;
    try {
      page = await this.deps.api.get(`/api/v1/mentions?${params}`);
    } catch (err) {
      if (gen !== this.generation) return;
      this.loading = false;
      this.els.more.disabled = false;
      this.els.status.textContent = err.message;
      return;
    }
    if (gen !== this.generation) return;
    this.loading = false;
    this.els.more.disabled = false;
    for (const message of page.messages) {
      if (this.ids.has(message.id)) continue;
      this.ids.add(message.id);
      this.els.list.append(this.item(message));
    }
    this.cursor = page.next_cursor ?? null;
    this.els.more.hidden = this.cursor === null;
    this.showStatus();
  }

  showStatus() {
    this.els.status.textContent = this.els.list.children.length ? '' : 'Nobody has mentioned you yet.';
  }

  /** A message that mentions us arrived live: at the top of the list, if it is shown. */
  add(event) {
    if (!this.isOpen || this.ids.has(event.id)) return;
    this.ids.add(event.id);
    this.els.list.prepend(this.item(event));
    this.showStatus();
  }

  item(message) {
    return h('li', {},
      h('button', {
        type: 'button',
        class: 'mention-item',
        dataset: { room: message.room_id, seq: message.seq, id: message.id },
        onclick: () => this.deps.open(message.room_id, message.seq),
      },
      h('span', { class: 'mention-where' },
        h('strong', { class: 'mention-room' }, this.deps.roomTitle(message.room_id)), ' · ',
        h('span', { class: 'mention-sender' }, this.deps.userName(message.sender_id)), ' · ',
        h('time', { datetime: new Date(message.created_at).toISOString() }, formatTime(message.created_at))),
      h('span', { class: 'mention-text' }, this.deps.body(message))));
  }
}

// ---- desktop notifications ----

function notificationApi() {
  return typeof globalThis.Notification === 'function' ? globalThis.Notification : null;
}

/**
 * Desktop notifications for mentions. Permission is asked from a click on `button` (browsers
 * ignore requests made without a user gesture); the button shows only while there is
 * something to ask. Nothing here throws where the API is missing or refuses.
 */
export class Notifier {
  constructor(button) {
    this.button = button;
    button.addEventListener('click', () => this.request());
    this.update();
  }

  permission() {
    try {
      return notificationApi()?.permission ?? 'unsupported';
    } catch {
      return 'unsupported';
    }
  }

  update() {
    this.button.hidden = this.permission() !== 'default';
  }

  async request() {
    const api = notificationApi();
    if (!api) return;
    try {
      // Older browsers take a callback and return nothing.
      await new Promise((resolve) => {
        const answer = api.requestPermission(resolve);
        if (answer && typeof answer.then === 'function') answer.then(resolve, resolve);
      });
    } catch {
      // Refused or unsupported: the button's state says which.
    }
    this.update();
  }

  /** Show one notification (if allowed); `onClick` when it is clicked. */
  show(title, body, tag, onClick) {
    const api = notificationApi();
    if (!api || this.permission() !== 'granted') return;
    const chars = [...(body || '')];
    const text = chars.length > NOTIFICATION_BODY_MAX
      ? `${chars.slice(0, NOTIFICATION_BODY_MAX - 1).join('')}…`
      : chars.join('');
    try {
      const note = new api(title, { body: text, tag });
      note.onclick = () => {
        try {
          window.focus();
          note.close();
        } catch {
          // Nothing to do.
        }
        onClick();
      };
    } catch {
      // Some browsers allow notifications from service workers only.
    }
  }
}
