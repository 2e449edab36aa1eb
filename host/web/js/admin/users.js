// Users: list, create, deactivate/reactivate, reset password.

import { h, replace } from '../dom.js';
import { report, table } from './util.js';

async function load(ctx, list) {
  let users;
  try {
    users = await ctx.api.get('/api/v1/users');
  } catch (err) {
    report(ctx, err);
    return;
  }
  const rows = users.map((u) => ({
    attrs: { dataset: { userId: u.id, userName: u.name } },
    cells: [
      u.name,
      u.display_name,
      u.is_bot ? 'bot' : 'user',
      h('span', { class: `pill ${u.active ? 'ok' : 'off'}` }, u.active ? 'active' : 'deactivated'),
      h('div', { class: 'row' },
        h('button', {
          type: 'button',
          class: 'toggle-active',
          // The server refuses it anyway (`cannot_deactivate_self`); do not offer it.
          disabled: u.id === ctx.api.user?.id,
          title: u.id === ctx.api.user?.id ? 'You cannot deactivate yourself' : false,
          'aria-label': `${u.active ? 'Deactivate' : 'Reactivate'} ${u.name}`,
          onclick: () => setActive(ctx, list, u, !u.active),
        }, u.active ? 'Deactivate' : 'Reactivate'),
        h('button', {
          type: 'button',
          'aria-label': `Reset the password of ${u.name}`,
          onclick: (ev) => resetPassword(ctx, ev.target, u),
        }, 'Reset password')),
    ],
  }));
  replace(list, table('Users', ['Name', 'Display name', 'Kind', 'Status', 'Actions'], rows, { id: 'users-table' }));
}

async function setActive(ctx, list, user, active) {
  if (!active && !window.confirm(`Deactivate ${user.name}? Their sessions end at once.`)) return;
  try {
    await ctx.api.patch(`/api/v1/users/${user.id}`, { active });
    ctx.toast(`${user.name} ${active ? 'reactivated' : 'deactivated'}.`);
  } catch (err) {
    report(ctx, err);
  }
  await load(ctx, list);
}

function resetPassword(ctx, button, user) {
  const input = h('input', { type: 'password', 'aria-label': `New password for ${user.name}`, minlength: 8, required: true, autocomplete: 'new-password' });
  const form = h('form', { class: 'row inline-form' }, input,
    h('button', { type: 'submit', class: 'primary' }, 'Set'),
    h('button', { type: 'button', onclick: () => form.replaceWith(button) }, 'Cancel'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await ctx.api.patch(`/api/v1/users/${user.id}`, { password: input.value });
      ctx.toast(`Password of ${user.name} reset.`);
      form.replaceWith(button);
    } catch (err) {
      report(ctx, err);
    }
  });
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') form.replaceWith(button);
  });
  button.replaceWith(form);
  input.focus();
}

function createForm(ctx, list) {
  const error = h('p', { class: 'form-error', role: 'alert' });
  const form = h('form', { id: 'create-user', class: 'card stack narrow', 'aria-labelledby': 'create-user-title' },
    h('h2', { id: 'create-user-title' }, 'Create a user'),
    h('label', {}, 'User name', h('input', { name: 'name', required: true, pattern: '[a-z0-9][a-z0-9._\\-]{0,31}', autocomplete: 'off', autocapitalize: 'none' })),
    h('label', {}, 'Display name (optional)', h('input', { name: 'display_name', autocomplete: 'off' })),
    h('label', {}, 'Password (at least 8 characters)', h('input', { name: 'password', type: 'password', minlength: 8, required: true, autocomplete: 'new-password' })),
    h('label', { class: 'check' }, h('input', { name: 'admin', type: 'checkbox' }), ' Server admin'),
    error,
    h('button', { type: 'submit', class: 'primary' }, 'Create user'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    error.textContent = '';
    try {
      const user = await ctx.api.post('/api/v1/users', {
        name: String(data.get('name')).trim(),
        password: String(data.get('password')),
        display_name: String(data.get('display_name')).trim() || null,
        admin: data.get('admin') === 'on',
      });
      form.reset();
      ctx.toast(`Created ${user.name}.`);
      await load(ctx, list);
    } catch (err) {
      if (err.code === 'admin_only') ctx.forbidden();
      error.textContent = err.message;
    }
  });
  return form;
}

export default {
  id: 'users',
  title: 'Users',
  mount(el, ctx) {
    const list = h('div', { class: 'users-list' }, h('p', { class: 'muted' }, 'Loading…'));
    el.append(list, createForm(ctx, list));
    load(ctx, list);
  },
};
