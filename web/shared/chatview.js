// How a message looks, in the console and in the citizen chat. Bodies, names and
// captions are text; images come through the token-carrying image cache.

import { h, fmtTime, openDialog } from './dom.js';
import { t } from './i18n.js';

const MAX_THUMB = 240;

const lazy = typeof IntersectionObserver === 'function'
  ? new IntersectionObserver((entries) => {
    for (const e of entries) {
      if (!e.isIntersecting) continue;
      lazy.unobserve(e.target);
      e.target.dispatchEvent(new Event('lingshi:load'));
    }
  }, { rootMargin: '400px 0px' })
  : null;

function thumbSize(att) {
  const w = Number(att.width) || 0;
  const hgt = Number(att.height) || 0;
  if (!w || !hgt) return [MAX_THUMB, Math.round(MAX_THUMB * 0.75)];
  const k = Math.min(1, MAX_THUMB / Math.max(w, hgt));
  return [Math.max(24, Math.round(w * k)), Math.max(24, Math.round(hgt * k))];
}

function senderName(m, opts) {
  const s = m.sender || {};
  if (opts.staff) {
    if (s.kind === 'agent' && s.id === opts.me?.id) return t('msg.you');
    if (s.kind === 'system') return t('msg.system');
    return s.display_name || t(s.kind === 'citizen' ? 'citizen' : 'msg.staff');
  }
  if (s.kind === 'citizen') return t('msg.you');
  if (s.kind === 'system') return t('msg.system');
  if (s.kind === 'bot') return t('msg.bot');
  return s.display_name || t('msg.staff');
}

function isMine(m, opts) {
  const s = m.sender || {};
  return opts.staff ? s.kind === 'agent' && s.id === opts.me?.id : s.kind === 'citizen';
}

/** A thumbnail button that opens the image in the accessible viewer. */
export function thumb(att, who, opts) {
  const [w, hgt] = thumbSize(att);
  const alt = t('img.alt', { name: who, w: att.width || '?', h: att.height || '?' });
  const img = h('img', { alt, width: w, height: hgt, class: 'thumb-img', decoding: 'async' });
  const load = () => {
    opts.images.get(att.thumb_url || att.url).then((u) => { img.src = u; }, () => {
      img.alt = t('img.failed', { name: who });
      img.classList.add('broken');
    });
  };
  if (lazy) {
    img.addEventListener('lingshi:load', load, { once: true });
    lazy.observe(img);
  } else load();
  return h('button', {
    type: 'button', class: 'thumb', 'aria-label': t('img.open', { name: who }),
    onclick: () => opts.viewer?.open(att, who),
  }, img);
}

function triageBadge(tr) {
  if (!tr || !tr.category) return null;
  const score = typeof tr.score === 'number' ? ` ${Math.round(tr.score * 100)}%` : '';
  const reasons = Array.isArray(tr.reasons) ? tr.reasons : [];
  const badge = h('span', { class: `badge triage-${tr.category}`, text: `${t(`triage.${tr.category}`)}${score}` });
  if (!reasons.length) return badge;
  return h('details', { class: 'triage' },
    h('summary', {}, badge, ' ', h('span', { class: 'sr-only', text: t('triage.why') })),
    h('ul', {}, ...reasons.map((r) => h('li', {
      text: [r.kind, r.matched ? `“${r.matched}”` : null, r.detail].filter(Boolean).join(' — '),
    }))));
}

/** One message as a list item. */
export function renderMessage(m, opts) {
  const who = senderName(m, opts);
  const kind = m.kind || 'text';
  const cls = ['msg', `from-${m.sender?.kind || 'system'}`, `kind-${kind}`];
  if (isMine(m, opts)) cls.push('mine');
  const meta = h('p', { class: 'meta' },
    h('span', { class: 'who', text: who }), ' ',
    h('time', { datetime: m.created_at || '', text: fmtTime(m.created_at, opts.lang) }),
    kind === 'note' ? [' ', h('span', { class: 'badge note', text: t('msg.note') })] : null,
    opts.staff && m.sender?.kind === 'citizen' ? [' ', triageBadge(m.triage)] : null);
  const parts = [meta];
  if (m.body) parts.push(h('p', { class: 'body', text: m.body }));
  const atts = Array.isArray(m.attachments) ? m.attachments : [];
  if (atts.length) parts.push(h('div', { class: 'atts' }, ...atts.map((a) => thumb(a, who, opts))));
  return h('li', { class: cls.join(' ') }, ...parts);
}

/** A message still on its way (or refused), with what the writer can do about it. */
export function renderPending(item, opts) {
  const failed = item.state === 'failed';
  return h('li', { class: `msg mine pending${failed ? ' failed' : ''}`, 'data-cmid': item.client_msg_id },
    h('p', { class: 'meta' },
      h('span', { class: 'who', text: t('msg.you') }), ' ',
      h('span', { class: 'state', text: failed ? t('msg.failed', { reason: item.error || '' }) : t('msg.sending') }),
      item.kind === 'note' ? [' ', h('span', { class: 'badge note', text: t('msg.note') })] : null),
    item.body ? h('p', { class: 'body', text: item.body }) : null,
    item.attachment_ids?.length ? h('p', { class: 'body muted', text: t('msg.image') }) : null,
    failed ? h('p', { class: 'actions' },
      h('button', { type: 'button', onclick: opts.retry }, t('msg.retry')), ' ',
      h('button', { type: 'button', onclick: opts.discard }, t('msg.discard'))) : null);
}

/** The image viewer: a modal dialog (focus kept inside, Esc closes, focus returns). */
export class Viewer {
  constructor(dialog, images) {
    this.d = dialog;
    this.images = images;
    this.img = dialog.querySelector('img');
    this.title = dialog.querySelector('h2');
  }

  async open(att, who) {
    this.title.textContent = t('img.viewer', { name: who });
    this.img.alt = t('img.alt', { name: who, w: att.width || '?', h: att.height || '?' });
    this.img.removeAttribute('src');
    if (att.width && att.height) {
      this.img.width = att.width;
      this.img.height = att.height;
    }
    openDialog(this.d, this.d.querySelector('button'));
    try {
      this.img.src = await this.images.get(att.url);
    } catch {
      this.img.alt = t('img.failed', { name: who });
    }
  }
}

/** How well `q` matches a canned response: title matches first, then body, then loose. */
export function fuzzyScore(q, title, body) {
  const query = (q || '').trim().toLowerCase();
  if (!query) return 1;
  const ti = (title || '').toLowerCase();
  const bo = (body || '').toLowerCase();
  if (ti.startsWith(query)) return 300;
  if (ti.includes(query)) return 200;
  if (bo.includes(query)) return 100;
  let i = 0;
  let gaps = 0;
  for (const ch of ti) {
    if (ch === query[i]) i++;
    else if (i > 0) gaps++;
    if (i === query.length) return Math.max(1, 80 - gaps);
  }
  return 0;
}

export { fmtTime };
