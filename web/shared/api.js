// HTTP client for the Lingshi API: the bearer token goes in a header (never in a URL),
// errors arrive as ApiError with the contract's code.

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || '';
    this.retryAfter = retryAfter || 0;
  }
  /** The endpoint does not exist on this server (yet): hide what needs it. */
  get missing() {
    return this.status === 404 && (this.code === 'not_found' || this.code === '') &&
      /no such endpoint/i.test(this.message || '');
  }
}

export class Api {
  /**
   * `token()`: the current token or null; `onUnauthorized()`: called once a request is
   * refused with 401 (the session expired or was revoked).
   */
  constructor({ token, onUnauthorized } = {}) {
    this.token = token || (() => null);
    this.onUnauthorized = onUnauthorized || (() => {});
  }

  async request(method, path, body, opts = {}) {
    const headers = { Accept: 'application/json' };
    const tok = opts.token ?? this.token();
    if (tok) headers.Authorization = `Bearer ${tok}`;
    let payload;
    if (body instanceof FormData) payload = body;
    else if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, {
        method, headers, body: payload, cache: 'no-store', credentials: 'omit',
        referrerPolicy: 'no-referrer', signal: opts.signal,
      });
    } catch (e) {
      if (e?.name === 'AbortError') throw e;
      throw new ApiError(0, 'network', e?.message || 'network error');
    }
    if (opts.blob && res.ok) return res.blob();
    const text = await res.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch { data = null; }
    }
    if (!res.ok) {
      const err = data?.error || {};
      const e = new ApiError(res.status, err.code, err.message, Number(res.headers.get('Retry-After')) || 0);
      if (res.status === 401 && tok && !opts.noAuthHook) this.onUnauthorized(e);
      throw e;
    }
    return data;
  }

  get(path, opts) { return this.request('GET', path, undefined, opts); }
  post(path, body, opts) { return this.request('POST', path, body ?? {}, opts); }
  put(path, body, opts) { return this.request('PUT', path, body ?? {}, opts); }
  del(path, body, opts) { return this.request('DELETE', path, body, opts); }

  /** Upload an image: `POST /v1/attachments`, multipart field `file`. */
  upload(file) {
    const form = new FormData();
    form.append('file', file, file.name || 'image');
    return this.request('POST', '/v1/attachments', form);
  }
}

/** `?a=1&b=2` from an object, leaving out empty values. */
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    u.set(k, String(v));
  }
  const s = u.toString();
  return s ? `?${s}` : '';
}

/**
 * Images need the bearer token, which an <img src> cannot send: fetch them and show
 * them through `blob:` URLs, kept in a small cache so scrolling back does not refetch.
 */
export class ImageCache {
  constructor(api, max = 300) {
    this.api = api;
    this.max = max;
    this.urls = new Map();
    this.pending = new Map();
  }

  async get(path) {
    if (this.urls.has(path)) {
      const u = this.urls.get(path);
      this.urls.delete(path);
      this.urls.set(path, u);
      return u;
    }
    if (this.pending.has(path)) return this.pending.get(path);
    const p = this.api.get(path, { blob: true }).then((blob) => {
      const u = URL.createObjectURL(blob);
      this.urls.set(path, u);
      this.pending.delete(path);
      while (this.urls.size > this.max) {
        const [oldest, url] = this.urls.entries().next().value;
        this.urls.delete(oldest);
        URL.revokeObjectURL(url);
      }
      return u;
    }, (e) => { this.pending.delete(path); throw e; });
    this.pending.set(path, p);
    return p;
  }
}
