// Modal dialogs for the chat client: new group, new direct chat, add a member. Built on the
// native <dialog> element, which gives focus trapping and Escape-to-close for free.

import { h, replace } from './dom.js';

const dialog = () => document.getElementById('dialog');

/** Open the shared dialog with a title and body; returns a function that closes it. */
function open(title, body) {
  const d = dialog();
  const close = () => d.close();
  replace(d,
    h('div', { class: 'dialog-head' },
      h('h2', { id: 'dialog-title' }, title),
      h('button', { type: 'button', class: 'icon', 'aria-label': 'Close', onclick: close }, '×')),
    body);
  d.setAttribute('aria-labelledby', 'dialog-title');
  d.showModal();
  d.querySelector('input, select, textarea, button:not(.icon)')?.focus();
  return close;
}

function errorLine() {
  return h('p', { class: 'form-error', role: 'alert' });
}

function others(state) {
  return [...state.users.values()]
    .filter((u) => u.id !== state.me.id && u.active !== false)
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** `create(name, topic, memberIds)` resolves to the new room id. */
export function newGroupDialog(state, create, onCreated) {
  const error = errorLine();
  const members = others(state).map((u) => h('label', { class: 'check' },
    h('input', { type: 'checkbox', name: 'member', value: u.id }), ` ${u.display_name || u.name} (${u.name})`));
  const form = h('form', { class: 'stack' },
    h('label', {}, 'Name', h('input', { name: 'name', required: true, maxlength: 100, autocomplete: 'off' })),
    h('label', {}, 'Topic (optional)', h('input', { name: 'topic', maxlength: 200, autocomplete: 'off' })),
    h('fieldset', {}, h('legend', {}, 'Members'),
      members.length ? members : h('p', { class: 'muted' }, 'No other users yet.')),
    error,
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, 'Create group')));
  const close = open('New group', form);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const ids = data.getAll('member').map(Number);
    try {
      const id = await create(String(data.get('name')).trim(), String(data.get('topic')).trim() || null, ids);
      close();
      onCreated(id);
    } catch (err) {
      error.textContent = err.message;
    }
  });
}

/** `start(userId)` resolves to the direct room's id. */
export function directDialog(state, start, onStarted) {
  const error = errorLine();
  const list = others(state);
  const body = h('div', { class: 'stack' },
    list.length
      ? h('ul', { class: 'pick-list' }, list.map((u) => h('li', {},
        h('button', {
          type: 'button',
          dataset: { userId: u.id, userName: u.name },
          onclick: async () => {
            try {
              const id = await start(u.id);
              close();
              onStarted(id);
            } catch (err) {
              error.textContent = err.message;
            }
          },
        }, `${u.display_name || u.name} (${u.name})`))))
      : h('p', { class: 'muted' }, 'No other users yet.'),
    error);
  const close = open('Start a direct chat', body);
}

/** `add(userId)` adds a member to the current room. */
export function addMemberDialog(state, memberIds, add) {
  const error = errorLine();
  const candidates = others(state).filter((u) => !memberIds.has(u.id));
  const select = h('select', { name: 'user', required: true },
    candidates.map((u) => h('option', { value: u.id }, `${u.display_name || u.name} (${u.name})`)));
  const form = h('form', { class: 'stack' },
    candidates.length
      ? h('label', {}, 'User', select)
      : h('p', { class: 'muted' }, 'Everyone is already a member.'),
    error,
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary', disabled: !candidates.length }, 'Add member')));
  const close = open('Add a member', form);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await add(Number(select.value));
      close();
    } catch (err) {
      error.textContent = err.message;
    }
  });
}
