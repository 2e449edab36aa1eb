// The WebSocket side of the protocol: connect, resume with `sync`, reconnect with backoff.
//
// Resume is what makes a network blip or a server restart invisible: every (re)connect sends
// `sync` as its first frame with the last `seq` the client has applied per room, so the
// server replays exactly what was missed, in order, before live events. The cursor map comes
// from the caller (`cursors()`), which only advances it when an event is actually applied.

import { randomId } from './dom.js';

const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 15_000;
/** Send our own ping this often, and give up on a connection silent for DEAD_AFTER_MS. */
const PING_EVERY_MS = 20_000;
const DEAD_AFTER_MS = 45_000;
const REQUEST_TIMEOUT_MS = 10_000;

export class Socket {
  /**
   * @param {import('./api.js').Api} api
   * @param {{ cursors: () => Record<string, number>, onFrame: (f: object) => void,
   *           onStatus: (s: string, detail?: object) => void, onSynced: (f: object) => void,
   *           onSessionEnded: () => void }} handlers
   */
  constructor(api, handlers) {
    this.api = api;
    this.handlers = handlers;
    this.ws = null;
    this.online = false;
    this.attempt = 0;
    this.stopped = true;
    this.pending = new Map();
    this.retryTimer = null;
    this.pingTimer = null;
    this.lastFrameAt = 0;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    if (this.ws) this.ws.close(1000, 'closed');
    this.ws = null;
    this.online = false;
  }

  /** Reconnect now (e.g. the browser says the network is back). */
  kick() {
    if (this.stopped || this.online) return;
    clearTimeout(this.retryTimer);
    if (!this.ws) this.connect();
  }

  async connect() {
    if (this.stopped) return;
    this.handlers.onStatus('connecting');
    let token;
    try {
      // After a few failures, ask whether the session still exists: a refused upgrade (say,
      // the account was deactivated meanwhile) looks the same as a server that is down.
      if (this.attempt >= 3) await this.api.get('/api/v1/me');
      token = await this.api.accessToken();
    } catch (err) {
      if (err.transient) this.scheduleReconnect();
      return;
    }
    if (this.stopped) return;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${location.host}/api/v1/ws?token=${encodeURIComponent(token)}`);
    this.ws = ws;
    ws.onopen = () => {
      this.lastFrameAt = Date.now();
      // `sync` must be the first frame: live events are held back until it arrives.
      ws.send(JSON.stringify({ type: 'sync', req: randomId('s'), rooms: this.handlers.cursors() }));
      this.handlers.onStatus('syncing');
    };
    ws.onmessage = (msg) => this.receive(msg);
    ws.onclose = (ev) => this.closed(ws, ev);
    ws.onerror = () => {
      // `close` follows and handles it.
    };
  }

  receive(msg) {
    this.lastFrameAt = Date.now();
    let frame;
    try {
      frame = JSON.parse(msg.data);
    } catch {
      return;
    }
    if (frame.type === 'synced') {
      this.online = true;
      this.attempt = 0;
      this.startPing();
      this.handlers.onStatus('online');
      this.handlers.onSynced(frame);
      return;
    }
    if ((frame.type === 'ack' || frame.type === 'error' || frame.type === 'pong') && frame.req) {
      const waiter = this.pending.get(frame.req);
      if (waiter) {
        this.pending.delete(frame.req);
        clearTimeout(waiter.timer);
        if (frame.type === 'error') waiter.reject(frame);
        else waiter.resolve(frame);
        return;
      }
    }
    this.handlers.onFrame(frame);
  }

  closed(ws, ev) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.online = false;
    clearInterval(this.pingTimer);
    for (const waiter of this.pending.values()) {
      clearTimeout(waiter.timer);
      waiter.reject({ code: 'offline', message: 'the connection was lost' });
    }
    this.pending.clear();
    if (this.stopped) return;
    if (ev.code === 4001) {
      this.stopped = true;
      this.handlers.onSessionEnded();
      return;
    }
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    if (this.stopped) return;
    // Exponential backoff with jitter, so a restarted server is not hit by everyone at once.
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    const delay = Math.round(base / 2 + Math.random() * (base / 2));
    this.attempt += 1;
    this.handlers.onStatus('offline', { retryInMs: delay });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  startPing() {
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      if (!this.ws) return;
      if (Date.now() - this.lastFrameAt > DEAD_AFTER_MS) {
        // A half-open connection never fires `close` by itself.
        this.ws.close(4000, 'dead');
        this.closed(this.ws, { code: 1006 });
        return;
      }
      this.send({ type: 'ping' });
    }, PING_EVERY_MS);
  }

  /** Fire and forget; false when offline (typing and read frames are not worth queueing). */
  send(frame) {
    if (!this.online || !this.ws) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Send a frame and wait for its `ack` (resolves) or `error` (rejects with the frame). */
  request(frame) {
    if (!this.online || !this.ws) {
      return Promise.reject({ code: 'offline', message: 'not connected' });
    }
    const req = randomId('r');
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(req);
        reject({ code: 'timeout', message: 'no answer in time' });
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(req, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ ...frame, req }));
    });
  }
}
