// Shared bits for admin sections: tables and error handling.

import { h } from '../dom.js';

/** A table from column titles and rows of cells (strings or nodes). */
export function table(caption, columns, rows, attrs = {}) {
  return h('div', { class: 'table-wrap' },
    h('table', attrs,
      h('caption', { class: 'visually-hidden' }, caption),
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows.length
        ? rows.map((r) => h('tr', r.attrs || {}, r.cells.map((c) => h('td', {}, c))))
        : h('tr', {}, h('td', { colspan: columns.length, class: 'muted' }, 'Nothing here yet.')))));
}

/** Route an error: `admin_only` means we lost the right to be here. */
export function report(ctx, err) {
  if (err.code === 'admin_only') ctx.forbidden();
  else ctx.toast(err.message);
}

export function when(millis) {
  return millis ? new Date(millis).toLocaleString() : '—';
}
