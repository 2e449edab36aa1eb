// The compliance role's page: the audit chain's status, legal holds (create, release) and
// retention (policies and an exact preview). Shown to users with the compliance role,
// admins or not; every read here is itself an audit record on the server.

import { h, replace } from '../dom.js';
import { report, table, when } from './util.js';

function chainStatus(r) {
  const findings = [
    ...r.modified.map((s) => `record ${s} modified`),
    ...r.inserted.map((s) => `record ${s} inserted`),
    ...r.deleted.map(([a, b]) => `records between ${a} and ${b} deleted`),
    ...(r.truncated ? [`chain cut at ${r.truncated.chain_ends_at}, checkpoint covers ${r.truncated.checkpoint_seq}`] : []),
    ...r.checkpoint_mismatches.map((s) => `checkpoint ${s} rewritten`),
    ...r.bad_signatures.map((s) => `checkpoint ${s} forged`),
  ];
  return h('div', { id: 'chain-status', class: findings.length ? 'card bad' : 'card ok' },
    h('p', {}, h('strong', {}, findings.length ? 'Audit chain: tampering found' : 'Audit chain: intact'),
      ` — ${r.records} records, head ${r.head_seq}, ${r.checkpoints_checked} signed checkpoints`),
    findings.length ? h('ul', {}, findings.map((f) => h('li', {}, f))) : null);
}

function holdRow(ctx, hold, reload) {
  const now = Date.now();
  const state = !hold.released_at ? 'active'
    : hold.released_at > now ? `releasing ${when(hold.released_at)}` : `released ${when(hold.released_at)}`;
  const release = h('button', {
    type: 'button',
    class: 'release-hold',
    disabled: Boolean(hold.released_at && hold.released_at <= now),
    onclick: async () => {
      try {
        await ctx.api.post(`/api/v1/compliance/holds/${hold.id}/release`, {});
        reload();
      } catch (err) { report(ctx, err); }
    },
  }, hold.release_requested_by ? 'Confirm release' : 'Release');
  return {
    attrs: { dataset: { holdName: hold.name } },
    cells: [hold.name, hold.rooms.join(', ') || 'any', hold.users.join(', ') || 'any',
      when(hold.created_at), state, release],
  };
}

async function load(ctx, body) {
  const reload = () => load(ctx, body);
  try {
    const [report_, holds, preview, policies] = await Promise.all([
      ctx.api.get('/api/v1/compliance/audit/verify'),
      ctx.api.get('/api/v1/compliance/holds'),
      ctx.api.get('/api/v1/compliance/retention/preview'),
      ctx.api.get('/api/v1/compliance/retention'),
    ]);
    const form = h('form', { id: 'create-hold', class: 'row' },
      h('label', {}, 'Name ', h('input', { name: 'name', required: true, maxlength: 100 })),
      h('label', {}, 'Room ids ', h('input', { name: 'rooms', placeholder: '3, 7', inputmode: 'numeric' })),
      h('label', {}, 'User ids ', h('input', { name: 'users', placeholder: 'any' })),
      h('button', { type: 'submit', class: 'primary' }, 'Place hold'));
    const ids = (text) => String(text || '').split(/[\s,]+/).filter(Boolean).map(Number);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const data = new FormData(form);
      try {
        await ctx.api.post('/api/v1/compliance/holds', {
          name: String(data.get('name')), rooms: ids(data.get('rooms')), users: ids(data.get('users')),
        });
        reload();
      } catch (err) { report(ctx, err); }
    });
    replace(body,
      chainStatus(report_),
      h('h2', {}, 'Legal holds'),
      form,
      table('Legal holds', ['Name', 'Rooms', 'Users', 'Placed', 'State', ''],
        holds.map((hold) => holdRow(ctx, hold, reload)), { id: 'holds-table' }),
      h('h2', {}, 'Retention'),
      h('p', { id: 'retention-preview' },
        `Global: ${policies.global_days ? `${policies.global_days} days` : 'keep forever'}; `
        + `${policies.rooms.length} room policies. A run now would erase ${preview.messages} `
        + `message(s) in ${preview.rooms} room(s)`
        + (preview.oldest ? `, oldest ${when(preview.oldest)}` : '')
        + `; ${preview.held} kept by holds.`));
  } catch (err) {
    report(ctx, err);
  }
}

export default {
  id: 'compliance',
  title: 'Compliance',
  mount(el, ctx) {
    const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
    el.append(h('div', { class: 'row' },
      h('p', { class: 'muted grow' }, 'What this page reads is itself recorded in the audit log.'),
      h('button', { type: 'button', onclick: () => load(ctx, body) }, 'Refresh')), body);
    load(ctx, body);
  },
};
