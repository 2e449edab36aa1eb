// The admin console's entry point: login, the admins-only gate, and section navigation.
//
// Each section is a module exporting `{ id, title, mount(el, ctx) }`; `mount` may return a
// cleanup function (to stop polling). To add a section (e.g. plugins), write its module and
// list it in `SECTIONS` — nothing else changes.

import { Api } from './api.js';
import { $, h, replace } from './dom.js';
import users from './admin/users.js';
import rooms from './admin/rooms.js';
import webhooks from './admin/webhooks.js';
import audit from './admin/audit.js';
import health from './admin/health.js';
import plugins from './admin/plugins.js';
import compliance from './admin/compliance.js';
import files from './admin/files.js';
import assistant from './admin/assistant.js';
import reference from './admin/api-reference.js';

const ADMIN_SECTIONS = [users, rooms, webhooks, audit, health, plugins, files, assistant];
/** The sections this user may open: admins run the server, the compliance role reviews it. */
let SECTIONS = ADMIN_SECTIONS;

const api = new Api(() => showLogin('Your session ended. Please log in again.'));
let cleanup = null;

function show(view) {
  for (const id of ['login-view', 'denied-view', 'console-view']) $(`#${id}`).hidden = id !== view;
}

function showLogin(message = '') {
  unmount();
  show('login-view');
  $('#login-error').textContent = message;
  $('#username').focus();
}

$('#login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const data = new FormData(ev.target);
  $('#login-error').textContent = '';
  try {
    await api.login(String(data.get('username')).trim(), String(data.get('password')));
    ev.target.reset();
    start();
  } catch (err) {
    $('#login-error').textContent = err.message;
  }
});

for (const id of ['#logout', '#denied-logout']) {
  $(id).addEventListener('click', async () => {
    await api.logout();
    showLogin('You are logged out.');
  });
}

function denied(message) {
  unmount();
  show('denied-view');
  $('#denied-text').textContent = message || 'This console is for server administrators.';
}

async function start() {
  // The page is public; the data is not. Ask the server rather than trusting the cached
  // user object: an admin endpoint answers `403 admin_only` for everyone else.
  let admin = true;
  try {
    await api.get('/api/v1/admin/health');
  } catch (err) {
    if (err.code !== 'admin_only') {
      if (api.loggedIn) toast(err.message);
      return;
    }
    admin = false;
  }
  let reviewer = false;
  try {
    const me = await api.get('/api/v1/me');
    reviewer = Boolean(me.is_compliance);
  } catch (err) {
    if (api.loggedIn) toast(err.message);
    return;
  }
  // Reviewers who are not admins also review held files.
  SECTIONS = [...(admin ? ADMIN_SECTIONS : []), ...(reviewer ? [compliance] : []),
    ...(reviewer && !admin ? [files] : [])];
  if (!SECTIONS.length) {
    denied(`Admins and compliance reviewers only: ${api.user?.name} is neither.`);
    return;
  }
  // The API reference only describes the API (the description itself needs no more than a
  // token), so everyone who may open the console gets it, last.
  SECTIONS.push(reference);
  show('console-view');
  $('#me').textContent = api.user.name;
  replace($('#sections-nav'), SECTIONS.map((s) =>
    h('a', { href: `#${s.id}`, id: `tab-${s.id}`, dataset: { section: s.id } }, s.title)));
  route();
}

function unmount() {
  if (cleanup) cleanup();
  cleanup = null;
}

function route() {
  if ($('#console-view').hidden) return;
  const wanted = location.hash.slice(1);
  const section = SECTIONS.find((s) => s.id === wanted) || SECTIONS[0];
  unmount();
  for (const a of $('#sections-nav').children) {
    if (a.dataset.section === section.id) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const el = $('#section');
  replace(el, h('h1', {}, section.title));
  el.dataset.section = section.id;
  cleanup = section.mount(el, { api, toast, forbidden: denied }) || null;
}

window.addEventListener('hashchange', () => {
  route();
  $('#section').focus();
});

function toast(message) {
  const el = $('#toast');
  el.textContent = message;
  el.hidden = false;
  clearTimeout(el.timer);
  el.timer = setTimeout(() => { el.hidden = true; }, 5_000);
}

if (api.loggedIn) start();
else showLogin();
