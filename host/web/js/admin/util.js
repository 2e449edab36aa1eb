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

/** Fetch `path` with the session's token and hand it to the browser as a download. */
export async function saveFile(ctx, path, name) {
  try {
    const blob = await ctx.api.blob(path);
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (err) { report(ctx, err); }
}

export function when(millis) {
  return millis ? new Date(millis).toLocaleString() : '—';
}

const SVG = 'http://www.w3.org/2000/svg';

function svgBox(slots, label, cls = 'chart') {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${slots * 10} 60`);
  svg.setAttribute('class', cls);
  // Stretch to the box: samples keep their place on the time axis at any width.
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  return svg;
}

function tip(node, text) {
  const title = document.createElementNS(SVG, 'title');
  title.textContent = text;
  node.append(title);
}

/** A bar chart as SVG (no library): one bar per sample, the newest on the right. */
export function barChart(values, slots, unit, label) {
  const svg = svgBox(slots, label);
  const max = Math.max(1, ...values);
  values.forEach((v, i) => {
    const rect = document.createElementNS(SVG, 'rect');
    const height = Math.max(1, (v / max) * 56);
    rect.setAttribute('x', String((slots - values.length + i) * 10 + 1));
    rect.setAttribute('y', String(58 - height));
    rect.setAttribute('width', '8');
    rect.setAttribute('height', String(height));
    tip(rect, `${v.toFixed(2)} ${unit}`);
    svg.append(rect);
  });
  return svg;
}

/**
 * Several series as lines on one scale: `series` = [{ name, cls, values }]. A legend names
 * each series with its latest value, so the chart reads without hovering.
 */
export function lineChart(series, slots, unit, label) {
  const svg = svgBox(slots, label, 'chart line-chart');
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  for (const s of series) {
    if (!s.values.length) continue;
    const points = s.values.map((v, i) => {
      const x = (slots - s.values.length + i) * 10 + 5;
      const y = 58 - (v / max) * 56;
      return `${x},${y.toFixed(1)}`;
    });
    const line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('points', points.join(' '));
    line.setAttribute('class', s.cls);
    line.setAttribute('vector-effect', 'non-scaling-stroke');
    tip(line, s.name);
    svg.append(line);
  }
  const legend = h('ul', { class: 'legend' }, series.map((s) => {
    const last = s.values.length ? s.values[s.values.length - 1] : null;
    return h('li', { class: s.cls }, `${s.name}: ${last === null ? '–' : `${last.toFixed(last < 10 ? 2 : 0)} ${unit}`}`);
  }));
  return h('figure', { class: 'chart-figure' }, svg, legend);
}
