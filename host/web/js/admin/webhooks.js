// Webhooks: every room's incoming webhooks (docs/integrations.md). Make one for a room (its
// URL is shown once, here), and revoke any; both are on the audit record.

import { h, replace } from '../dom.js';
import { report, table, when } from './util.js';

function hookRow(ctx, hook, rooms, names, reload) {
  const revoke = hook.revoked_at
    ? h('span', { class: 'muted' }, `revoked ${when(hook.revoked_at)}`)
    : h('button', {
      type: 'button',
      class: 'revoke-webhook',
      onclick: async () => {
        if (!window.confirm(`Revoke “${hook.name}”? Its URL stops working at once.`)) return;
        try {
          await ctx.api.delete(`/api/v1/rooms/${hook.room_id}/webhooks/${hook.id}`);
          ctx.toast(`${hook.name}: revoked`);
          reload();
        } catch (err) { report(ctx, err); }
      },
    }, 'Revoke');
  return {
    attrs: { dataset: { webhookId: String(hook.id) } },
    cells: [
      hook.name,
      rooms.get(hook.room_id) || `#${hook.room_id}`,
      names.get(hook.created_by) || `#${hook.created_by}`,
      when(hook.created_at),
      revoke,
    ],
  };
}

export default {
  id: 'webhooks',
  title: 'Webhooks',
  mount(el, ctx) {
    const list = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
    const shown = h('div', { id: 'new-webhook-url', 'aria-live': 'polite' });
    const room = h('select', { id: 'webhook-room', name: 'room', required: true });
    const name = h('input', { id: 'webhook-name', name: 'name', required: true, maxlength: 80,
      placeholder: 'Alertmanager' });
    const form = h('form', { id: 'webhook-form' },
      h('label', {}, 'Room ', room), ' ',
      h('label', {}, 'Name ', name), ' ',
      h('button', { type: 'submit' }, 'Make webhook'));
    el.append(
      h('p', { class: 'muted' },
        'A webhook posts Slack-format payloads into one room as its own bot; every post passes the plugins.'),
      form, shown, list);

    const load = () => Promise.all([
      ctx.api.get('/api/v1/admin/webhooks'),
      ctx.api.get('/api/v1/admin/rooms'),
      ctx.api.get('/api/v1/users'),
    ])
      .then(([hooks, rooms, users]) => {
        const names = new Map(users.map((u) => [u.id, u.name]));
        const roomNames = new Map(rooms.map((r) => [r.id, r.name || `#${r.id}`]));
        const groups = rooms.filter((r) => r.kind === 'group');
        const chosen = room.value;
        replace(room, ...groups.map((r) => h('option', { value: String(r.id) }, roomNames.get(r.id))));
        if (chosen) room.value = chosen;
        replace(list, table('Incoming webhooks', ['Name', 'Room', 'Made by', 'Made', ''],
          hooks.map((hook) => hookRow(ctx, hook, roomNames, names, load)), { id: 'webhooks' }));
      })
      .catch((err) => report(ctx, err));

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      try {
        const made = await ctx.api.post(`/api/v1/rooms/${room.value}/webhooks`, { name: name.value });
        const url = made.url || `${window.location.origin}${made.url_path}`;
        replace(shown,
          h('p', {}, `“${made.webhook.name}” posts as ${made.bot.name}. Its URL (shown only now):`),
          h('input', { id: 'webhook-url', readonly: true, value: url, size: 80,
            onfocus: (e) => e.target.select() }));
        name.value = '';
        load();
      } catch (err) { report(ctx, err); }
    });
    load();
  },
};
