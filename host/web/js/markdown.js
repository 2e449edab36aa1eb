// Rich text: the Markdown subset the client renders in message bodies (docs/web-client.md,
// "Rich text"). The server stores a body exactly as written; this only decides how it looks.
//
//   **bold** __bold__  *italic* _italic_ (`_` not inside words)  `code`
//   ``` fenced code blocks (an optional language after the opening fence) ```
//   [text](url) and bare http(s):// URLs as links; `- ` / `* ` and `1. ` lists; `> ` quotes
//   line breaks kept as written
//
// Nothing else: no HTML (markup is text), no images, headings or tables. Everything is built
// as DOM nodes (createElement, text nodes), never parsed markup. A link is made only for an
// `http:`, `https:` or `mailto:` URL that `new URL()` accepts; anything else stays text.
// Inside code nothing is interpreted. Unmatched markers stay as written.
//
// The parser is small and bounded: blocks are read line by line (a fence's closing line is
// found through a precomputed table, quotes and lists nest at most `DEPTH_MAX` deep), and
// inline text in one left-to-right pass (code spans and links through precomputed "next
// occurrence" tables, `*` / `_` runs matched through per-kind stacks), so any input costs
// linear time.

/** Deepest nesting of quotes, lists, links and emphasis; deeper markers stay text. */
export const DEPTH_MAX = 8;

const LINK_SCHEMES = new Set(['http:', 'https:', 'mailto:']);
const LINK_REL = 'noopener noreferrer nofollow';

const FENCE_OPEN = /^ {0,3}(`{3,})([^`]*)$/;
const FENCE_CLOSE = /^ {0,3}(`{3,})[ \t]*$/;
const QUOTE = /^ {0,3}> ?/;
const BULLET = /^ {0,3}[-*][ \t]+(?=\S)/;
const ORDERED = /^ {0,3}(\d{1,9})\.[ \t]+(?=\S)/;
const BLANK = /^[ \t]*$/;

const WHITESPACE = /\s/;
const PUNCTUATION = /[\p{P}\p{S}]/u;
const WORD = /[\p{L}\p{N}]/u;

/**
 * The link target for `raw`, or null: only an absolute `http:`, `https:` (with a host) or
 * `mailto:` URL, without whitespace or control characters (which `new URL()` would drop).
 */
export function safeHref(raw) {
  if (typeof raw !== 'string' || !raw || /[\s\u0000-\u001f\u007f]/.test(raw)) return null;
  let url;
  try {
    url = new URL(raw);
  } catch {
    return null;
  }
  if (!LINK_SCHEMES.has(url.protocol)) return null;
  if (url.protocol !== 'mailto:' && !url.hostname) return null;
  return url.href;
}

/**
 * `text` as DOM nodes (an array). `options.marks`: `[{ start, end, className }]`, ranges of
 * `text` (e.g. mentions) wrapped in `<span class="…">` where they fall whole inside plain
 * text — never inside code or a URL.
 */
export function renderMarkdown(text, options = {}) {
  const source = String(text ?? '');
  const marks = new Map();
  for (const mark of options.marks || []) {
    if (mark && mark.end > mark.start) marks.set(mark.start, mark);
  }
  const lines = [];
  let base = 0;
  for (const raw of source.split('\n')) {
    const cr = raw.endsWith('\r') ? 1 : 0;
    lines.push({ text: cr ? raw.slice(0, -1) : raw, base, cr });
    base += raw.length + 1;
  }
  const out = [];
  blocks(lines, 0, { marks }, out);
  return out;
}

// ---- DOM ----

function el(tag, attrs, children) {
  const node = document.createElement(tag);
  if (attrs) for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (children) for (const child of children) append(node, child);
  return node;
}

function append(parent, child) {
  parent.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
}

/** Push `s` onto `out`, joining it with a string already at the end. */
function pushString(out, s) {
  if (!s) return;
  if (out.length && typeof out[out.length - 1] === 'string') out[out.length - 1] += s;
  else out.push(s);
}

// ---- blocks ----

/**
 * Render `lines` ({ text, base, cr }: a line without its break, where it starts in the
 * source, whether a `\r` was dropped) at nesting `depth`, pushing nodes onto `out`.
 * Paragraphs stay inline text, their line breaks and blank lines as written (the body is
 * `white-space: pre-wrap`); fences, lists and quotes are block elements.
 */
function blocks(lines, depth, ctx, out) {
  const n = lines.length;
  // For fences: the longest bare fence (``` alone on its line) at or after each line.
  const bare = new Int32Array(n);
  const bareAfter = new Int32Array(n + 1);
  for (let i = n - 1; i >= 0; i--) {
    const m = FENCE_CLOSE.exec(lines[i].text);
    bare[i] = m ? m[1].length : 0;
    bareAfter[i] = Math.max(bare[i], bareAfter[i + 1]);
  }
  const nested = depth + 1 <= DEPTH_MAX;

  let para = [];
  let blanks = [];
  // What was pushed last: 'start', 'text' (a paragraph) or 'block'.
  let last = 'start';
  const flush = () => {
    if (!para.length) return;
    if (last === 'text') pushString(out, `\n${blanks.map((b) => `${b}\n`).join('')}`);
    else pushString(out, blanks.map((b) => `${b}\n`).join(''));
    inlineLines(para, depth, ctx, out);
    para = [];
    blanks = [];
    last = 'text';
  };
  const block = (node) => {
    flush();
    out.push(node);
    blanks = [];
    last = 'block';
  };

  let i = 0;
  while (i < n) {
    const line = lines[i];
    const { text } = line;
    if (BLANK.test(text)) {
      flush();
      blanks.push(text);
      i++;
      continue;
    }

    const fence = FENCE_OPEN.exec(text);
    if (fence && bareAfter[i + 1] >= fence[1].length) {
      let end = i + 1;
      while (bare[end] < fence[1].length) end++;
      const code = lines.slice(i + 1, end).map((l) => l.text).join('\n');
      const lang = fence[2].trim().split(/\s+/)[0];
      const attrs = lang ? { 'data-lang': lang.slice(0, 40) } : null;
      block(el('pre', attrs, [el('code', null, code ? [code] : [])]));
      i = end + 1;
      continue;
    }

    if (nested && QUOTE.test(text)) {
      const inner = [];
      while (i < n && QUOTE.test(lines[i].text)) {
        const l = lines[i];
        const cut = QUOTE.exec(l.text)[0].length;
        inner.push({ text: l.text.slice(cut), base: l.base + cut, cr: l.cr });
        i++;
      }
      const quote = el('blockquote');
      const children = [];
      blocks(inner, depth + 1, ctx, children);
      for (const child of children) append(quote, child);
      block(quote);
      continue;
    }

    // A numbered line interrupts a paragraph only as "1." ("In\n2024. we…" stays text).
    const number = ORDERED.exec(text);
    if (nested && (BULLET.test(text) || (number && (!para.length || number[1] === '1')))) {
      const ordered = Boolean(number);
      const marker = ordered ? ORDERED : BULLET;
      const list = el(ordered ? 'ol' : 'ul');
      if (ordered) {
        const start = Number(number[1]);
        if (start !== 1) list.setAttribute('start', String(start));
      }
      // Consecutive items of one kind make one list.
      while (i < n && marker.test(lines[i].text)) {
        const l = lines[i];
        const cut = marker.exec(l.text)[0].length;
        const item = [];
        inlineLines([{ text: l.text.slice(cut), base: l.base + cut, cr: l.cr }], depth + 1, ctx, item);
        list.appendChild(el('li', null, item));
        i++;
      }
      block(list);
      continue;
    }

    para.push(line);
    i++;
  }
  flush();
  // Trailing blank lines after text are kept (so a plain body reads back exactly).
  if (blanks.length && last !== 'block') {
    pushString(out, (last === 'text' ? '\n' : '') + blanks.join('\n'));
  }
}

// ---- inline ----

/** One paragraph (its lines joined by their breaks) as inline nodes. */
function inlineLines(lines, depth, ctx, out) {
  const text = lines.map((l) => l.text).join('\n');
  // Where each character of `text` is in the source (for the marks).
  const src = new Int32Array(text.length);
  let at = 0;
  for (const l of lines) {
    for (let k = 0; k < l.text.length; k++) src[at + k] = l.base + k;
    at += l.text.length;
    if (at < text.length) src[at++] = l.base + l.text.length + l.cr;
  }
  const p = new Paragraph(text, src, ctx.marks);
  p.inline(0, text.length, depth, true, out);
}

/** Index tables over one paragraph's text, so every search below is O(1). */
class Paragraph {
  constructor(text, src, marks) {
    this.text = text;
    this.src = src;
    this.marks = marks;
    // Backtick runs by length: sorted start positions, and how far each list is consumed.
    this.ticks = new Map();
    for (let i = 0; i < text.length;) {
      if (text[i] !== '`') {
        i++;
        continue;
      }
      let j = i;
      while (j < text.length && text[j] === '`') j++;
      const len = j - i;
      if (!this.ticks.has(len)) this.ticks.set(len, { at: [], next: 0 });
      this.ticks.get(len).at.push(i);
      i = j;
    }
    this.tables = null;
  }

  /** The next index at or after `i` of `[`, `]`, `(`, `)` and whitespace (built on first use). */
  nextTables() {
    if (this.tables) return this.tables;
    const { text } = this;
    const n = text.length;
    const make = () => new Int32Array(n + 1).fill(n);
    const t = { open: make(), close: make(), paren: make(), unparen: make(), space: make() };
    for (let i = n - 1; i >= 0; i--) {
      const c = text[i];
      t.open[i] = c === '[' ? i : t.open[i + 1];
      t.close[i] = c === ']' ? i : t.close[i + 1];
      t.paren[i] = c === '(' ? i : t.paren[i + 1];
      t.unparen[i] = c === ')' ? i : t.unparen[i + 1];
      t.space[i] = WHITESPACE.test(c) ? i : t.space[i + 1];
    }
    this.tables = t;
    return t;
  }

  /** The start of the first run of exactly `len` backticks after `after` and before `to`. */
  closingTicks(len, after, to) {
    const runs = this.ticks.get(len);
    if (!runs) return -1;
    while (runs.next < runs.at.length && runs.at[runs.next] <= after) runs.next++;
    const at = runs.at[runs.next];
    return at !== undefined && at < to ? at : -1;
  }

  /** A link `[text](url)` starting at `i` (a `[`) within `to`: { textEnd, end, href } or null. */
  link(i, to) {
    const { text } = this;
    const t = this.nextTables();
    const close = t.close[i + 1];
    if (close >= to || t.open[i + 1] < close || close === i + 1 || text[close + 1] !== '(') return null;
    const u = close + 2;
    let end = t.unparen[u];
    if (end >= to) return null;
    // One pair of parentheses inside the URL (https://en.wikipedia.org/wiki/A_(b)).
    const paren = t.paren[u];
    if (paren < end) {
      if (t.paren[paren + 1] < end) return null;
      const inner = end;
      end = t.unparen[inner + 1];
      if (end >= to || t.paren[inner + 1] < end) return null;
    }
    if (end === u || t.space[u] < end) return null;
    const href = safeHref(text.slice(u, end));
    return href ? { textEnd: close, end: end + 1, href } : null;
  }

  /** A bare URL starting at `i`: { end, href } (href null when it is not a valid URL). */
  autolink(i, to) {
    const { text } = this;
    let end = i;
    let opens = 0;
    let closes = 0;
    let squareOpens = 0;
    let squareCloses = 0;
    while (end < to) {
      const c = text[end];
      if (WHITESPACE.test(c) || c === '<' || c === '>' || c === '"' || c === '`') break;
      if (c === '(') opens++;
      else if (c === ')') closes++;
      else if (c === '[') squareOpens++;
      else if (c === ']') squareCloses++;
      end++;
    }
    const scanned = end;
    // Sentence punctuation after a URL, and a bracket it is inside, are not part of it.
    while (end > i) {
      const c = text[end - 1];
      if ('.,:;!?\'*_~'.includes(c)) end--;
      else if (c === ')' && closes > opens) {
        closes--;
        end--;
      } else if (c === ']' && squareCloses > squareOpens) {
        squareCloses--;
        end--;
      } else break;
    }
    return { end, scanned, href: safeHref(text.slice(i, end)) };
  }

  /**
   * Inline nodes for `text[from, to)`, pushed onto `out`. `links` false inside a link's
   * text (no link in a link).
   */
  inline(from, to, depth, links, out) {
    const { text } = this;
    const tokens = [];
    let plain = from;
    const flushText = (end) => {
      if (end > plain) tokens.push({ kind: 'text', start: plain, end });
    };
    let i = from;
    while (i < to) {
      const c = text[i];
      if (c === '`') {
        let j = i;
        while (j < to && text[j] === '`') j++;
        const len = j - i;
        const close = this.closingTicks(len, i, to);
        if (close < 0) {
          i = j;
          continue;
        }
        flushText(i);
        let code = text.slice(j, close).replace(/\n/g, ' ');
        if (code.length > 1 && code[0] === ' ' && code[code.length - 1] === ' ' && code.trim()) {
          code = code.slice(1, -1);
        }
        tokens.push({ kind: 'node', node: el('code', null, [code]) });
        i = close + len;
        plain = i;
        continue;
      }
      if (c === '[' && links && depth + 1 <= DEPTH_MAX) {
        const found = this.link(i, to);
        if (found) {
          flushText(i);
          const children = [];
          this.inline(i + 1, found.textEnd, depth + 1, false, children);
          const a = el('a', {
            href: found.href,
            target: '_blank',
            rel: LINK_REL,
            title: found.href,
          }, children);
          tokens.push({ kind: 'node', node: a });
          i = found.end;
          plain = i;
          continue;
        }
      }
      if ((c === 'h' || c === 'H') && links && (i === from || !WORD.test(text[i - 1]))
          && /^https?:\/\/./i.test(text.slice(i, i + 9))) {
        const found = this.autolink(i, to);
        if (found.href) {
          flushText(i);
          tokens.push({
            kind: 'node',
            node: el('a', { href: found.href, target: '_blank', rel: LINK_REL, title: found.href },
              [text.slice(i, found.end)]),
          });
          i = found.end;
          plain = i;
        } else {
          // Not a URL after all: the whole word stays text.
          i = found.scanned;
        }
        continue;
      }
      if (c === '*' || c === '_') {
        let j = i;
        while (j < to && text[j] === c) j++;
        const len = j - i;
        // Runs of three or more, and a run between two dashes, are text: that is how DLP
        // masks look (`**** **** **** 1111`, `***-**-1120`).
        if (len <= 2 && !(text[i - 1] === '-' && text[j] === '-' && i > from && j < to)) {
          const before = i > from ? text[i - 1] : ' ';
          const after = j < to ? text[j] : ' ';
          const spaceBefore = WHITESPACE.test(before);
          const spaceAfter = WHITESPACE.test(after);
          const punctBefore = PUNCTUATION.test(before);
          const punctAfter = PUNCTUATION.test(after);
          const left = !spaceAfter && (!punctAfter || spaceBefore || punctBefore);
          const right = !spaceBefore && (!punctBefore || spaceAfter || punctAfter);
          const open = c === '*' ? left : left && (!right || punctBefore);
          const close = c === '*' ? right : right && (!left || punctAfter);
          if (open || close) {
            flushText(i);
            tokens.push({ kind: 'delim', ch: c, len, start: i, open, close, role: null, pair: -1 });
            plain = j;
          }
        }
        i = j;
        continue;
      }
      i++;
    }
    flushText(to);
    this.emphasis(tokens);
    this.build(tokens, depth, out);
  }

  /**
   * Pair `*`/`_` delimiter runs: a closer takes the nearest opener of the same character and
   * length; openers between the two can no longer be used. Each opener is pushed and popped
   * once, so this is linear.
   */
  emphasis(tokens) {
    const stacks = new Map();
    const all = [];
    for (let k = 0; k < tokens.length; k++) {
      const t = tokens[k];
      if (t.kind !== 'delim') continue;
      const key = t.ch + t.len;
      if (!stacks.has(key)) {
        stacks.set(key, []);
        all.push(stacks.get(key));
      }
      const stack = stacks.get(key);
      if (t.close && stack.length) {
        const o = stack.pop();
        for (const other of all) while (other.length && other[other.length - 1] > o) other.pop();
        tokens[o].role = 'open';
        tokens[o].pair = k;
        t.role = 'close';
        t.pair = o;
      } else if (t.open) {
        stack.push(k);
      }
    }
  }

  build(tokens, depth, out) {
    const stack = [{ children: out, node: null }];
    const top = () => stack[stack.length - 1].children;
    for (const t of tokens) {
      if (t.kind === 'text') {
        this.textNodes(t.start, t.end, top());
      } else if (t.kind === 'node') {
        top().push(t.node);
      } else if (t.role === 'open' && depth + stack.length <= DEPTH_MAX) {
        stack.push({ children: [], node: el(t.len === 2 ? 'strong' : 'em') });
      } else if (t.role === 'close' && !tokens[t.pair].flat) {
        const { children, node } = stack.pop();
        for (const child of children) append(node, child);
        top().push(node);
      } else {
        // Unmatched, or nested too deep (then its closer stays text too).
        if (t.role === 'open') t.flat = true;
        pushString(top(), this.text.slice(t.start, t.start + t.len));
      }
    }
    // Pairs nest properly (openers inside a pair are dropped when it closes), so every
    // element pushed above has been closed and the stack is back to `out` here.
  }

  /** `text[start, end)` as strings, with the marks that fall whole inside it as spans. */
  textNodes(start, end, out) {
    const { text, src, marks } = this;
    let at = start;
    if (marks.size) {
      for (let i = start; i < end; i++) {
        const mark = marks.get(src[i]);
        if (!mark) continue;
        const len = mark.end - mark.start;
        if (i + len > end || src[i + len - 1] - src[i] !== len - 1) continue;
        pushString(out, text.slice(at, i));
        out.push(el('span', { class: mark.className }, [text.slice(i, i + len)]));
        i += len - 1;
        at = i + 1;
      }
    }
    pushString(out, text.slice(at, end));
  }
}
