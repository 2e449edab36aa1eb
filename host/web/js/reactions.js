// Reactions in the chat client: the chips under a message (an emoji and how many reacted with
// it, pressed when one of them is you; a click adds or takes back yours), the "add reaction"
// button with its picker of common emoji (or any other emoji or `:shortcode:`, typed), and who
// reacted, fetched when a chip is first hovered or focused.
//
// The counts are the model's (state.js): history brings them, live `reaction` and
// `reaction_removed` events change them. A click only asks the server (`PUT` / `DELETE
// /rooms/{id}/messages/{msg}/reactions/{emoji}`); the event it causes comes back over the
// socket like everyone else's, so nothing is counted twice. Emoji and shortcodes are shown as
// text (dom.js); the server accepts only one emoji or a `:shortcode:` (docs/protocol.md).

import { h } from './dom.js';

/** The picker's choices, in order. */
export const COMMON_EMOJI = ['👍', '👎', '😄', '🎉', '❤️', '🚀', '👀', '✅', '😢', '🙏', '🔥', '💯'];

/** The path of one reaction of the reader's to a message. */
function reactionPath(item, emoji) {
  return `/api/v1/rooms/${item.room_id}/messages/${item.id}/reactions/${encodeURIComponent(emoji)}`;
}

/** What a message's reactions are now, to tell a stale list of reactors from a fresh one. */
function signature(reactions) {
  return (reactions || []).map((r) => `${r.emoji}:${r.count}`).join(' ');
}

/**
 * Reacting, for the views: `toggle` (a chip's click), `pick` (the add button opens the picker)
 * and `describe` (a chip's title, naming who reacted). One per session: it holds the session's
 * model.
 */
export class Reactions {
  /**
   * @param {import('./api.js').Api} api
   * @param {import('./state.js').ChatState} state
   * @param {(message: string) => void} toast the server's reason for a refusal goes here
   */
  constructor(api, state, toast) {
    this.api = api;
    this.state = state;
    this.toast = toast;
    /** `room:message:emoji` of requests on their way: a second click waits for the first. */
    this.pending = new Set();
    /** `room:message` -> `{ signature, users: Map(emoji -> user ids) }` from `GET …/reactions`. */
    this.reactors = new Map();
  }

  /** Is `emoji` one of the reader's reactions to `item`? */
  mine(item, emoji) {
    return Boolean((item.reactions || []).find((r) => r.emoji === emoji)?.me);
  }

  /** A chip was clicked: take back our reaction, or add it. */
  toggle(item, emoji) {
    return this.send(item, emoji, this.mine(item, emoji) ? 'DELETE' : 'PUT');
  }

  /** An emoji was picked: add it (already ours: nothing to do). */
  add(item, emoji) {
    if (this.mine(item, emoji)) return Promise.resolve();
    return this.send(item, emoji, 'PUT');
  }

  async send(item, emoji, method) {
    const key = `${item.room_id}:${item.id}:${emoji}`;
    if (this.pending.has(key)) return;
    this.pending.add(key);
    try {
      await this.api.request(method, reactionPath(item, emoji));
    } catch (err) {
      // The server says why: not an emoji, too many different ones, the message deleted…
      this.toast(err.message);
    } finally {
      this.pending.delete(key);
    }
  }

  /** Open the picker under `anchor` (the add button); a pick reacts to `item`. */
  pick(item, anchor) {
    openPicker(anchor, (emoji) => this.add(item, emoji));
  }

  /** Name who reacted in the titles of the chips of `row` (once per change of the counts). */
  async describe(item, row) {
    const key = `${item.room_id}:${item.id}`;
    const sig = signature(item.reactions);
    let known = this.reactors.get(key);
    if (!known || known.signature !== sig) {
      try {
        const list = await this.api.get(`/api/v1/rooms/${item.room_id}/messages/${item.id}/reactions`);
        known = { signature: sig, users: new Map(list.map((r) => [r.emoji, r.users])) };
        this.reactors.set(key, known);
      } catch {
        return; // The title keeps its count.
      }
    }
    for (const chip of row.querySelectorAll('.reaction-chip')) {
      const users = known.users.get(chip.dataset.emoji);
      if (users) chip.title = this.whoReacted(users, chip.dataset.emoji);
    }
  }

  /** "alice, bob and you reacted with 🎉". */
  whoReacted(users, emoji) {
    const names = users.map((id) => (id === this.state.me.id ? 'you' : this.state.userName(id)));
    const list = names.length > 1 ? `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}` : names[0];
    return `${list} reacted with ${emoji}`;
  }

  /** What a chip's title says before the names are known. */
  countTitle(reaction) {
    const people = reaction.count === 1 ? '1 person' : `${reaction.count} people`;
    return `${people}${reaction.me ? ' (you included)' : ''} reacted with ${reaction.emoji}`;
  }
}

/**
 * The row under a message: a chip per emoji (in the order first given), then the add button.
 * Without chips the row shows only on hover or focus, like the message's actions.
 */
export function reactionsRow(item, reactions) {
  const list = item.reactions || [];
  const known = reactions.reactors.get(`${item.room_id}:${item.id}`);
  const fresh = known && known.signature === signature(list) ? known : null;
  const row = h('div', {
    class: `msg-reactions${list.length ? '' : ' empty'}`,
    role: 'group',
    'aria-label': 'Reactions',
  });
  const describe = () => reactions.describe(item, row);
  for (const reaction of list) {
    const users = fresh?.users.get(reaction.emoji);
    row.append(h('button', {
      type: 'button',
      class: 'reaction-chip',
      dataset: { emoji: reaction.emoji },
      'aria-pressed': reaction.me ? 'true' : 'false',
      'aria-label': `${reaction.emoji} ${reaction.count}${reaction.me ? ', including you' : ''}`,
      title: users ? reactions.whoReacted(users, reaction.emoji) : reactions.countTitle(reaction),
      onclick: () => reactions.toggle(item, reaction.emoji),
      onmouseenter: describe,
      onfocus: describe,
    },
    h('span', { class: 'reaction-emoji' }, reaction.emoji), ' ',
    h('span', { class: 'reaction-count' }, String(reaction.count))));
  }
  row.append(h('button', {
    type: 'button',
    class: 'reaction-add',
    title: 'Add reaction',
    'aria-label': 'Add reaction',
    'aria-haspopup': 'dialog',
    'aria-expanded': 'false',
    onclick: (ev) => reactions.pick(item, ev.currentTarget),
  }, h('span', { 'aria-hidden': 'true' }, '🙂+')));
  return row;
}

// ---- the picker ----

/** The one picker shown (there is never more than one): `{ el, anchor, onPick }`. */
let open = null;

/** Close the picker; `refocus` puts the focus back on the button that opened it. */
export function closePicker(refocus = false) {
  if (!open) return;
  const { el, anchor } = open;
  open = null;
  el.remove();
  document.removeEventListener('mousedown', outside, true);
  window.removeEventListener('resize', onResize);
  anchor.setAttribute('aria-expanded', 'false');
  if (!refocus) return;
  // A live event may have rebuilt the message meanwhile: focus its new button.
  const target = anchor.isConnected ? anchor : findAgain(anchor);
  target?.focus();
}

function findAgain(anchor) {
  const key = anchor.dataset.for;
  if (!key) return null;
  return document.querySelector(`.msg[data-key="${CSS.escape(key)}"] .reaction-add`);
}

function outside(ev) {
  if (!open || open.el.contains(ev.target) || open.anchor.contains(ev.target)) return;
  closePicker(false);
}

function onResize() {
  closePicker(false);
}

/** Open the picker by `anchor`; a choice calls `onPick(emoji)` and closes it. A second click
 * on the same button closes it. */
export function openPicker(anchor, onPick) {
  if (open?.anchor === anchor) {
    closePicker(true);
    return;
  }
  closePicker(false);
  anchor.dataset.for = anchor.closest('.msg')?.dataset.key || '';
  const choose = (emoji) => {
    closePicker(true);
    onPick(emoji);
  };
  const other = h('input', {
    id: 'reaction-other-input',
    class: 'reaction-other-input',
    maxlength: 70,
    autocomplete: 'off',
    spellcheck: 'false',
    autocapitalize: 'none',
    placeholder: 'Other emoji or :shortcode:',
  });
  const form = h('form', { class: 'reaction-other' },
    h('label', { for: 'reaction-other-input', class: 'visually-hidden' }, 'Another emoji or :shortcode:'),
    other,
    h('button', { type: 'submit' }, 'Add'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const value = other.value.trim();
    if (value) choose(value);
  });
  const grid = h('div', { class: 'reaction-grid', role: 'group', 'aria-label': 'Common reactions' },
    COMMON_EMOJI.map((emoji) => h('button', {
      type: 'button',
      class: 'reaction-option',
      dataset: { emoji },
      title: emoji,
      'aria-label': `React with ${emoji}`,
      onclick: () => choose(emoji),
    }, emoji)));
  grid.addEventListener('keydown', (ev) => moveInGrid(ev, grid));
  const el = h('div', {
    id: 'reaction-picker',
    class: 'reaction-picker',
    role: 'dialog',
    'aria-label': 'Add a reaction',
  }, grid, form);
  el.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') {
      ev.preventDefault();
      ev.stopPropagation();
      closePicker(true);
    }
  });
  document.body.append(el);
  place(el, anchor);
  open = { el, anchor, onPick };
  anchor.setAttribute('aria-expanded', 'true');
  document.addEventListener('mousedown', outside, true);
  window.addEventListener('resize', onResize);
  grid.querySelector('button')?.focus();
}

/** Below the button (above it when there is no room below), inside the window. */
function place(el, anchor) {
  const rect = anchor.getBoundingClientRect();
  const { offsetWidth: width, offsetHeight: height } = el;
  const margin = 8;
  const below = rect.bottom + 4;
  const top = below + height + margin <= window.innerHeight ? below : Math.max(margin, rect.top - height - 4);
  const left = Math.min(Math.max(margin, rect.left), Math.max(margin, window.innerWidth - width - margin));
  el.style.top = `${top}px`;
  el.style.left = `${left}px`;
}

/** Arrow keys move between the picker's emoji (Home and End to the first and last). */
function moveInGrid(ev, grid) {
  const buttons = [...grid.querySelectorAll('button')];
  const at = buttons.indexOf(document.activeElement);
  if (at < 0) return;
  const columns = Math.max(1, Math.round(grid.offsetWidth / (buttons[0].offsetWidth || 1)));
  const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns, ArrowUp: -columns }[ev.key];
  let next = null;
  if (step !== undefined) next = Math.min(buttons.length - 1, Math.max(0, at + step));
  else if (ev.key === 'Home') next = 0;
  else if (ev.key === 'End') next = buttons.length - 1;
  if (next === null) return;
  ev.preventDefault();
  buttons[next].focus();
}
