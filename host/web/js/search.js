// Message search in the sidebar: a search box, results with their snippets (built as text
// nodes: a snippet's matches are <mark> elements, never markup from the message), "more
// results" paging, and a click that opens the room at the message.

import { h, replace, formatTime } from './dom.js';

/** Render one snippet ({ parts: [{ text, hit }], cut_start, cut_end }) as nodes. */
export function snippetNodes(snippet) {
  const nodes = snippet.parts.map((part) => (part.hit ? h('mark', {}, part.text) : part.text));
  if (snippet.cut_start) nodes.unshift('…');
  if (snippet.cut_end) nodes.push('…');
  return nodes;
}

export class SearchView {
  /**
   * @param {object} els  { form, input, panel, list, more, status, close, rooms }
   * @param {object} deps { api, roomTitle(result) -> string, open(roomId, seq) }
   */
  constructor(els, deps) {
    this.els = els;
    this.deps = deps;
    this.query = '';
    this.cursor = null;
    els.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.run(els.input.value.trim());
    });
    els.input.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') this.close();
    });
    els.more.addEventListener('click', () => this.page());
    els.close.addEventListener('click', () => this.close());
  }

  async run(query) {
    if (!query) {
      this.close();
      return;
    }
    this.query = query;
    this.cursor = null;
    replace(this.els.list);
    this.els.panel.hidden = false;
    this.els.rooms.hidden = true;
    await this.page();
  }

  async page() {
    const { api } = this.deps;
    const params = new URLSearchParams({ q: this.query, limit: '20' });
    if (this.cursor !== null) params.set('cursor', String(this.cursor));
    this.els.status.textContent = 'Searching…';
    this.els.more.hidden = true;
    let page;
    try {
      page = await api.get(`/api/v1/search?${params}`);
    } catch (err) {
      // A bad query's message says what to change (e.g. the date format).
      this.els.status.textContent = err.message;
      return;
    }
    for (const result of page.results) this.els.list.append(this.item(result));
    this.cursor = page.next_cursor ?? null;
    this.els.more.hidden = this.cursor === null;
    const shown = this.els.list.children.length;
    this.els.status.textContent =
      (shown === 0 ? `No messages match “${this.query}”.` : `${shown}${this.cursor === null ? '' : '+'} found`)
      + (page.recent_only ? ' Only recent messages were searched; add a word of three or more letters to search all.' : '');
  }

  item(result) {
    const { message } = result;
    return h('li', {},
      h('button', {
        type: 'button',
        class: 'search-hit',
        dataset: { room: message.room_id, seq: message.seq },
        onclick: () => this.deps.open(message.room_id, message.seq),
      },
      h('span', { class: 'search-where' },
        h('strong', {}, this.deps.roomTitle(result)), ' · ',
        h('time', { datetime: new Date(message.created_at).toISOString() }, formatTime(message.created_at))),
      h('span', { class: 'search-snippet' }, snippetNodes(result.snippet))));
  }

  close() {
    this.els.panel.hidden = true;
    this.els.rooms.hidden = false;
    this.els.input.value = '';
    this.query = '';
    replace(this.els.list);
    this.els.status.textContent = '';
  }
}
