// Files: the quarantine plugins put uploads in (look at one, release it to its room, or
// delete it; each on the audit record) and the storage the files take.

import { h, replace } from '../dom.js';
import { formatSize } from '../files.js';
import { report, saveFile, table, when } from './util.js';

/** Save a quarantined file to look at it. */
function review(ctx, file) {
  return saveFile(ctx, `/api/v1/admin/files/${file.id}/content`, file.name);
}

function quarantineRow(ctx, file, names, reload) {
  const act = (verb, label, confirmText) => h('button', {
    type: 'button',
    class: `${verb}-file`,
    onclick: async () => {
      if (confirmText && !window.confirm(confirmText)) return;
      try {
        await ctx.api.post(`/api/v1/admin/files/${file.id}/${verb}`, {});
        ctx.toast(`${file.name}: ${verb === 'release' ? 'released to its room' : 'deleted'}`);
        reload();
      } catch (err) { report(ctx, err); }
    },
  }, label);
  return {
    attrs: { dataset: { fileId: String(file.id) } },
    cells: [
      file.name,
      `#${file.room_id}`,
      names.get(file.uploader_id) || `#${file.uploader_id}`,
      `${formatSize(file.size)} · ${file.content_type}`,
      when(file.created_at),
      h('span', { class: 'quarantine-reason' }, `${file.quarantined_by}: ${file.quarantine_reason}`),
      h('span', { class: 'actions' },
        h('button', { type: 'button', class: 'link review-file', onclick: () => review(ctx, file) }, 'Download'),
        act('release', 'Release'),
        act('discard', 'Delete', `Delete ${file.name} for good?`)),
    ],
  };
}

export default {
  id: 'files',
  title: 'Files',
  mount(el, ctx) {
    const usage = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
    const queue = h('div', {});
    el.append(h('h2', {}, 'Quarantine'), queue, h('h2', {}, 'Storage'), usage);
    const load = () => Promise.all([
      ctx.api.get('/api/v1/admin/files/quarantine'),
      ctx.api.get('/api/v1/admin/files/usage'),
      ctx.api.get('/api/v1/users'),
    ])
      .then(([quarantined, used, users]) => {
        const names = new Map(users.map((u) => [u.id, u.name]));
        replace(queue, table('Quarantined files',
          ['Name', 'Room', 'Uploader', 'Size', 'Uploaded', 'Held by', ''],
          quarantined.files.map((f) => quarantineRow(ctx, f, names, load)),
          { id: 'quarantine' }));
        replace(usage,
          h('p', { id: 'storage-total' },
            `${used.total_files} files, ${formatSize(used.total_bytes)} in ${used.backend} storage `
            + `(uploads up to ${formatSize(used.max_upload_bytes)})`),
          table('Storage by state', ['State', 'Files', 'Bytes'],
            used.states.map((s) => ({ cells: [s.state, String(s.files), formatSize(s.bytes)] }))));
      })
      .catch((err) => report(ctx, err));
    load();
  },
};
