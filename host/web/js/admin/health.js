// Server health: connections, messages per second, store size, uptime. Messages/s is the
// difference of the `events_stored{kind="message"}` counter between two `/metrics` samples,
// divided by the time between them; the last few rates are drawn as a small chart.

import { h, replace } from '../dom.js';
import { barChart, report } from './util.js';

const POLL_MS = 5_000;
const HISTORY = 24;

/** Sum of a counter family's samples whose labels include `labels`. */
export function counter(text, name, labels = '') {
  let total = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (!(rest.startsWith(' ') || rest.startsWith('{'))) continue;
    if (labels && !rest.includes(labels)) continue;
    const value = Number(line.trim().split(/\s+/).pop());
    if (Number.isFinite(value)) {
      total += value;
      found = true;
    }
  }
  return found ? total : null;
}

function messagesStored(text) {
  return counter(text, 'switchboard_events_stored_total', 'kind="message"') ?? 0;
}

function bytes(n) {
  if (n === null || n === undefined) return 'unknown';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function duration(secs) {
  const d = Math.floor(secs / 86400);
  const hh = Math.floor((secs % 86400) / 3600);
  const m = Math.floor((secs % 3600) / 60);
  return d ? `${d} d ${hh} h` : hh ? `${hh} h ${m} min` : `${m} min ${secs % 60} s`;
}

function stat(label, value, id) {
  return h('div', { class: 'stat', id }, h('span', { class: 'stat-label' }, label), h('span', { class: 'stat-value' }, value));
}

export default {
  id: 'health',
  title: 'Health',
  mount(el, ctx) {
    const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
    el.append(body);
    let previous = null;
    const rates = [];
    let stopped = false;

    const tick = async () => {
      let health;
      let metrics;
      try {
        [health, metrics] = await Promise.all([ctx.api.get('/api/v1/admin/health'), ctx.api.metricsText()]);
      } catch (err) {
        report(ctx, err);
        return;
      }
      if (stopped) return;
      const sample = { at: performance.now(), messages: messagesStored(metrics) };
      let rate = null;
      if (previous) {
        const secs = (sample.at - previous.at) / 1000;
        rate = secs > 0 ? Math.max(0, sample.messages - previous.messages) / secs : 0;
        rates.push(rate);
        if (rates.length > HISTORY) rates.shift();
      }
      previous = sample;
      replace(body,
        h('div', { class: 'stats' },
          stat('Status', health.store.ok ? 'ok' : 'store unreachable', 'health-status'),
          stat('Connections', String(health.connections), 'health-connections'),
          stat('Messages/s', rate === null ? 'measuring…' : rate.toFixed(2), 'health-rate'),
          stat('Messages stored (since start)', String(health.messages_stored), 'health-messages'),
          stat('Store', `${health.store.backend}, ${bytes(health.store.size_bytes)}`, 'health-store'),
          stat('Uptime', duration(health.uptime_secs), 'health-uptime'),
          stat('Version', health.version, 'health-version')),
        h('h2', {}, 'Messages per second'),
        rates.length ? barChart(rates, HISTORY, 'messages/s', `Messages per second over the last ${rates.length} samples`) : h('p', { class: 'muted' }, 'The chart starts after the second sample.'),
        h('p', { class: 'muted' }, `Sampled every ${POLL_MS / 1000} s from /metrics.`));
    };
    tick();
    const timer = setInterval(tick, POLL_MS);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  },
};
