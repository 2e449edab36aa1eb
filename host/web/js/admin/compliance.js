// The compliance role's page: search across every room, the audit chain's status, legal
// holds (create, release), retention (room policies, an exact preview, a run) and exports
// (run one, download its files). Shown to users with the compliance role, admins or not; every read here is
// itself an audit record on the server.

import { h, replace } from '../dom.js';
import { report, saveFile, table, when } from './util.js';
import { snippetNodes } from '../search.js';

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

const ids = (text) => String(text || '').split(/[\s,]+/).filter(Boolean).map(Number);

/** Save one file of an export batch. */
function download(ctx, series, batch, file) {
  return saveFile(ctx, `/api/v1/compliance/exports/${series}/${batch}/${encodeURIComponent(file)}`,
    `${batch}-${file}`);
}

function retentionSection(ctx, policies, preview, reload) {
  const form = h('form', { id: 'set-retention', class: 'row' },
    h('label', {}, 'Room id ', h('input', { name: 'room', required: true, inputmode: 'numeric' })),
    h('label', {}, 'Keep (days) ', h('input', {
      name: 'days', type: 'number', min: policies.min_days, placeholder: 'global',
    })),
    h('button', { type: 'submit', class: 'primary' }, 'Set policy'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const days = String(data.get('days') || '');
    try {
      await ctx.api.put(`/api/v1/compliance/retention/rooms/${Number(data.get('room'))}`,
        { days: days === '' ? null : Number(days) });
      reload();
    } catch (err) { report(ctx, err); }
  });
  const run = h('button', {
    type: 'button',
    id: 'run-retention',
    disabled: preview.messages === 0,
    onclick: async () => {
      try {
        const done = await ctx.api.post('/api/v1/compliance/retention/run', {});
        ctx.toast(`Retention erased ${done.messages} message(s).`);
        reload();
      } catch (err) { report(ctx, err); }
    },
  }, `Erase ${preview.messages} message(s) now`);
  return [
    h('h2', {}, 'Retention'),
    h('p', { id: 'retention-preview' },
      `Global: ${policies.global_days ? `${policies.global_days} days` : 'keep forever'} `
      + `(shortest allowed: ${policies.min_days} days). A run now would erase ${preview.messages} `
      + `message(s) in ${preview.rooms} room(s)`
      + (preview.oldest ? `, oldest ${when(preview.oldest)}` : '')
      + `; ${preview.held} kept by holds.`),
    form,
    table('Room retention policies', ['Room', 'Keep (days)', ''],
      policies.rooms.map((p) => ({
        attrs: { dataset: { room: String(p.room) } },
        cells: [String(p.room), String(p.days), h('button', {
          type: 'button',
          onclick: async () => {
            try {
              await ctx.api.put(`/api/v1/compliance/retention/rooms/${p.room}`, { days: null });
              reload();
            } catch (err) { report(ctx, err); }
          },
        }, 'Follow global')],
      })), { id: 'retention-table' }),
    h('div', { class: 'row' }, run),
  ];
}

function exportsSection(ctx, exports, reload) {
  if (exports.error) {
    return [h('h2', {}, 'Exports'), h('p', { id: 'exports-off', class: 'muted' }, exports.error)];
  }
  const form = h('form', { id: 'run-export', class: 'row' },
    h('label', {}, 'Room ids ', h('input', { name: 'rooms', placeholder: 'all' })),
    h('label', {}, 'User ids ', h('input', { name: 'users', placeholder: 'all' })),
    h('label', {}, 'From ', h('input', { name: 'from', type: 'date' })),
    h('label', {}, 'Until ', h('input', { name: 'until', type: 'date' })),
    h('button', { type: 'submit', class: 'primary' }, 'Export now'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const day = (v) => (v ? Date.parse(`${v}T00:00:00Z`) : undefined);
    const button = form.querySelector('button');
    button.disabled = true;
    button.textContent = 'Exporting…';
    try {
      await ctx.api.post('/api/v1/compliance/exports', {
        rooms: ids(data.get('rooms')), users: ids(data.get('users')),
        from: day(data.get('from')), until: day(data.get('until')),
      });
      reload();
    } catch (err) {
      report(ctx, err);
      button.disabled = false;
      button.textContent = 'Export now';
    }
  });
  const rows = exports.map((b) => ({
    attrs: { dataset: { batch: `${b.series}/${b.batch}` } },
    cells: [b.series, b.batch, when(b.manifest.created_at), String(b.manifest.events),
      h('span', { class: 'files' }, ['manifest.json', 'manifest.sig', ...b.manifest.files.map((f) => f.name)]
        .map((file) => h('button', {
          type: 'button', class: 'link download', onclick: () => download(ctx, b.series, b.batch, file),
        }, file)))],
  }));
  return [
    h('h2', {}, 'Exports'),
    h('p', { class: 'muted' }, 'Each batch is signed; check a series with `switchboard export verify DIR`.'),
    form,
    table('Export batches', ['Series', 'Batch', 'Written', 'Events', 'Files'], rows, { id: 'exports-table' }),
  ];
}

/** Search across every room (each search is an audit record with its query). */
function searchSection(ctx) {
  const results = h('div', { id: 'compliance-search-results' });
  let query = '';
  let cursor = null;
  const more = h('button', { type: 'button', id: 'compliance-search-more', hidden: true }, 'More results');
  const list = h('ol', { class: 'search-list' });
  const status = h('p', { class: 'muted', role: 'status' });
  async function page() {
    const params = new URLSearchParams({ q: query, limit: '50' });
    if (cursor !== null) params.set('cursor', String(cursor));
    more.hidden = true;
    try {
      const found = await ctx.api.get(`/api/v1/compliance/search?${params}`);
      for (const r of found.results) {
        list.append(h('li', { class: 'search-hit', dataset: { id: r.message.id } },
          h('span', { class: 'search-where' },
            h('strong', {}, r.room.name || `${r.room.kind} room #${r.room.id}`),
            ` · user ${r.message.sender_id} · ${when(r.message.created_at)} · message ${r.message.id}`),
          h('span', { class: 'search-snippet' }, snippetNodes(r.snippet))));
      }
      cursor = found.next_cursor ?? null;
      more.hidden = cursor === null;
      status.textContent = list.children.length === 0 ? 'No messages match.' : `${list.children.length}${cursor === null ? '' : '+'} found`;
    } catch (err) {
      status.textContent = err.message;
    }
  }
  more.addEventListener('click', page);
  const form = h('form', { id: 'compliance-search', class: 'row', role: 'search' },
    h('label', { class: 'grow' }, 'Search all rooms ',
      h('input', { name: 'q', type: 'search', required: true, maxlength: 500, placeholder: 'words, "phrase", from:name, in:room, after:2026-01-31' })),
    h('button', { type: 'submit', class: 'primary' }, 'Search'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    query = String(new FormData(form).get('q')).trim();
    cursor = null;
    replace(list);
    page();
  });
  replace(results, status, list, more);
  return [h('h2', {}, 'Search messages'), form, results];
}

async function load(ctx, body) {
  const reload = () => load(ctx, body);
  try {
    const [report_, holds, preview, policies, exports] = await Promise.all([
      ctx.api.get('/api/v1/compliance/audit/verify'),
      ctx.api.get('/api/v1/compliance/holds'),
      ctx.api.get('/api/v1/compliance/retention/preview'),
      ctx.api.get('/api/v1/compliance/retention'),
      // Exports need `compliance.export_dir`; without it the rest of the page still works.
      ctx.api.get('/api/v1/compliance/exports').catch((err) => ({ error: err.message })),
    ]);
    const form = h('form', { id: 'create-hold', class: 'row' },
      h('label', {}, 'Name ', h('input', { name: 'name', required: true, maxlength: 100 })),
      h('label', {}, 'Room ids ', h('input', { name: 'rooms', placeholder: '3, 7', inputmode: 'numeric' })),
      h('label', {}, 'User ids ', h('input', { name: 'users', placeholder: 'any' })),
      h('button', { type: 'submit', class: 'primary' }, 'Place hold'));
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
      ...searchSection(ctx),
      chainStatus(report_),
      h('h2', {}, 'Legal holds'),
      form,
      table('Legal holds', ['Name', 'Rooms', 'Users', 'Placed', 'State', ''],
        holds.map((hold) => holdRow(ctx, hold, reload)), { id: 'holds-table' }),
      ...retentionSection(ctx, policies, preview, reload),
      ...exportsSection(ctx, exports, reload));
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
