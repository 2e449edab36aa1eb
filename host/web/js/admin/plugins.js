// Plugins: a placeholder until the server exposes its plugin admin API.
//
// When it does, this module fetches the plugin list and renders status, priority, failure
// policy, capabilities, settings and per-plugin charts; admin.js already routes to it.

import { h } from '../dom.js';

export default {
  id: 'plugins',
  title: 'Plugins',
  mount(el) {
    el.append(h('div', { class: 'card stack placeholder' },
      h('p', {}, 'Plugins will appear here: each plugin\'s status, priority, failure policy and granted capabilities, its settings, enable / disable / reload, and charts of its calls, rejects, failures and latency.'),
      h('p', { class: 'muted' }, 'The server does not expose a plugin admin API yet. Until it does, plugins are configured in switchboard.toml; their decisions already show up under Audit.')));
  },
};
