// Presence in the chat client: who is `online`, `away` or `offline` among the people we share
// a room with, shown as a dot beside their name (a direct room in the room list and its
// header, a message's sender, the `@` suggestions); our own dot and the "Hide my presence"
// switch in the sidebar's header; and telling the server whether we are looking.
//
// The map is the server's (`GET /api/v1/presence`: everyone who shares a room with us and is
// not offline; anyone else is offline), loaded after every (re)connect, since frames sent
// while the socket was down are lost, and after a membership change (no frame says that
// someone new now shares a room with us). Live `presence` frames change it. Frames that
// arrive while a load is on its way are applied at once and again over its answer: the
// answer may be older than they are, and re-applying in order always ends at the newest.
//
// Our own dot shows `me.status` (what others would see were we not hidden). While we are
// hidden our own sessions get `offline` for us like everyone else, so frames about us are
// not believed then; the list is asked again instead. A frame saying we are offline while
// our socket is up means another of our pages hid us, so the list is asked again too.
//
// Sending: `away` when the page is hidden or nobody touched it for IDLE_AFTER_MS, `online`
// when it is looked at or used again; only a change of what was last sent goes out. The
// server counts every other frame that does something as activity too, and a new socket
// starts `online` on the server, so after a reconnect only an `away` needs saying.
//
// A dot is a `span.presence-dot.presence-<status>` with `role="img"`, the status as its
// `aria-label` and `title`, and `data-user`: status is never colour alone (the shape
// differs too: filled, half, hollow). Dots already on the page are repainted in place, so
// a change redraws no message.

import { h, replace } from './dom.js';

/** No keyboard, mouse or touch input for this long: away. */
const IDLE_AFTER_MS = 5 * 60_000;
/** How long after a reason to reload the map it is loaded (a burst of events shares it). */
const RELOAD_AFTER_MS = 250;
/** While hidden, how long after saying `away`/`online` our own status is asked for again
 * (no frame tells us: others see no change). Leaves the server time to take the frame. */
const OWN_RELOAD_AFTER_MS = 500;
/** What counts as the user doing something in the page. */
const INPUT_EVENTS = ['keydown', 'pointerdown', 'pointermove', 'wheel', 'touchstart'];
const STATUSES = new Set(['online', 'away', 'offline']);
const TITLES = { online: 'Online', away: 'Away', offline: 'Offline' };

/** The model: who is how, as far as this page knows. Lives in the chat's state
 * (`state.presence`) so views can draw dots from it. */
export class PresenceBook {
  constructor(meId) {
    this.meId = meId;
    /** Off until the server says otherwise (and when the operator turned presence off):
     * no dots, no switch. */
    this.enabled = false;
    /** user id -> 'online' | 'away' (absent: offline). */
    this.statuses = new Map();
    this.me = { status: 'offline', hidden: false };
  }

  /** A user's status; ours is `me.status`. */
  status(id) {
    if (id === this.meId) return this.me.status;
    return this.statuses.get(id) ?? 'offline';
  }

  /** The answer of `GET /api/v1/presence`. */
  load(answer) {
    this.enabled = Boolean(answer?.enabled);
    this.me = { status: known(answer?.me?.status), hidden: Boolean(answer?.me?.hidden) };
    this.statuses = new Map();
    for (const entry of answer?.users || []) this.set(entry.user, entry.status);
  }

  /** Someone else's status; returns whether it changed. */
  set(id, status) {
    const now = known(status);
    if (this.status(id) === now) return false;
    if (now === 'offline') this.statuses.delete(id);
    else this.statuses.set(id, now);
    return true;
  }
}

/** An unknown status reads as offline. */
function known(status) {
  return STATUSES.has(status) ? status : 'offline';
}

/** A dot for `userId`, or null when presence is off. */
export function presenceDot(book, userId) {
  if (!book?.enabled || userId === undefined || userId === null) return null;
  const el = h('span', { role: 'img', dataset: { user: userId } });
  paint(el, book, userId);
  return el;
}

/** A dot's look and words for `userId` as `book` has it now. */
function paint(el, book, userId) {
  const status = book.status(userId);
  const own = userId === book.meId;
  el.className = `presence-dot presence-${status}${own ? ' presence-self' : ''}`;
  if (own && book.me.hidden) {
    el.setAttribute('aria-label', `${status}, hidden`);
    el.title = `You are ${status}; hidden: everyone else sees you as offline`;
  } else {
    el.setAttribute('aria-label', status);
    el.title = own ? `You are ${status}` : TITLES[status];
  }
}

/** Repaint the dots on the page: `userId`'s, or everyone's. */
function repaint(book, userId = null) {
  const selector = userId === null ? '.presence-dot[data-user]' : `.presence-dot[data-user="${Number(userId)}"]`;
  for (const el of document.querySelectorAll(selector)) paint(el, book, Number(el.dataset.user));
}

/** How a user is read out where a dot's own label is not (a button with its own label). */
export function presenceWords(book, userId) {
  return book?.enabled ? book.status(userId) : null;
}

/**
 * Says `away` / `online` over the socket as the page is hidden, shown, left idle and used.
 * Listens for the whole page's life; `connected()` after each (re)connect.
 */
export class ActivityReporter {
  /**
   * @param {{ socket: () => import('./socket.js').Socket | null, enabled: () => boolean,
   *           onSent: (status: string) => void }} deps
   */
  constructor(deps) {
    this.deps = deps;
    /** What the server last heard from this page (null: not known, say it again). */
    this.sent = null;
    this.idle = false;
    this.lastInputAt = Date.now();
    this.timer = null;
    document.addEventListener('visibilitychange', () => this.update());
    // Captured on the window: a handler that stops an event cannot hide the activity.
    for (const type of INPUT_EVENTS) {
      window.addEventListener(type, () => this.input(), { capture: true, passive: true });
    }
    this.armIdle(IDLE_AFTER_MS);
  }

  /** What the page should say now. */
  wanted() {
    return document.visibilityState === 'hidden' || this.idle ? 'away' : 'online';
  }

  input() {
    this.lastInputAt = Date.now();
    if (!this.idle) return;
    this.idle = false;
    this.armIdle(IDLE_AFTER_MS);
    this.update();
  }

  /** One timer, checked when it fires rather than reset on every input (mouse moves are
   * many). */
  armIdle(delay) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      const quiet = Date.now() - this.lastInputAt;
      if (quiet < IDLE_AFTER_MS) {
        this.armIdle(IDLE_AFTER_MS - quiet);
        return;
      }
      this.idle = true;
      this.update();
    }, delay);
  }

  /** Send the wanted status if it is not what was last sent (and the socket is up). */
  update() {
    const status = this.wanted();
    if (status === this.sent || !this.deps.enabled()) return;
    if (this.deps.socket()?.send({ type: 'presence', status })) {
      this.sent = status;
      this.deps.onSent(status);
    }
  }

  /** A new socket: the server starts it `online`. */
  connected() {
    this.sent = 'online';
    this.update();
  }
}

/**
 * The controller: loads the map, applies frames, draws our own dot and the switch, and
 * owns the `ActivityReporter`.
 */
export class PresenceControl {
  /**
   * @param {object} els  { me (our dot's place), toggle (the switch's label), hidden (its box) }
   * @param {object} deps { api, toast(msg), socket() -> Socket | null,
   *                        onChange({ all }) (redraw what a dot cannot repaint itself: the
   *                        room list's labels; `all`: presence was turned on or off) }
   */
  constructor(els, deps) {
    this.els = els;
    this.deps = deps;
    this.state = null;
    /** Bumped on every load: an older load's answer is dropped. */
    this.generation = 0;
    /** Frames received while a load is on its way (null: none on its way). */
    this.during = null;
    this.timer = null;
    this.activity = new ActivityReporter({
      socket: deps.socket,
      enabled: () => Boolean(this.book?.enabled),
      onSent: () => {
        // Hidden, nobody (us included) gets a frame about our change: ask.
        if (this.book?.me.hidden) this.loadSoon(OWN_RELOAD_AFTER_MS);
      },
    });
    els.hidden.addEventListener('change', () => this.setHidden(els.hidden.checked));
  }

  get book() {
    return this.state?.presence ?? null;
  }

  /** A new session (its model holds the book). */
  start(state) {
    this.stop();
    this.state = state;
    this.renderOwn();
  }

  stop() {
    this.generation += 1;
    this.during = null;
    clearTimeout(this.timer);
    this.state = null;
    this.renderOwn();
  }

  /** The socket is (again) connected and caught up. */
  connected() {
    this.activity.connected();
    this.load();
  }

  async load() {
    const state = this.state;
    if (!state) return;
    const gen = ++this.generation;
    this.during = [];
    let answer;
    try {
      answer = await this.deps.api.get('/api/v1/presence');
    } catch {
      // Tried again on the next reconnect or membership change; frames still apply.
      if (gen === this.generation) this.during = null;
      return;
    }
    if (gen !== this.generation || state !== this.state) return;
    const frames = this.during;
    this.during = null;
    const book = state.presence;
    const wasEnabled = book.enabled;
    book.load(answer);
    for (const frame of frames) this.apply(frame, false);
    if (!book.enabled) {
      for (const el of document.querySelectorAll('.presence-dot')) el.remove();
    }
    repaint(book);
    this.renderOwn();
    this.deps.onChange({ all: wasEnabled !== book.enabled });
    // Nothing was said while presence was not known to be on (a hidden page says so now).
    if (!wasEnabled) this.activity.update();
  }

  /** Load again shortly (a burst of reasons shares one load). */
  loadSoon(delay = RELOAD_AFTER_MS) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.load(), delay);
  }

  /** A `presence` frame from the socket. */
  onFrame(frame) {
    if (!this.book) return;
    this.during?.push(frame);
    this.apply(frame, true);
  }

  /** Apply one frame; `live` redraws what changed. */
  apply(frame, live) {
    const book = this.book;
    const user = Number(frame.user);
    if (user === book.meId) {
      this.applyOwn(known(frame.status), live);
      return;
    }
    if (!book.set(user, frame.status) || !live || !book.enabled) return;
    repaint(book, user);
    this.deps.onChange({ all: false });
  }

  /** A frame about us: believed only while we are shown (see the top of this file). */
  applyOwn(status, live) {
    const book = this.book;
    if (status === 'offline' || book.me.hidden) {
      if (live) this.loadSoon();
      return;
    }
    if (book.me.status === status) return;
    book.me.status = status;
    if (live) this.renderOwn();
  }

  /** The switch was flipped: `PUT /api/v1/me/presence`. */
  async setHidden(hidden) {
    const state = this.state;
    if (!state) return;
    const box = this.els.hidden;
    box.disabled = true;
    try {
      const own = await this.deps.api.put('/api/v1/me/presence', { hidden });
      if (state !== this.state) return;
      state.presence.me = { status: known(own?.status), hidden: Boolean(own?.hidden) };
    } catch (err) {
      this.deps.toast(err.message);
    } finally {
      box.disabled = false;
    }
    this.renderOwn();
  }

  /** Our own dot (with "hidden" when we are) and the switch, as the book has them. */
  renderOwn() {
    const book = this.book;
    const on = Boolean(book?.enabled);
    this.els.toggle.hidden = !on;
    this.els.hidden.checked = Boolean(book?.me.hidden);
    if (!on) {
      replace(this.els.me);
      return;
    }
    replace(this.els.me,
      presenceDot(book, book.meId),
      // The dot's label says "hidden" already.
      book.me.hidden ? h('span', { class: 'presence-hidden-mark', 'aria-hidden': 'true' }, 'hidden') : null);
  }
}
