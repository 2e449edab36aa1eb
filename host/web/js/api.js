// The HTTP side of the protocol (docs/protocol.md): login, token refresh, JSON requests.
//
// Tokens live in sessionStorage, so a reload keeps the session but closing the tab ends it,
// and two tabs are two independent sessions. The access token is refreshed shortly before it
// expires; refreshes are single-flight because a refresh token is spent on use and a replay
// would end the whole session.

const STORAGE_KEY = 'switchboard.session';
/** Refresh this long before the access token expires. */
const REFRESH_MARGIN_MS = 60_000;

/** An error answer from the server: `{ code, message, rejection?, retry_after_ms? }`. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `request failed (${status})`);
    this.status = status;
    this.code = body?.code || 'network_error';
    this.rejection = body?.rejection || null;
    this.retryAfterMs = body?.retry_after_ms || null;
  }

  /** The same error from a WebSocket `error` frame (or a local `offline`/`timeout`). */
  static fromFrame(frame) {
    const statusByCode = {
      offline: 0, timeout: 0, rate_limited: 429, server_busy: 429, internal: 500,
      shutting_down: 503, store_unavailable: 503, message_rejected: 403,
    };
    return new ApiError(statusByCode[frame.code] ?? 400, frame);
  }

  /** Worth retrying with the same idempotency key: the request may not have been applied. */
  get transient() {
    return this.status === 0 || this.status >= 500 || this.status === 429;
  }
}

export class Api {
  /** @param {() => void} onSessionEnded called when the session can no longer be used */
  constructor(onSessionEnded = () => {}) {
    this.onSessionEnded = onSessionEnded;
    this.session = load();
    this.refreshing = null;
    this.timer = null;
    if (this.session) this.scheduleRefresh();
  }

  get user() {
    return this.session?.user || null;
  }

  get loggedIn() {
    return this.session !== null;
  }

  async login(username, password) {
    const pair = await this.call('POST', '/api/v1/auth/login', { username, password }, null);
    this.store(pair);
    return pair.user;
  }

  /** Finish a single sign-on: trade the one-time ticket the server put in the URL. */
  async redeem(ticket) {
    const pair = await this.call('POST', '/api/v1/auth/oidc/redeem', { ticket }, null);
    this.store(pair);
    return pair.user;
  }

  /** The identity providers to offer on the login page: `[{ id, display_name }]`. */
  async signInProviders() {
    try {
      return await this.call('GET', '/api/v1/auth/oidc', undefined, null);
    } catch {
      return [];
    }
  }

  async logout() {
    try {
      if (this.session) await this.request('POST', '/api/v1/auth/logout');
    } catch {
      // The session is forgotten locally either way.
    }
    this.forget();
  }

  /** A usable access token, refreshed first if it is about to expire. */
  async accessToken() {
    if (!this.session) throw new ApiError(401, { code: 'missing_token', message: 'not logged in' });
    if (this.session.expiresAt - Date.now() < 10_000) await this.refresh();
    return this.session.access;
  }

  /** Exchange the refresh token for a new pair; concurrent callers share one request. */
  refresh() {
    if (!this.refreshing) {
      const refreshToken = this.session?.refresh;
      this.refreshing = (async () => {
        try {
          const pair = await this.call('POST', '/api/v1/auth/refresh', { refresh_token: refreshToken }, null);
          this.store(pair);
        } catch (err) {
          // A definite "no" ends the session; a network failure is retried by the next caller.
          if (!err.transient) this.end();
          throw err;
        } finally {
          this.refreshing = null;
        }
      })();
    }
    return this.refreshing;
  }

  /** An authenticated JSON request; retries once after refreshing an expired token. */
  async request(method, path, body) {
    const token = await this.accessToken();
    try {
      return await this.call(method, path, body, token);
    } catch (err) {
      if (err.status === 401 && err.code === 'token_expired') {
        await this.refresh();
        return this.call(method, path, body, this.session.access);
      }
      if (err.status === 401) this.end();
      throw err;
    }
  }

  get(path) {
    return this.request('GET', path);
  }

  post(path, body = {}) {
    return this.request('POST', path, body);
  }

  patch(path, body) {
    return this.request('PATCH', path, body);
  }

  put(path, body) {
    return this.request('PUT', path, body);
  }

  delete(path) {
    return this.request('DELETE', path);
  }

  /** POST a multipart form (files). */
  upload(path, form) {
    return this.request('POST', path, form);
  }

  /** A file to save (an export batch's file): the bytes, not JSON. */
  async blob(path) {
    const token = await this.accessToken();
    const resp = await fetch(path, { headers: { Authorization: `Bearer ${token}` }, cache: 'no-store' });
    if (!resp.ok) throw new ApiError(resp.status, await resp.json().catch(() => null));
    return resp.blob();
  }

  /** `/metrics` is text, not JSON. */
  async metricsText() {
    const token = await this.accessToken();
    const resp = await fetch('/metrics', { headers: { Authorization: `Bearer ${token}` } });
    if (!resp.ok) throw new ApiError(resp.status, await resp.json().catch(() => null));
    return resp.text();
  }

  async call(method, path, body, token) {
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    // A FormData body (a plugin upload) sets its own multipart content type.
    const form = typeof FormData !== 'undefined' && body instanceof FormData;
    if (body !== undefined && !form) headers['Content-Type'] = 'application/json';
    let resp;
    try {
      resp = await fetch(path, {
        method,
        headers,
        body: body === undefined || form ? body : JSON.stringify(body),
        cache: 'no-store',
      });
    } catch {
      throw new ApiError(0, { code: 'network_error', message: 'the server cannot be reached' });
    }
    const text = await resp.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = { code: 'bad_response', message: text.slice(0, 200) };
    }
    if (!resp.ok) throw new ApiError(resp.status, json);
    return json;
  }

  store(pair) {
    this.session = {
      access: pair.access_token,
      refresh: pair.refresh_token,
      user: pair.user,
      expiresAt: Date.now() + pair.expires_in * 1000,
      ttlMs: pair.expires_in * 1000,
    };
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify(this.session));
    this.scheduleRefresh();
  }

  scheduleRefresh() {
    clearTimeout(this.timer);
    const { expiresAt, ttlMs } = this.session;
    // Short test lifetimes: refresh at 80 % of the lifetime rather than a fixed margin.
    const margin = Math.min(REFRESH_MARGIN_MS, (ttlMs || 0) * 0.2);
    const delay = Math.max(1_000, expiresAt - Date.now() - margin);
    this.timer = setTimeout(() => this.refresh().catch(() => this.retryRefreshSoon()), delay);
  }

  retryRefreshSoon() {
    if (!this.session) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh().catch(() => this.retryRefreshSoon()), 5_000);
  }

  forget() {
    clearTimeout(this.timer);
    this.session = null;
    sessionStorage.removeItem(STORAGE_KEY);
  }

  end() {
    if (!this.session) return;
    this.forget();
    this.onSessionEnded();
  }
}

function load() {
  try {
    const session = JSON.parse(sessionStorage.getItem(STORAGE_KEY));
    return session && session.access && session.refresh ? session : null;
  } catch {
    return null;
  }
}
