// Plugins: every installed plugin with its state, priority, failure policy, hooks and granted
// capabilities; enable / disable / reload; a settings form; and charts of its calls, rejects,
// failures (per second) and mean latency, from the counters in `GET /api/v1/admin/plugins`
// sampled every few seconds.
//
// Cards are built once per plugin and only their live parts (state, counters, charts) are
// redrawn on each poll, so a half-typed setting is never wiped by a refresh. After an action
// the whole list is rebuilt from the server's answer.

import { h, replace } from '../dom.js';
import { lineChart, report, table } from './util.js';

const POLL_MS = 3_000;
const HISTORY = 20;
const API = '/api/v1/admin/plugins';

/** Per plugin: the previous counter sample and the rate history drawn in its charts. */
function tracker() {
  return { prev: null, calls: [], rejects: [], failures: [], latency: [] };
}

function push(list, v) {
  list.push(v);
  if (list.length > HISTORY) list.shift();
}

/** Fold one sample into the tracker: rates since the previous sample, mean latency. */
function sample(t, counters, at) {
  const now = { at, ...counters };
  if (t.prev) {
    const secs = (at - t.prev.at) / 1000;
    // A counter can only go down when a reload folds the old version's totals in a moment
    // later; never draw a negative rate.
    const rate = (k) => (secs > 0 ? Math.max(0, now[k] - t.prev[k]) / secs : 0);
    push(t.calls, rate('calls'));
    push(t.rejects, rate('rejects'));
    push(t.failures, rate('failures'));
    const calls = now.calls - t.prev.calls;
    const micros = now.call_micros - t.prev.call_micros;
    push(t.latency, calls > 0 ? Math.max(0, micros) / calls : 0);
  }
  t.prev = now;
}

function state(p) {
  if (!p.loaded) return p.enabled ? ['not loaded', 'off'] : ['disabled', 'off'];
  if (p.status?.circuit_open) return ['circuit open', 'warn'];
  if (p.status?.open_circuits?.length) return ['enabled, partly cut off', 'warn'];
  return ['enabled', 'ok'];
}

/** Open circuits: the plugin's own, or one room's or sender's (the plugin serves the rest). */
function circuitFacts(status) {
  const open = status?.open_circuits ?? [];
  const text = open.length
    ? open.map((c) => `${c.scope}${c.retry_in_secs == null ? ' (until re-enabled)' : ` (trial in ${c.retry_in_secs} s)`}`).join(', ')
    : 'none';
  return [h('dt', {}, 'Open circuits'), h('dd', { class: 'plugin-circuits' }, text)];
}

function facts(p) {
  const hooks = p.status?.hooks ?? p.declared_hooks ?? [];
  const c = p.status?.counters;
  return h('dl', { class: 'plugin-facts' },
    h('dt', {}, 'Priority'), h('dd', { class: 'plugin-priority' }, String(p.priority)),
    h('dt', {}, 'Failure policy'), h('dd', { class: 'plugin-policy' }, p.failure_policy),
    h('dt', {}, 'Hooks'), h('dd', {}, hooks.length ? hooks.join(', ') : '—'),
    h('dt', {}, 'Capabilities'), h('dd', { class: 'plugin-capabilities' }, p.capabilities.length ? p.capabilities.join(', ') : 'none'),
    grantFacts(p.grants),
    p.status ? [h('dt', {}, 'Interface'), h('dd', {}, p.status.interface)] : null,
    h('dt', {}, 'Limits'), h('dd', { class: 'plugin-limits' },
      `${p.limits.timeout_ms} ms CPU, ${p.limits.wall_timeout_ms} ms wall (${p.limits.observer_timeout_ms} ms observing), ` +
      `${p.limits.memory_mib} MiB, ${p.limits.max_concurrent_calls} calls at once, kv ${Math.round(p.limits.kv_max_bytes / 1024)} KiB, ` +
      `log ${p.limits.log_lines_per_second} lines/s`),
    p.status ? circuitFacts(p.status) : null,
    h('dt', {}, 'Totals'), h('dd', { class: 'plugin-totals' }, c
      ? `${c.calls} calls, ${c.rejects} rejects, ${c.modifications} modifications, ${c.failures} failures ` +
        `(${c.timeouts} timeouts, ${c.overloaded} overloaded), ${c.observer_dropped} events dropped, ${c.log_dropped} log lines dropped`
      : 'not loaded'),
    lastFailure(p.status?.last_failure));
}

/** The newest failed call: when, where, what kind, and what the plugin said before it. */
function lastFailure(failure) {
  if (!failure) return null;
  return [h('dt', {}, 'Last failure'), h('dd', { class: 'plugin-last-failure' },
    h('details', {},
      h('summary', {}, `${failure.kind} in ${failure.hook}, ${new Date(failure.at).toLocaleString()}`),
      h('pre', {}, failure.detail)))];
}

/** What the capabilities reach: HTTP origins, room scope, the bot, its commands. */
function grantFacts(g) {
  if (!g) return null;
  const rows = [];
  if (g.http_allow.length) {
    const extra = [g.http_allow_private ? 'private ranges allowed' : null, g.http_requests_per_minute ? `${g.http_requests_per_minute}/min` : null].filter(Boolean);
    rows.push(h('dt', {}, 'HTTP to'), h('dd', { class: 'plugin-http' }, g.http_allow.join(', ') + (extra.length ? ` (${extra.join(', ')})` : '')));
  }
  if (g.rooms_scope) rows.push(h('dt', {}, 'Room lookups'), h('dd', {}, g.rooms_scope === 'all' ? 'all rooms' : "the bot's rooms"));
  if (g.bot) rows.push(h('dt', {}, 'Bot'), h('dd', { class: 'plugin-bot' }, g.bot));
  if (g.commands.length) rows.push(h('dt', {}, 'Commands'), h('dd', { class: 'plugin-commands' }, g.commands.map((c) => `/${c}`).join(' ')));
  return rows;
}

function charts(t) {
  if (t.calls.length === 0) return h('p', { class: 'muted' }, 'Charts start after the second sample.');
  return h('div', { class: 'plugin-charts' },
    lineChart([
      { name: 'calls', cls: 's-calls', values: t.calls },
      { name: 'rejects', cls: 's-rejects', values: t.rejects },
      { name: 'failures', cls: 's-failures', values: t.failures },
    ], HISTORY, '/s', 'Calls, rejects and failures per second'),
    lineChart([{ name: 'mean latency', cls: 's-latency', values: t.latency }], HISTORY, 'µs', 'Mean call latency in microseconds'));
}

/** Settings (key/value rows; empty the key's value and tick remove to delete), priority, policy. */
function settingsForm(ctx, p, reload) {
  const rows = h('div', { class: 'settings-grid' });
  const addRow = (key = '', value = '', existing = false) => {
    const keyInput = h('input', { class: 'setting-key', value: key, 'aria-label': 'Setting name', readonly: existing, required: true, autocomplete: 'off' });
    // List settings arrive one item per line; a textarea keeps the lines (an input would
    // silently join them).
    const valueInput = value.includes('\n')
      ? h('textarea', { class: 'setting-value', rows: Math.min(8, value.split('\n').length), 'aria-label': `Value of ${key}` }, value)
      : h('input', { class: 'setting-value', value, 'aria-label': `Value of ${key || 'the new setting'}`, autocomplete: 'off' });
    const remove = h('label', { class: 'check' }, h('input', { type: 'checkbox', class: 'setting-remove', 'aria-label': `Remove ${key || 'this setting'}` }), ' remove');
    rows.append(keyInput, valueInput, remove);
  };
  for (const [k, v] of Object.entries(p.settings)) addRow(k, v, true);
  const priority = h('input', { type: 'number', name: 'priority', value: p.priority, step: 1, 'aria-label': 'Priority' });
  const policy = h('select', { name: 'failure_policy', 'aria-label': 'Failure policy' },
    ['fail-closed', 'fail-open'].map((v) => h('option', { value: v, selected: v === p.failure_policy }, v)));
  const error = h('p', { class: 'form-error', role: 'alert' });
  const form = h('form', { class: 'stack plugin-settings', id: `plugin-settings-${p.name}` },
    h('h3', {}, 'Settings'),
    rows,
    h('div', { class: 'row' },
      h('button', { type: 'button', onclick: () => addRow() }, 'Add setting'),
      h('label', {}, 'Priority ', priority),
      h('label', {}, 'Failure policy ', policy)),
    error,
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, 'Save and reload')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    const settings = {};
    const keys = [...rows.querySelectorAll('.setting-key')];
    const values = [...rows.querySelectorAll('.setting-value')];
    const removes = [...rows.querySelectorAll('.setting-remove')];
    keys.forEach((k, i) => {
      const key = k.value.trim();
      if (!key) return;
      if (removes[i].checked) {
        if (key in p.settings) settings[key] = null;
      } else if (p.settings[key] !== values[i].value) {
        settings[key] = values[i].value;
      }
    });
    const change = {};
    if (Object.keys(settings).length) change.settings = settings;
    if (Number(priority.value) !== p.priority) change.priority = Number(priority.value);
    if (policy.value !== p.failure_policy) change.failure_policy = policy.value;
    if (!Object.keys(change).length) {
      error.textContent = 'Nothing changed.';
      return;
    }
    try {
      const r = await ctx.api.patch(`${API}/${encodeURIComponent(p.name)}`, change);
      ctx.toast(`${p.name} changed and reloaded (${r.load_ms} ms).`);
      await reload();
    } catch (err) {
      if (err.code === 'admin_only') ctx.forbidden();
      error.textContent = err.message;
    }
  });
  return form;
}

async function act(ctx, p, action, reload) {
  if (action === 'disable' && !window.confirm(`Disable ${p.name}? Messages are no longer checked by it until it is enabled again.`)) return;
  try {
    const r = await ctx.api.post(`${API}/${encodeURIComponent(p.name)}/${action}`);
    const past = { enable: 'enabled', disable: 'disabled', reload: 'reloaded' }[action];
    ctx.toast(`${p.name} ${past}${r.previous_version ? ` (was ${r.previous_version})` : ''}.`);
  } catch (err) {
    report(ctx, err);
  }
  await reload();
}

/** A card for one plugin; `live` is redrawn on every poll. */
function card(ctx, p, reload) {
  const [label, cls] = state(p);
  const live = h('div', { class: 'plugin-live' });
  const el = h('article', { class: 'card stack plugin', id: `plugin-${p.name}`, dataset: { plugin: p.name }, 'aria-labelledby': `plugin-title-${p.name}` },
    h('div', { class: 'plugin-head' },
      h('h2', { id: `plugin-title-${p.name}` }, p.name),
      h('span', { class: 'muted' }, `v${p.version}`),
      h('span', { class: `pill ${cls} plugin-state` }, label),
      h('div', { class: 'row' },
        h('button', { type: 'button', class: 'plugin-toggle', 'aria-label': `${p.enabled ? 'Disable' : 'Enable'} ${p.name}`, onclick: () => act(ctx, p, p.enabled ? 'disable' : 'enable', reload) }, p.enabled ? 'Disable' : 'Enable'),
        h('button', { type: 'button', class: 'plugin-reload', 'aria-label': `Reload ${p.name}`, disabled: !p.enabled, onclick: () => act(ctx, p, 'reload', reload) }, 'Reload'))),
    live,
    settingsForm(ctx, p, reload));
  return { el, live };
}

/** Upload a plugin: its plugin.toml (whose `component` names the file), the .wasm, and
 * optionally the .sig; with "replace", an installed plugin of that name is upgraded. */
function installForm(ctx, reload) {
  const error = h('p', { class: 'form-error', role: 'alert' });
  const form = h('form', { id: 'plugin-install', class: 'card stack narrow', 'aria-labelledby': 'plugin-install-title' },
    h('h2', { id: 'plugin-install-title' }, 'Install a plugin'),
    h('label', {}, 'plugin.toml', h('input', { type: 'file', name: 'manifest', accept: '.toml', required: true })),
    h('label', {}, 'Component (.wasm)', h('input', { type: 'file', name: 'component', accept: '.wasm', required: true })),
    h('label', {}, 'Signature (.sig, optional)', h('input', { type: 'file', name: 'signature', accept: '.sig' })),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'replace' }), ' Upgrade if installed'),
    error,
    h('button', { type: 'submit', class: 'primary' }, 'Install'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    const data = new FormData(form);
    const upload = new FormData();
    upload.append('manifest', await data.get('manifest').text());
    upload.append('component', data.get('component'));
    const signature = data.get('signature');
    if (signature && signature.size) upload.append('signature', signature);
    try {
      const r = await ctx.api.upload(`${API}${data.get('replace') === 'on' ? '?replace=true' : ''}`, upload);
      ctx.toast(`Installed ${r.plugin.name} ${r.plugin.version}${r.previous_version ? ` (was ${r.previous_version})` : ''}.`);
      form.reset();
      await reload();
    } catch (err) {
      if (err.code === 'admin_only') ctx.forbidden();
      error.textContent = err.message;
    }
  });
  return form;
}

export default {
  id: 'plugins',
  title: 'Plugins',
  mount(el, ctx) {
    const body = h('div', { class: 'plugins' }, h('p', { class: 'muted' }, 'Loading…'));
    el.append(body, installForm(ctx, () => refresh()));
    const trackers = new Map();
    let cards = new Map();
    let shape = '';
    let stopped = false;

    const render = (list) => {
      // Rebuild the cards when the set of plugins or their configuration changed (after an
      // action, or a change made elsewhere); otherwise only refresh their live parts.
      const next = JSON.stringify(list.plugins.map((p) => [p.name, p.version, p.enabled, p.loaded, p.priority, p.failure_policy, p.settings]));
      if (next !== shape) {
        shape = next;
        cards = new Map();
        const nodes = list.plugins.map((p) => {
          const c = card(ctx, p, refresh);
          cards.set(p.name, c);
          return c.el;
        });
        const problems = list.problems.length
          ? table('Plugin directories with problems', ['Directory', 'Problem'], list.problems.map((x) => ({ cells: [x.directory, x.error] })))
          : null;
        replace(body, nodes.length ? nodes : h('p', { class: 'muted' }, 'No plugins are installed. Install one with `switchboard plugin install DIR`.'), problems);
      }
      for (const p of list.plugins) {
        const t = trackers.get(p.name) || tracker();
        trackers.set(p.name, t);
        if (p.status) sample(t, p.status.counters, performance.now());
        else t.prev = null;
        const c = cards.get(p.name);
        if (c) replace(c.live, facts(p), charts(t));
      }
    };

    async function refresh() {
      let list;
      try {
        list = await ctx.api.get(API);
      } catch (err) {
        if (err.code === 'plugins_not_configured') {
          replace(body, h('div', { class: 'card stack' },
            h('p', {}, 'Plugins are not configured on this server.'),
            h('p', { class: 'muted' }, 'Set [plugins] dir in switchboard.toml (a directory the server may write) and restart; then plugins can be installed and managed here.')));
          return;
        }
        report(ctx, err);
        return;
      }
      if (!stopped) render(list);
    }

    refresh();
    const timer = setInterval(refresh, POLL_MS);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  },
};
