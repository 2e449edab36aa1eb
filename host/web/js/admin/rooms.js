// Rooms: every room on the server (not only the admin's own).

import { h, replace } from '../dom.js';
import { report, table, when } from './util.js';

export default {
  id: 'rooms',
  title: 'Rooms',
  mount(el, ctx) {
    const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
    el.append(body);
    Promise.all([ctx.api.get('/api/v1/admin/rooms'), ctx.api.get('/api/v1/users')])
      .then(([rooms, users]) => {
        const names = new Map(users.map((u) => [u.id, u.name]));
        replace(body, table('Rooms', ['Id', 'Kind', 'Name', 'Topic', 'Created by', 'Created', 'Events'],
          rooms.map((r) => ({
            cells: [String(r.id), r.kind, r.name || '—', r.topic || '—',
              names.get(r.created_by) || `#${r.created_by}`, when(r.created_at), String(r.last_seq)],
          }))));
      })
      .catch((err) => report(ctx, err));
  },
};
