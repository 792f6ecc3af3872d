// The live connection: `hello` with the token (never in the URL) and what to resume,
// then frames. It reconnects by itself with backoff and jitter, notices a dead network
// by silence, and learns which optional frame types the server does not know yet.

const PING_EVERY_MS = 25_000;
const SILENCE_LIMIT_MS = 70_000;
const MAX_BACKOFF_MS = 15_000;

export class LiveSocket {
  /**
   * opts.token(): the token; opts.resume(): `{conversation_id: last_seq}`;
   * opts.onFrame(frame); opts.onState(state) with state one of
   * `connecting`, `open`, `reconnecting`, `unauthorized`, `stopped`;
   * opts.onWelcome(frame) before the replay that follows it.
   */
  constructor(opts) {
    this.opts = opts;
    this.ws = null;
    this.state = 'stopped';
    this.attempt = 0;
    this.timer = null;
    this.pinger = null;
    this.lastFrameAt = 0;
    this.unsupported = new Set();
    this.welcomed = false;
    this.onOnline = () => { if (this.state === 'reconnecting') this.connectNow(); };
    this.onVisible = () => {
      if (document.visibilityState === 'visible' && this.state === 'reconnecting') this.connectNow();
    };
  }

  start() {
    if (this.state !== 'stopped') return;
    window.addEventListener('online', this.onOnline);
    document.addEventListener('visibilitychange', this.onVisible);
    this.connect();
  }

  stop() {
    this.setState('stopped');
    window.removeEventListener('online', this.onOnline);
    document.removeEventListener('visibilitychange', this.onVisible);
    clearTimeout(this.timer);
    clearInterval(this.pinger);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      try { ws.close(1000, 'bye'); } catch { /* already closed */ }
    }
  }

  /** Whether the server understands a client frame type (it says so when it does not). */
  supports(type) {
    return !this.unsupported.has(type);
  }

  /** Send a frame if the socket is ready; returns whether it went out. */
  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN || !this.welcomed) return false;
    if (this.unsupported.has(frame.type)) return false;
    try {
      this.ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  get open() {
    return this.state === 'open';
  }

  setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.opts.onState?.(s);
  }

  connectNow() {
    clearTimeout(this.timer);
    this.attempt = 0;
    this.connect();
  }

  connect() {
    if (this.state === 'stopped' && this.ws) return;
    clearTimeout(this.timer);
    if (this.ws) {
      const old = this.ws;
      this.ws = null;
      try { old.close(); } catch { /* ignore */ }
    }
    this.setState(this.attempt === 0 ? 'connecting' : 'reconnecting');
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let ws;
    try {
      ws = new WebSocket(`${proto}//${location.host}/v1/ws`);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    this.welcomed = false;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.lastFrameAt = Date.now();
      ws.send(JSON.stringify({ type: 'hello', token: this.opts.token(), resume: this.opts.resume?.() || {} }));
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      this.lastFrameAt = Date.now();
      let frame;
      try { frame = JSON.parse(ev.data); } catch { return; }
      if (frame.type === 'welcome') {
        this.welcomed = true;
        this.attempt = 0;
        this.opts.onWelcome?.(frame);
        this.setState('open');
        this.startPinger(ws);
        return;
      }
      if (frame.type === 'error' && !frame.client_msg_id) {
        const m = /unknown frame type "([a-z_]+)"/.exec(frame.message || '');
        if (m) {
          this.unsupported.add(m[1]);
          return;
        }
      }
      if (frame.type === 'pong') return;
      this.opts.onFrame?.(frame);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.welcomed = false;
      clearInterval(this.pinger);
      if (this.state === 'stopped') return;
      if (ev.code === 4401) {
        this.setState('unauthorized');
        return;
      }
      this.scheduleReconnect();
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  startPinger(ws) {
    clearInterval(this.pinger);
    this.pinger = setInterval(() => {
      if (this.ws !== ws) return;
      if (Date.now() - this.lastFrameAt > SILENCE_LIMIT_MS) {
        // The network went away without a close: start over.
        try { ws.close(4000, 'silent'); } catch { /* ignore */ }
        this.ws = null;
        this.welcomed = false;
        this.scheduleReconnect();
        return;
      }
      try { ws.send('{"type":"ping"}'); } catch { /* onclose follows */ }
    }, PING_EVERY_MS);
  }

  scheduleReconnect() {
    if (this.state === 'stopped' || this.state === 'unauthorized') return;
    this.setState('reconnecting');
    const base = Math.min(MAX_BACKOFF_MS, 400 * 2 ** this.attempt);
    const delay = base / 2 + Math.random() * base / 2;
    this.attempt = Math.min(this.attempt + 1, 10);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }
}
