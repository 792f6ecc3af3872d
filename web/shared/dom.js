// DOM helpers. Everything that comes from users or the network is put into the page as
// text (textContent, attributes); nothing here accepts HTML except `setTrustedHtml`,
// which is only ever given an article's `body_html` as sanitised by the server.

/**
 * Create an element. `attrs`: `class`, `text` (textContent), `on<event>` listeners,
 * `hidden`/`disabled`/`checked`/`value` properties, anything else as an attribute.
 * Children: nodes, strings (as text), arrays, or null/false (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'text') el.textContent = String(v);
    else if (k === 'class') el.className = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'hidden' || k === 'disabled' || k === 'checked' || k === 'value' || k === 'selected') el[k] = v;
    else if (k === 'style' || k === 'innerHTML' || k === 'srcdoc') throw new Error(`h(): ${k} is not allowed`);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function $(sel, root = document) {
  return root.querySelector(sel);
}

export function $$(sel, root = document) {
  return Array.from(root.querySelectorAll(sel));
}

const ENTITIES = { '&amp;': '&', '&lt;': '<', '&gt;': '>', '&quot;': '"', '&#39;': "'", '&#x27;': "'" };

function decodeEntities(s) {
  return s.replace(/&(amp|lt|gt|quot|#39|#x27);/g, (m) => ENTITIES[m] ?? m);
}

/**
 * Render a search snippet. The server escapes the text and wraps matches in
 * `<mark>…</mark>`; this splits on exactly those two tags and puts every other piece in
 * as text, so nothing else in a snippet can ever become markup.
 */
export function renderSnippet(el, snippet) {
  clear(el);
  const parts = String(snippet || '').split(/(<mark>|<\/mark>)/);
  let inMark = false;
  for (const p of parts) {
    if (p === '<mark>') { inMark = true; continue; }
    if (p === '</mark>') { inMark = false; continue; }
    if (!p) continue;
    const text = decodeEntities(p);
    el.appendChild(inMark ? h('mark', { text }) : document.createTextNode(text));
  }
  return el;
}

/** Only for an article's `body_html`, which the server sanitised (no script, no handlers). */
export function setTrustedHtml(el, serverSanitisedHtml) {
  el.innerHTML = serverSanitisedHtml || '';
  // Links in articles open elsewhere without telling that site where the reader came from.
  for (const a of el.querySelectorAll('a[href]')) {
    a.setAttribute('rel', 'noopener noreferrer nofollow');
    a.setAttribute('target', '_blank');
  }
}

/** A UUID for `client_msg_id` (crypto.randomUUID needs a secure context; this does not). */
export function uuid() {
  if (globalThis.crypto?.randomUUID && globalThis.isSecureContext) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = Array.from(b, (v) => v.toString(16).padStart(2, '0')).join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

export function fmtTime(iso, lang) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const now = new Date();
  const sameDay = d.toDateString() === now.toDateString();
  const loc = lang === 'zh' ? 'zh-CN' : 'en-GB';
  return sameDay
    ? d.toLocaleTimeString(loc, { hour: '2-digit', minute: '2-digit' })
    : d.toLocaleString(loc, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

/** Put a message in a live region so screen readers announce it once. */
export function announce(region, text) {
  if (!region) return;
  region.textContent = '';
  // A fresh text node after a tick is announced even when the text repeats.
  setTimeout(() => { region.textContent = text; }, 30);
}

/** Show a modal <dialog>, give focus back to what had it when it closes. */
export function openDialog(dialog, focusEl) {
  const back = document.activeElement;
  dialog.addEventListener('close', () => {
    if (back && document.contains(back) && typeof back.focus === 'function') back.focus();
  }, { once: true });
  dialog.showModal();
  if (focusEl) focusEl.focus();
}

/** True when a key press belongs to a text field rather than to the page's shortcuts. */
export function typingInField(ev) {
  const t = ev.target;
  if (!(t instanceof Element)) return false;
  if (t.isContentEditable) return true;
  const tag = t.tagName;
  if (tag === 'TEXTAREA' || tag === 'SELECT') return true;
  if (tag === 'INPUT') {
    const type = (t.getAttribute('type') || 'text').toLowerCase();
    return !['checkbox', 'radio', 'button', 'submit', 'reset', 'file'].includes(type);
  }
  return false;
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
