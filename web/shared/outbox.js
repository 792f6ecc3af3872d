// Messages written but not yet acknowledged. They are kept in storage (so a reload or a
// crash of the tab loses nothing) and sent again with the same `client_msg_id` after
// every reconnect: the server stores each id once, so nothing is doubled either.

export class Outbox {
  /** `key`: the storage key (one per signed-in user); `storage`: localStorage by default. */
  constructor(key, storage = window.localStorage) {
    this.key = key;
    this.storage = storage;
    this.items = this.load();
    this.listeners = new Set();
  }

  load() {
    try {
      const v = JSON.parse(this.storage.getItem(this.key) || '[]');
      return Array.isArray(v) ? v.filter((i) => i && i.client_msg_id) : [];
    } catch {
      return [];
    }
  }

  save() {
    try {
      if (this.items.length) this.storage.setItem(this.key, JSON.stringify(this.items));
      else this.storage.removeItem(this.key);
    } catch {
      // Storage full or disabled: the message stays in memory and is still retried.
    }
    for (const l of this.listeners) l(this.items);
  }

  onChange(fn) {
    this.listeners.add(fn);
  }

  /** Add a message: `{client_msg_id, conversation_id, kind, body, attachment_ids}`. */
  add(item) {
    this.items.push({ ...item, state: 'pending', created_at: new Date().toISOString() });
    this.save();
  }

  get(cmid) {
    return this.items.find((i) => i.client_msg_id === cmid);
  }

  remove(cmid) {
    const n = this.items.length;
    this.items = this.items.filter((i) => i.client_msg_id !== cmid);
    if (this.items.length !== n) this.save();
  }

  fail(cmid, error) {
    const i = this.get(cmid);
    if (!i) return;
    i.state = 'failed';
    i.error = error;
    this.save();
  }

  retry(cmid) {
    const i = this.get(cmid);
    if (!i) return;
    i.state = 'pending';
    delete i.error;
    this.save();
  }

  pending() {
    return this.items.filter((i) => i.state === 'pending');
  }

  /** The send frame for an item. */
  static frame(i) {
    const f = { type: 'send', client_msg_id: i.client_msg_id, kind: i.kind || 'text' };
    if (i.conversation_id) f.conversation_id = i.conversation_id;
    if (i.body) f.body = i.body;
    if (i.attachment_ids?.length) f.attachment_ids = i.attachment_ids;
    return f;
  }

  /** Send every pending item over `socket`, in the order they were written. */
  flush(socket) {
    for (const i of this.pending()) {
      if (!socket.send(Outbox.frame(i))) return false;
    }
    return true;
  }

  /**
   * Handle an `error` frame about one of our messages: a rate limit or a busy server is
   * retried; anything else (too long, forbidden) is shown to the writer as failed.
   */
  handleError(frame, socket) {
    const i = this.get(frame.client_msg_id);
    if (!i) return false;
    if (frame.code === 'rate_limited' || frame.code === 'unavailable' || frame.code === 'internal') {
      setTimeout(() => {
        const again = this.get(frame.client_msg_id);
        if (again && again.state === 'pending') socket.send(Outbox.frame(again));
      }, 1500 + Math.random() * 1000);
    } else {
      this.fail(frame.client_msg_id, frame.message || frame.code);
    }
    return true;
  }
}
