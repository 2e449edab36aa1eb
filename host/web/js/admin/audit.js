// Recent audit events: admin actions and plugin decisions (rejects, DLP flags).

import { h, replace } from '../dom.js';
import { report, table, when } from './util.js';

async function load(ctx, body) {
  try {
    const records = await ctx.api.get('/api/v1/admin/audit?limit=100');
    replace(body, table('Audit events', ['When', 'Actor', 'Action', 'Subject', 'Detail'],
      records.map((r) => ({
        cells: [when(r.at), r.actor, h('code', {}, r.action), r.subject,
          h('code', { class: 'detail' }, JSON.stringify(r.detail))],
      }))));
  } catch (err) {
    report(ctx, err);
  }
}

export default {
  id: 'audit',
  title: 'Audit',
  mount(el, ctx) {
    const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
    el.append(h('div', { class: 'row' },
      h('p', { class: 'muted grow' }, 'Newest first: admin actions and plugin decisions. Message text is never recorded.'),
      h('button', { type: 'button', onclick: () => load(ctx, body) }, 'Refresh')), body);
    load(ctx, body);
  },
};
