// A windowed message list. It loads the newest page of a conversation, fetches older
// pages (`before_seq`) as the reader scrolls up, and keeps at most MAX_NODES messages in
// the document, dropping those far out of view: a conversation of ten thousand messages
// opens as fast as one of fifty and scrolls just as smoothly.

const PAGE = 100;
const STEP = 60;
const MAX_NODES = 360;
const EDGE_PX = 400;

export class MessageList {
  /**
   * opts: scroller (the scrolling element), list (<ol> of messages), fetchPage({before_seq,
   * limit}) → messages in seq order, render(message) → <li>, onSeen(seq) when the newest
   * message is in view, onUnseen(count) when new messages arrived below the view.
   */
  constructor(opts) {
    this.o = opts;
    this.items = [];
    this.seqs = new Set();
    this.nodes = new Map();
    this.wLo = 0;
    this.wHi = 0;
    this.atStart = true;
    this.loading = false;
    this.gen = 0;
    this.unseen = 0;
    this.scheduled = false;
    opts.scroller.addEventListener('scroll', () => {
      if (this.scheduled) return;
      this.scheduled = true;
      requestAnimationFrame(() => {
        this.scheduled = false;
        this.onScroll();
      });
    }, { passive: true });
  }

  get lastSeq() {
    return this.items.length ? this.items[this.items.length - 1].seq : 0;
  }

  get renderedCount() {
    return this.nodes.size;
  }

  reset() {
    this.gen += 1;
    this.items = [];
    this.seqs.clear();
    this.nodes.clear();
    this.wLo = this.wHi = 0;
    this.atStart = true;
    this.loading = false;
    this.unseen = 0;
    this.o.list.replaceChildren();
    this.o.onUnseen?.(0);
  }

  /** Show the newest messages of a conversation whose last message is `lastSeq`. */
  async open(lastSeq) {
    this.reset();
    const gen = this.gen;
    const before = Number.isFinite(lastSeq) && lastSeq >= 0 ? lastSeq + 1 : Number.MAX_SAFE_INTEGER;
    this.loading = true;
    let page;
    try {
      page = await this.o.fetchPage({ before_seq: before, limit: PAGE });
    } finally {
      if (gen === this.gen) this.loading = false;
    }
    if (gen !== this.gen) return false;
    // Live messages may have arrived while the page loaded.
    const live = this.items;
    this.items = [];
    this.seqs.clear();
    for (const m of page) this.pushSorted(m);
    for (const m of live) this.pushSorted(m);
    this.atStart = page.length < PAGE;
    this.wHi = this.items.length;
    this.wLo = Math.max(0, this.wHi - PAGE);
    const frag = document.createDocumentFragment();
    for (let i = this.wLo; i < this.wHi; i++) frag.appendChild(this.node(this.items[i]));
    this.o.list.replaceChildren(frag);
    this.scrollToBottom();
    return true;
  }

  node(m) {
    let el = this.nodes.get(m.seq);
    if (!el) {
      el = this.o.render(m);
      el.dataset.seq = String(m.seq);
      this.nodes.set(m.seq, el);
    }
    return el;
  }

  dropNode(m) {
    const el = this.nodes.get(m.seq);
    if (el) {
      el.remove();
      this.nodes.delete(m.seq);
    }
  }

  pushSorted(m) {
    if (this.seqs.has(m.seq)) return -1;
    this.seqs.add(m.seq);
    let i = this.items.length;
    while (i > 0 && this.items[i - 1].seq > m.seq) i--;
    this.items.splice(i, 0, m);
    return i;
  }

  has(seq) {
    return this.seqs.has(seq);
  }

  get stuck() {
    const s = this.o.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 48;
  }

  /**
   * A message arrived (live, replayed, or our own acknowledged one). Repeats are ignored;
   * a message already shown is replaced (a provisional one by the server's copy).
   */
  add(m) {
    if (this.seqs.has(m.seq)) {
      const idx = this.items.findIndex((x) => x.seq === m.seq);
      if (idx >= 0 && m.id && this.items[idx].provisional) {
        this.items[idx] = m;
        const old = this.nodes.get(m.seq);
        if (old) {
          this.nodes.delete(m.seq);
          old.replaceWith(this.node(m));
        }
      }
      return false;
    }
    const wasStuck = this.stuck;
    const windowAtEnd = this.wHi === this.items.length;
    const i = this.pushSorted(m);
    if (i < this.wLo) {
      this.wLo++;
      this.wHi++;
    } else if (i <= this.wHi && (i < this.wHi || windowAtEnd)) {
      const next = this.items[i + 1];
      const nextNode = next ? this.nodes.get(next.seq) : null;
      this.o.list.insertBefore(this.node(m), nextNode || null);
      this.wHi++;
    }
    if (wasStuck && windowAtEnd) {
      this.trimTop();
      this.scrollToBottom();
    } else if (i === this.items.length - 1) {
      this.unseen++;
      this.o.onUnseen?.(this.unseen);
    }
    return true;
  }

  scrollToBottom() {
    const s = this.o.scroller;
    s.scrollTop = s.scrollHeight;
    if (this.wHi === this.items.length) this.seen();
  }

  seen() {
    if (this.unseen) {
      this.unseen = 0;
      this.o.onUnseen?.(0);
    }
    if (this.items.length) this.o.onSeen?.(this.lastSeq);
  }

  /** Show the newest messages again (the "new messages" button, the `g` shortcut). */
  jumpToLatest() {
    if (this.wHi < this.items.length || this.wLo < this.items.length - PAGE) {
      for (const el of this.nodes.values()) el.remove();
      this.nodes.clear();
      this.wHi = this.items.length;
      this.wLo = Math.max(0, this.wHi - PAGE);
      const frag = document.createDocumentFragment();
      for (let i = this.wLo; i < this.wHi; i++) frag.appendChild(this.node(this.items[i]));
      this.o.list.replaceChildren(frag);
    }
    this.scrollToBottom();
  }

  onScroll() {
    const s = this.o.scroller;
    if (s.scrollTop < EDGE_PX) this.extendUp();
    else if (s.scrollHeight - s.scrollTop - s.clientHeight < EDGE_PX) this.extendDown();
    if (this.stuck && this.wHi === this.items.length) this.seen();
  }

  /** Keep the view still while content above it changes height. */
  keepView(fn) {
    const s = this.o.scroller;
    const before = s.scrollHeight;
    const top = s.scrollTop;
    fn();
    s.scrollTop = top + (s.scrollHeight - before);
  }

  async extendUp() {
    if (this.loading) return;
    if (this.wLo > 0) {
      const lo = Math.max(0, this.wLo - STEP);
      this.keepView(() => {
        const frag = document.createDocumentFragment();
        for (let i = lo; i < this.wLo; i++) frag.appendChild(this.node(this.items[i]));
        this.o.list.insertBefore(frag, this.o.list.firstChild);
      });
      this.wLo = lo;
      this.trimBottom();
      return;
    }
    if (this.atStart || !this.items.length) return;
    this.loading = true;
    const gen = this.gen;
    let page = [];
    try {
      page = await this.o.fetchPage({ before_seq: this.items[0].seq, limit: PAGE });
    } catch {
      page = null;
    } finally {
      if (gen === this.gen) this.loading = false;
    }
    if (gen !== this.gen || page === null) return;
    this.atStart = page.length < PAGE;
    let added = 0;
    for (const m of page) {
      if (!this.seqs.has(m.seq)) {
        this.seqs.add(m.seq);
        added++;
      }
    }
    const fresh = page.filter((m) => !this.items.length || m.seq < this.items[0].seq);
    this.items = fresh.concat(this.items);
    this.wLo += fresh.length;
    this.wHi += fresh.length;
    if (added) this.extendUp();
  }

  extendDown() {
    if (this.wHi >= this.items.length) return;
    const hi = Math.min(this.items.length, this.wHi + STEP);
    const frag = document.createDocumentFragment();
    for (let i = this.wHi; i < hi; i++) frag.appendChild(this.node(this.items[i]));
    this.o.list.appendChild(frag);
    this.wHi = hi;
    this.trimTop();
  }

  trimBottom() {
    while (this.wHi - this.wLo > MAX_NODES) {
      const stop = Math.max(this.wLo + MAX_NODES, this.wHi - STEP);
      for (let i = stop; i < this.wHi; i++) this.dropNode(this.items[i]);
      this.wHi = stop;
    }
  }

  trimTop() {
    if (this.wHi - this.wLo <= MAX_NODES) return;
    const start = Math.min(this.wHi - MAX_NODES, this.wLo + STEP);
    this.keepView(() => {
      for (let i = this.wLo; i < start; i++) this.dropNode(this.items[i]);
    });
    this.wLo = start;
  }

  /** Scroll back through history until `seq` is in the document (tests, links). */
  async reveal(seq) {
    for (let guard = 0; guard < 500 && !this.nodes.has(seq); guard++) {
      if (this.wLo === 0 && this.atStart) break;
      this.o.scroller.scrollTop = 0;
      await this.extendUp();
      await new Promise((r) => requestAnimationFrame(r));
    }
    this.nodes.get(seq)?.scrollIntoView({ block: 'center' });
    return this.nodes.has(seq);
  }
}
