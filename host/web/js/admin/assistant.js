// Assistant: the language model behind plugins' `llm` capability. Where it is (from `[llm]`
// in switchboard.toml; the API key is never shown), the governance operators may change
// while the server runs (budgets, what DLP does to what leaves, the tools' policy, what the
// audit keeps; each change is on the audit record) and today's token use.

import { h, replace } from '../dom.js';
import { report, table } from './util.js';

function row(label, value) {
  return { cells: [label, value instanceof Node ? value : String(value)] };
}

function choice(name, value, options) {
  return h('select', { name, id: `llm-${name.replace('.', '-')}` },
    options.map((o) => h('option', { value: o, selected: o === value }, o)));
}

function number(name, value) {
  return h('input', { type: 'number', min: '0', name, id: `llm-${name}`, value: String(value) });
}

/** The governance form: every field of `gov`, read back whole on save. */
function governanceForm(ctx, gov, changed, reload) {
  const dlp = Object.keys(gov.dlp);
  const tools = Object.keys(gov.tools);
  const form = h('form', { id: 'llm-governance' },
    table('Governance', ['Setting', 'Value'], [
      row('Tokens per person per day (0: no limit)', number('user_daily_tokens', gov.user_daily_tokens)),
      row('Tokens per room per day (0: no limit)', number('room_daily_tokens', gov.room_daily_tokens)),
      row('Tool rounds per call at most', number('max_tool_rounds', gov.max_tool_rounds)),
      row('Prompt in the audit record', choice('prompt_log', gov.prompt_log, ['none', 'redacted', 'full'])),
      row('Restore redacted values in private answers',
        h('input', { type: 'checkbox', name: 'restore_redacted', id: 'llm-restore_redacted', checked: gov.restore_redacted })),
      ...dlp.filter((k) => !k.startsWith('pattern.')).map((k) => row(`DLP: ${k}`, choice(`dlp.${k}`, gov.dlp[k], ['redact', 'block', 'off']))),
      ...tools.map((k) => row(`Tool: ${k}`, choice(`tools.${k}`, gov.tools[k], ['allow', 'ask', 'deny']))),
    ]),
    h('p', { class: 'actions' },
      h('button', { type: 'submit', id: 'llm-save' }, 'Save'),
      changed ? h('button', {
        type: 'button',
        id: 'llm-reset',
        onclick: async () => {
          try {
            await ctx.api.delete('/api/v1/admin/llm/governance');
            ctx.toast('Back to the configuration file\'s values');
            reload();
          } catch (err) { report(ctx, err); }
        },
      }, 'Back to switchboard.toml') : null));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const next = {
      user_daily_tokens: Number(data.get('user_daily_tokens')),
      room_daily_tokens: Number(data.get('room_daily_tokens')),
      max_tool_rounds: Number(data.get('max_tool_rounds')),
      prompt_log: String(data.get('prompt_log')),
      restore_redacted: data.get('restore_redacted') === 'on',
      // Patterns keep their expressions; their actions are edited in the file.
      dlp: Object.fromEntries(dlp.map((k) => [k, k.startsWith('pattern.') ? gov.dlp[k] : String(data.get(`dlp.${k}`))])),
      tools: Object.fromEntries(tools.map((k) => [k, String(data.get(`tools.${k}`))])),
    };
    try {
      await ctx.api.put('/api/v1/admin/llm/governance', next);
      ctx.toast('Saved: it applies from the next call, on every node');
      reload();
    } catch (err) { report(ctx, err); }
  });
  return form;
}

export default {
  id: 'assistant',
  title: 'Assistant',
  mount(el, ctx) {
    const settings = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
    const usage = h('div', {});
    el.append(h('h2', {}, 'Language model'), settings, h('h2', {}, 'Token use today (UTC)'), usage);
    const load = () => Promise.all([ctx.api.get('/api/v1/admin/llm'), ctx.api.get('/api/v1/users'), ctx.api.get('/api/v1/admin/rooms')])
      .then(([llm, users, rooms]) => {
        const userNames = new Map(users.map((u) => [u.id, u.name]));
        const roomNames = new Map(rooms.map((r) => [r.id, r.name || `#${r.id}`]));
        replace(settings,
          llm.configured
            ? h('p', { id: 'llm-status' }, `Model ${llm.model} at ${llm.base_url}`)
            : h('p', { id: 'llm-status', class: 'muted' }, 'No model configured: set [llm] base_url and model in switchboard.toml.'),
          table('Connection', ['Setting', 'Value'], [
            row('API key', llm.api_key_set ? 'set' : 'not set'),
            row('Streaming', llm.stream ? 'on' : 'off'),
            row('Time limit per call', `${llm.timeout_secs} s (idle ${llm.idle_timeout_secs} s)`),
            row('Answer tokens at most', llm.max_output_tokens),
            row('Prompt bytes at most', llm.max_prompt_bytes),
            row('Answer bytes at most', llm.max_reply_bytes),
          ], { id: 'llm-settings' }),
          governanceForm(ctx, llm.governance, llm.governance_changed, load));
        replace(usage, llm.usage_today.length
          ? table('Tokens used today', ['Who', 'Tokens'], llm.usage_today.map((u) => row(
            u.scope === 'user' ? (userNames.get(u.id) || `user #${u.id}`) : `room ${roomNames.get(u.id) || `#${u.id}`}`,
            u.tokens)), { id: 'llm-usage' })
          : h('p', { class: 'muted' }, 'No calls today.'));
      })
      .catch((err) => report(ctx, err));
    load();
  },
};
