// The citizen web chat: a guest session for a country, one `web` conversation, text and
// images, SOS with a confirm step, location sharing, safety alerts, guide search. What
// the citizen writes is kept on the device until the server has stored it.

import { Api, ApiError, ImageCache, qs } from '/shared/api.js';
import { LiveSocket } from '/shared/socket.js';
import { Outbox } from '/shared/outbox.js';
import { MessageList } from '/shared/msglist.js';
import { initLang, onLangChange, t, getLang, locale, countryName } from '/shared/i18n.js';
import { h, $, uuid, announce, openDialog, renderSnippet, setTrustedHtml, debounce } from '/shared/dom.js';
import { renderMessage, renderPending, Viewer } from '/shared/chatview.js';
import { COUNTRIES } from '/chat/countries.js';

const STORE = 'lingshi.chat.v1';
const params = new URLSearchParams(location.search);

const S = {
  session: null,
  conv: null,
  alerts: new Map(),
  locationSupported: true,
  staffTyping: 0,
};

let api;
let socket;
let outbox;
let list;
let images;
let viewer;


function loadSession() {
  try {
    const v = JSON.parse(localStorage.getItem(STORE) || 'null');
    return v && v.token ? v : null;
  } catch {
    return null;
  }
}

function saveSession() {
  try { localStorage.setItem(STORE, JSON.stringify(S.session)); } catch { /* private mode */ }
}

function fillCountries() {
  const sel = $('#country');
  const chosen = sel.value || params.get('country')?.toUpperCase() || S.session?.country || '';
  const coll = new Intl.Collator(locale());
  const opts = COUNTRIES.map((c) => ({ c, n: countryName(c) })).sort((a, b) => coll.compare(a.n, b.n));
  sel.replaceChildren(
    h('option', { value: '', text: t('start.country_pick') }),
    ...opts.map(({ c, n }) => h('option', { value: c, text: n, selected: c === chosen })),
  );
}

async function boot() {
  S.session = loadSession();
  if (S.session) {
    enterChat();
  } else {
    $('#start').hidden = false;
    $('#chat').hidden = true;
  }
}

async function startSession(ev) {
  ev.preventDefault();
  const err = $('#start-error');
  err.textContent = '';
  const country = $('#country').value;
  if (!country) {
    err.textContent = t('start.need_country');
    $('#country').focus();
    return;
  }
  const btn = ev.target.querySelector('button[type=submit]');
  btn.disabled = true;
  try {
    const anon = new Api();
    const body = { locale: locale(), country };
    const name = $('#name').value.trim();
    if (name) body.display_name = name;
    const r = await anon.post('/v1/citizen/sessions', body);
    S.session = { token: r.token, citizen: r.citizen, country };
    const conv = await anon.post('/v1/conversations', { channel: 'web' }, { token: r.token });
    S.session.conversation_id = conv.id;
    saveSession();
    await enterChat(conv);
  } catch (e) {
    err.textContent = errorText(e);
  } finally {
    btn.disabled = false;
  }
}

async function enterChat(knownConv) {
  api = new Api({ token: () => S.session?.token, onUnauthorized: forget });
  images = new ImageCache(api, 150);
  viewer = new Viewer($('#viewer'), images);
  outbox = new Outbox(`lingshi.chat.outbox.${S.session.citizen?.id || 'guest'}`);
  outbox.onChange(renderPendingList);
  $('#start').hidden = true;
  $('#chat').hidden = false;
  setupList();
  let conv = knownConv;
  try {
    if (!conv) conv = await api.get(`/v1/conversations/${encodeURIComponent(S.session.conversation_id)}`);
  } catch (e) {
    if (e instanceof ApiError && (e.status === 403 || e.status === 404)) {
      conv = await api.post('/v1/conversations', { channel: 'web' });
      S.session.conversation_id = conv.id;
      saveSession();
    } else if (e instanceof ApiError && e.status === 401) {
      return;
    } else {
      // Offline: show what we have and let the socket catch up.
      conv = { id: S.session.conversation_id, last_seq: undefined };
    }
  }
  S.conv = conv;
  renderPendingList();
  // History first, so that the socket resumes after it rather than replaying it all.
  await list.open(conv.last_seq).catch(() => {});
  socket = new LiveSocket({
    token: () => S.session.token,
    resume: () => ({ [S.conv.id]: list.lastSeq }),
    onWelcome,
    onFrame,
    onState: connState,
  });
  socket.start();
  loadAlerts();
  $('#text').focus();
}

function forget() {
  socket?.stop();
  try { localStorage.removeItem(STORE); } catch { /* ignore */ }
  location.reload();
}

function connState(state) {
  const el = $('#conn');
  el.dataset.state = state;
  el.textContent = t(`conn.${state}`);
  if (state === 'unauthorized') forget();
}

function setupList() {
  list = new MessageList({
    scroller: $('#scroller'),
    list: $('#messages'),
    fetchPage: async ({ before_seq, limit }) => {
      const r = await api.get(`/v1/conversations/${encodeURIComponent(S.conv.id)}/messages${qs({ before_seq, limit })}`);
      const msgs = r.messages || [];
      $('#history-start').hidden = msgs.length >= limit || (!msgs.length && !list.lastSeq);
      $('#welcome-note').hidden = msgs.length > 0 || list.lastSeq > 0;
      return msgs;
    },
    render: (m) => renderMessage(m, { me: S.session.citizen, staff: false, images, viewer, lang: getLang() }),
    onSeen: (seq) => {
      if (document.visibilityState === 'visible' && seq > (S.readSeq || 0)) {
        S.readSeq = seq;
        socket?.send({ type: 'read', conversation_id: S.conv.id, seq });
      }
    },
    onUnseen: (n) => {
      const b = $('#jump');
      b.hidden = n === 0;
      b.textContent = t('conv.new_below', { n });
    },
  });
}

// ---------------------------------------------------------------- frames

function onWelcome(frame) {
  const mine = (frame.conversations || []).find((c) => c.id === S.conv.id);
  if (mine) S.conv = { ...S.conv, ...mine };
  outbox.flush(socket);
}

function onFrame(f) {
  switch (f.type) {
    case 'message':
      if (f.message?.conversation_id === S.conv.id) onMessage(f.message);
      break;
    case 'ack': onAck(f); break;
    case 'error':
      if (f.client_msg_id && outbox.handleError(f, socket)) renderPendingList();
      break;
    case 'conversation':
      if (f.conversation?.id === S.conv.id) S.conv = { ...S.conv, ...f.conversation };
      break;
    case 'typing':
      if (f.conversation_id === S.conv.id && f.user?.kind !== 'citizen') {
        S.staffTyping = f.active ? Date.now() + 6000 : 0;
        renderTyping();
      }
      break;
    case 'alert': onAlert(f.article); break;
    case 'sos_ack': showGuidance(f.guidance); break;
    default: break;
  }
}

function onMessage(m) {
  const added = list.add(m);
  $('#welcome-note').hidden = true;
  if (added && m.sender?.kind !== 'citizen') {
    S.staffTyping = 0;
    renderTyping();
    announce($('#announcer'), t('announce.reply', {
      name: m.sender?.kind === 'system' ? t('msg.system') : (m.sender?.display_name || t('msg.staff')),
      text: (m.body || t('msg.image')).slice(0, 200),
    }));
  }
}

function onAck(f) {
  const item = outbox.get(f.client_msg_id);
  outbox.remove(f.client_msg_id);
  if (item && f.conversation_id === S.conv.id && !list.has(f.seq)) {
    list.add({
      id: f.message_id, conversation_id: f.conversation_id, seq: f.seq, provisional: true,
      client_msg_id: f.client_msg_id, kind: item.kind, body: item.body || '',
      attachments: item.attachments || [], created_at: f.created_at,
      sender: { kind: 'citizen', id: S.session.citizen?.id, display_name: S.session.citizen?.display_name },
    });
    $('#welcome-note').hidden = true;
  }
}

setInterval(renderTyping, 2000);
function renderTyping() {
  $('#typing').textContent = S.staffTyping > Date.now() ? t('chat.staff_typing') : '';
}

function renderPendingList() {
  if (!S.conv) return;
  const wasStuck = list?.stuck;
  const items = outbox.items.filter((i) => i.conversation_id === S.conv.id);
  $('#pending').replaceChildren(...items.map((i) => renderPending(i, {
    retry: () => { outbox.retry(i.client_msg_id); outbox.flush(socket); },
    discard: () => outbox.remove(i.client_msg_id),
  })));
  if (items.length) $('#welcome-note').hidden = true;
  if (wasStuck || items.length) $('#scroller').scrollTop = $('#scroller').scrollHeight;
}

// ---------------------------------------------------------------- sending

function send(ev) {
  ev?.preventDefault();
  const ta = $('#text');
  const body = ta.value.trim();
  if (!body) return;
  outbox.add({ client_msg_id: uuid(), conversation_id: S.conv.id, kind: 'text', body });
  ta.value = '';
  stopTyping();
  if (socket) outbox.flush(socket);
}

async function sendImage(file) {
  announce($('#announcer'), t('reply.uploading'));
  try {
    const att = await api.upload(file);
    const caption = $('#text').value.trim();
    outbox.add({
      client_msg_id: uuid(), conversation_id: S.conv.id, kind: 'image', body: caption,
      attachment_ids: [att.id], attachments: [att],
    });
    $('#text').value = '';
    outbox.flush(socket);
  } catch (e) {
    toast(e instanceof ApiError && e.status === 413 ? t('error.too_large')
      : e instanceof ApiError && e.status === 415 ? t('error.not_image') : errorText(e));
  }
}

let typingAt = 0;
let typingStop = null;
function onInput() {
  const now = Date.now();
  if (now - typingAt > 3000) {
    socket?.send({ type: 'typing', conversation_id: S.conv.id, active: true });
    typingAt = now;
  }
  clearTimeout(typingStop);
  typingStop = setTimeout(stopTyping, 4000);
}

function stopTyping() {
  clearTimeout(typingStop);
  if (typingAt) socket?.send({ type: 'typing', conversation_id: S.conv.id, active: false });
  typingAt = 0;
}

// ---------------------------------------------------------------- SOS and location

function position(timeoutMs) {
  return new Promise((resolve) => {
    if (!navigator.geolocation) { resolve(null); return; }
    navigator.geolocation.getCurrentPosition(
      (p) => resolve({ lat: p.coords.latitude, lon: p.coords.longitude, accuracy_m: Math.round(p.coords.accuracy) }),
      () => resolve(null),
      { enableHighAccuracy: true, timeout: timeoutMs, maximumAge: 60_000 },
    );
  });
}

function guidanceText(g) {
  if (!g) return '';
  if (typeof g === 'string') return g;
  if (Array.isArray(g)) return g.map(guidanceText).join('\n');
  if (typeof g === 'object') return g.text || g.message || Object.values(g).filter((v) => typeof v === 'string').join('\n');
  return String(g);
}

function showGuidance(g) {
  const text = guidanceText(g) || t('sos.local_guidance');
  const box = $('#guidance');
  $('#guidance-text').textContent = text;
  box.hidden = false;
  box.setAttribute('role', 'alert');
  box.scrollIntoView({ block: 'start' });
  box.tabIndex = -1;
  box.focus();
}

async function sendSos() {
  const go = $('#sos-go');
  const err = $('#sos-error');
  err.textContent = '';
  go.disabled = true;
  go.textContent = t('sos.sending');
  const note = $('#sos-note').value.trim();
  const loc = $('#sos-loc').checked ? await position(8000) : null;
  const body = { conversation_id: S.conv.id };
  if (note) body.note = note;
  if (loc) body.location = loc;
  try {
    const r = await api.post('/v1/emergency', body);
    $('#sos-dialog').close();
    $('#sos-note').value = '';
    showGuidance(r?.guidance);
  } catch (e) {
    // Whatever went wrong, the alert must still reach someone: write it into the
    // conversation (kept and retried until stored) and show the hotline at once.
    const where = loc ? ` (${loc.lat.toFixed(5)}, ${loc.lon.toFixed(5)} ±${loc.accuracy_m} m)` : '';
    outbox.add({
      client_msg_id: uuid(), conversation_id: S.conv.id, kind: 'text',
      body: `${t('sos.fallback_message')}${where}${note ? `\n${note}` : ''}`,
    });
    if (socket) outbox.flush(socket);
    $('#sos-dialog').close();
    showGuidance(null);
    if (!(e instanceof ApiError && e.missing)) toast(t('sos.queued'));
  } finally {
    go.disabled = false;
    go.textContent = t('sos.send');
  }
}

async function shareLocation() {
  const btn = $('#locate');
  btn.disabled = true;
  const loc = await position(10_000);
  btn.disabled = false;
  if (!loc) {
    toast(t('loc.denied'));
    return;
  }
  try {
    await api.put('/v1/citizen/location', loc);
    announce($('#announcer'), t('loc.shared'));
    loadAlerts(loc);
  } catch (e) {
    if (e instanceof ApiError && e.missing) {
      S.locationSupported = false;
      btn.hidden = true;
      toast(t('loc.unavailable'));
    } else {
      toast(errorText(e));
    }
  }
}

// ---------------------------------------------------------------- alerts

async function loadAlerts(point) {
  const q = { country: S.session?.country, locale: locale() };
  try {
    const r = await api.get(`/v1/alerts${qs(q)}`);
    S.alerts.clear();
    for (const a of r.alerts || []) S.alerts.set(a.slug || a.id, a);
    if (point) {
      const near = await api.get(`/v1/alerts${qs({ lat: point.lat, lon: point.lon, locale: locale() })}`);
      for (const a of near.alerts || []) S.alerts.set(a.slug || a.id, a);
    }
  } catch { /* keep what we have */ }
  renderAlerts();
}

function onAlert(article) {
  if (!article) return;
  const key = article.slug || article.id;
  const isNew = !S.alerts.has(key);
  if (article.status && article.status !== 'published') S.alerts.delete(key);
  else S.alerts.set(key, article);
  renderAlerts();
  if (isNew) toast(t('alerts.new', { title: article.title || '' }));
}

const SEVERITY = { critical: 4, high: 3, medium: 2, low: 1 };

function renderAlerts() {
  const items = [...S.alerts.values()]
    .filter((a) => !a.expires_at || new Date(a.expires_at) > new Date())
    .sort((a, b) => (SEVERITY[b.severity] || 0) - (SEVERITY[a.severity] || 0));
  $('#alerts').hidden = items.length === 0;
  $('#alerts-list').replaceChildren(...items.map((a, i) => {
    const body = h('div', { class: 'kb-article' });
    setTrustedHtml(body, a.body_html);
    const hid = `alert-${i}`;
    return h('li', { class: `alert sev-${a.severity || 'low'}` },
      h('article', { 'aria-labelledby': hid },
        h('h3', { id: hid }, a.severity ? h('span', { class: `badge sev-${a.severity}`, text: t(`sev.${a.severity}`) }) : null, ' ', a.title || ''),
        a.summary ? h('p', { text: a.summary }) : null,
        h('details', {}, h('summary', { text: t('alerts.more') }), body)));
  }));
}

// ---------------------------------------------------------------- guide search

async function search(ev) {
  ev?.preventDefault();
  const q = $('#search-q').value.trim();
  const status = $('#search-status');
  if (!q) {
    $('#search-list').replaceChildren();
    status.textContent = '';
    return;
  }
  try {
    const r = await api.get(`/v1/kb/search${qs({ q, locale: locale(), country: S.session?.country, limit: 8 })}`);
    const hits = r.hits || [];
    status.textContent = hits.length ? t('kb.results', { n: r.total ?? hits.length }) : t('search.none');
    $('#search-list').replaceChildren(...hits.map((hit) => {
      const snip = h('p', { class: 'snippet' });
      renderSnippet(snip, hit.snippet);
      return h('li', { class: 'hit' },
        h('button', { type: 'button', class: 'hit-open', onclick: () => openArticle(hit) }, hit.title || hit.slug),
        snip);
    }));
  } catch (e) {
    status.textContent = errorText(e);
  }
}

async function openArticle(hit) {
  const d = $('#article');
  $('#article-h').textContent = hit.title || '';
  const body = $('#article-body');
  body.replaceChildren(h('p', { class: 'muted', text: t('loading') }));
  openDialog(d, d.querySelector('button'));
  try {
    const a = await api.get(`/v1/kb/articles/${encodeURIComponent(hit.slug || hit.id)}${qs({ locale: hit.locale || locale() })}`);
    $('#article-h').textContent = a.title || '';
    setTrustedHtml(body, a.body_html);
  } catch (e) {
    body.replaceChildren(h('p', { class: 'error', text: errorText(e) }));
  }
}

// ---------------------------------------------------------------- wiring

function wire() {
  $('#start-form').addEventListener('submit', startSession);
  $('#composer').addEventListener('submit', send);
  $('#text').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing && !matchMedia('(pointer: coarse)').matches) {
      ev.preventDefault();
      send();
    }
  });
  $('#text').addEventListener('input', onInput);
  $('#image-input').addEventListener('change', (ev) => {
    const f = ev.target.files?.[0];
    ev.target.value = '';
    if (f) sendImage(f);
  });
  $('#jump').addEventListener('click', () => list.jumpToLatest());
  $('#sos').addEventListener('click', () => {
    $('#sos-error').textContent = '';
    openDialog($('#sos-dialog'), $('#sos-dialog button[value=cancel]'));
  });
  $('#sos-go').addEventListener('click', sendSos);
  $('#locate').addEventListener('click', shareLocation);
  $('#search-toggle').addEventListener('click', () => {
    const panel = $('#search-panel');
    panel.hidden = !panel.hidden;
    $('#search-toggle').setAttribute('aria-expanded', String(!panel.hidden));
    if (!panel.hidden) $('#search-q').focus();
  });
  $('#search-form').addEventListener('submit', search);
  $('#search-q').addEventListener('input', debounce(() => search(), 350));
  $('#end').addEventListener('click', async () => {
    if (outbox?.items.length) {
      toast(t('chat.still_sending'));
      return;
    }
    try { await api.del('/v1/citizen/sessions', undefined, { noAuthHook: true }); } catch { /* forget anyway */ }
    forget();
  });
}

let toastTimer = null;
function toast(text) {
  const el = $('#alerter');
  el.textContent = '';
  clearTimeout(toastTimer);
  setTimeout(() => { el.textContent = text; }, 30);
  toastTimer = setTimeout(() => { el.textContent = ''; }, 12_000);
}

function errorText(e) {
  if (e instanceof ApiError) {
    if (e.status === 0) return t('error.network');
    if (e.status === 429) return t('error.rate_limited');
    return e.message || t('error.generic');
  }
  return String(e?.message || e || t('error.generic'));
}

// Last, so that every module-level binding above exists before the page starts.
if (params.get('embed') === '1') document.body.classList.add('embed');
initLang();
fillCountries();
onLangChange(() => {
  fillCountries();
  connState(socket?.state || 'stopped');
  if (S.session) {
    loadAlerts();
    if (S.conv) list.open(list.lastSeq);
  }
});
wire();
boot();
