// The agent console: the queue with its emergency lane, one conversation at a time with
// live updates, and everything an agent does to it, each with a keyboard shortcut.

import { Api, ApiError, ImageCache, qs } from '/shared/api.js';
import { LiveSocket } from '/shared/socket.js';
import { Outbox } from '/shared/outbox.js';
import { MessageList } from '/shared/msglist.js';
import { initLang, onLangChange, t, getLang, countryName } from '/shared/i18n.js';
import {
  h, $, clear, uuid, fmtTime, announce, openDialog, typingInField, renderSnippet, debounce,
} from '/shared/dom.js';
import { loadSession, signIn, signOut, clearSession } from '/shared/staff.js';
import { renderMessage, renderPending, Viewer, fuzzyScore } from '/shared/chatview.js';

const RANK = { emergency: 3, urgent: 2, normal: 1 };
const SHOW_STEP = 100;

const S = {
  token: null,
  me: null,
  convs: new Map(),
  view: 'active',
  unreadOnly: false,
  cursors: [],
  shown: SHOW_STEP,
  current: null,
  agents: new Map(),
  escalations: new Map(),
  escalationsSupported: true,
  suggestions: new Map(),
  viewers: new Map(),
  typers: new Map(),
  selected: new Set(),
  canned: null,
  cannedFor: null,
  rows: new Map(),
  readLocal: {},
  alarmTimer: null,
  knownEmergencies: new Set(),
};

let api;
let socket;
let outbox;
let list;
let images;
let viewer;
let audio = null;

// ---------------------------------------------------------------- start


async function start() {
  const saved = loadSession();
  const session = saved || await signIn($('#signin'));
  S.token = session.token;
  S.me = session.agent;
  api = new Api({ token: () => S.token, onUnauthorized: expired });
  images = new ImageCache(api);
  viewer = new Viewer($('#viewer'), images);
  try {
    S.readLocal = JSON.parse(localStorage.getItem(readKey()) || '{}') || {};
  } catch {
    S.readLocal = {};
  }
  outbox = new Outbox(`lingshi.console.outbox.${S.me.id}`);
  outbox.onChange(renderPendingList);
  $('#app').hidden = false;
  $('#me').textContent = S.me.name || S.me.email || '';
  setupList();
  wire();
  renderHelp();
  socket = new LiveSocket({
    token: () => S.token,
    resume: () => (S.current && list.lastSeq ? { [S.current]: list.lastSeq } : {}),
    onWelcome,
    onFrame,
    onState: connState,
  });
  socket.start();
  await Promise.allSettled([loadQueue(true), loadEmergencies(), loadEscalations(), loadAgents()]);
  const m = /^#c=([0-9a-f-]{36})$/.exec(location.hash);
  if (m) openConv(m[1]);
}

function readKey() {
  return `lingshi.read.${S.me.id}`;
}

function expired() {
  socket?.stop();
  clearSession();
  location.reload();
}

function connState(state) {
  const el = $('#conn');
  el.dataset.state = state;
  el.textContent = t(`conn.${state}`);
  if (state === 'unauthorized') expired();
}

// ---------------------------------------------------------------- socket frames

function onWelcome(frame) {
  if (frame.user) {
    S.me = { ...S.me, ...frame.user, name: frame.user.name || frame.user.display_name || S.me.name };
  }
  for (const c of frame.conversations || []) upsertConv(c);
  outbox.flush(socket);
  if (S.current) sendViewing(S.current, true);
  const p = $('#presence').value;
  if (p === 'away') socket.send({ type: 'presence', status: 'away' });
  // What happened while we were away: reload what the snapshot does not cover.
  loadEscalations();
  loadEmergencies();
  scheduleRender();
}

function onFrame(f) {
  switch (f.type) {
    case 'message': onMessage(f.message); break;
    case 'ack': onAck(f); break;
    case 'error':
      if (f.client_msg_id && outbox.handleError(f, socket)) renderPendingList();
      break;
    case 'conversation': onConversationEvent(f); break;
    case 'typing': onTyping(f); break;
    case 'viewing': onViewing(f); break;
    case 'read': break;
    case 'presence': onPresence(f); break;
    case 'suggestions': onSuggestions(f); break;
    case 'escalation': onEscalation(f.escalation); break;
    default: break;
  }
}

function onMessage(m) {
  let conv = S.convs.get(m.conversation_id);
  if (!conv) {
    fetchConv(m.conversation_id);
    return;
  }
  if (m.seq > (conv.last_seq || 0)) conv.last_seq = m.seq;
  conv.updated_at = m.created_at || conv.updated_at;
  const fromMe = m.sender?.kind === 'agent' && m.sender?.id === S.me.id;
  if (m.seq > conv._read) {
    if (fromMe) {
      if (conv._read >= m.seq - 1 || conv._unread === 0) setRead(conv, m.seq, false);
    } else {
      conv._unread += 1;
      if (m.sender?.kind === 'citizen') {
        if (conv.id !== S.current || document.hidden) ding(conv);
      }
    }
  }
  if (conv.id === S.current) {
    const added = list.add(m);
    if (added && !fromMe && m.sender?.kind !== 'system') {
      announce($('#announcer'), t('announce.message', { name: m.sender?.display_name || '', text: (m.body || t('msg.image')).slice(0, 140) }));
    }
    if (added && m.sender?.kind === 'citizen') clearTyper(conv.id, m.sender.id);
  }
  scheduleRender();
}

function onAck(f) {
  const item = outbox.get(f.client_msg_id);
  outbox.remove(f.client_msg_id);
  const conv = S.convs.get(f.conversation_id);
  if (conv) {
    if (f.seq > conv.last_seq) conv.last_seq = f.seq;
    if (conv._read >= f.seq - 1) setRead(conv, f.seq, false);
  }
  if (item && f.conversation_id === S.current && !list.has(f.seq)) {
    list.add({
      id: f.message_id, conversation_id: f.conversation_id, seq: f.seq, provisional: true,
      client_msg_id: f.client_msg_id, kind: item.kind, body: item.body || '',
      attachments: item.attachments || [], created_at: f.created_at,
      sender: { kind: 'agent', id: S.me.id, display_name: S.me.name },
    });
  }
  scheduleRender();
}

function onConversationEvent(f) {
  const c = f.conversation;
  if (!c) return;
  const before = S.convs.get(c.id);
  const wasEmergency = before?.priority === 'emergency';
  upsertConv(c);
  if (f.event === 'assigned' && before && before.assignee_id !== c.assignee_id && c.id === S.current) {
    if (c.assignee_id && c.assignee_id !== S.me.id) {
      announce($('#announcer'), t('announce.assigned_other', { name: agentName(c.assignee_id) }));
    }
  }
  if (c.priority === 'emergency' && !wasEmergency && c.status !== 'resolved') alarm(c);
  if (f.event === 'created') ding(c);
  if (c.id === S.current) renderHeader();
  scheduleRender();
}

function onTyping(f) {
  if (!f.user || f.user.id === S.me.id) return;
  let m = S.typers.get(f.conversation_id);
  if (!m) S.typers.set(f.conversation_id, (m = new Map()));
  if (f.active) m.set(f.user.id, { name: f.user.display_name || f.user.name || '', until: Date.now() + 6000 });
  else m.delete(f.user.id);
  if (f.conversation_id === S.current) renderPresenceLine();
}

function clearTyper(convId, userId) {
  S.typers.get(convId)?.delete(userId);
  if (convId === S.current) renderPresenceLine();
}

function onViewing(f) {
  if (!f.user || f.user.id === S.me.id) return;
  let m = S.viewers.get(f.conversation_id);
  if (!m) S.viewers.set(f.conversation_id, (m = new Map()));
  if (f.active) m.set(f.user.id, { name: f.user.display_name || f.user.name || '', at: Date.now() });
  else m.delete(f.user.id);
  if (f.conversation_id === S.current) renderPresenceLine();
}

function onPresence(f) {
  if (!f.agent) return;
  const a = S.agents.get(f.agent.id) || { id: f.agent.id, name: f.agent.name };
  a.presence = f.status;
  S.agents.set(a.id, a);
  renderTeam();
}

function onSuggestions(f) {
  const hits = f.articles || f.hits || [];
  S.suggestions.set(f.conversation_id, hits);
  if (f.conversation_id === S.current) renderSuggestions();
}

function onEscalation(e) {
  if (!e) return;
  const isNew = !S.escalations.has(e.id);
  S.escalations.set(e.id, e);
  if (!S.convs.has(e.conversation_id)) fetchConv(e.conversation_id);
  if (isNew && openEscalation(e)) alarm(S.convs.get(e.conversation_id) || { id: e.conversation_id, citizen: e.citizen });
  renderLane();
  renderEscalations();
}

// ---------------------------------------------------------------- conversations state

function localRead(id) {
  return Number(S.readLocal[id] || 0);
}

function upsertConv(c) {
  const old = S.convs.get(c.id);
  const conv = Object.assign(old || {}, c);
  if (typeof c.read_seq === 'number') conv._read = Math.max(c.read_seq, localRead(c.id));
  else conv._read = Math.max(conv._read || 0, localRead(c.id));
  if (typeof c.unread === 'number') {
    conv._unread = conv._read > (c.read_seq ?? 0) ? Math.max(0, c.unread - (conv._read - (c.read_seq ?? 0))) : c.unread;
  } else {
    conv._unread = Math.max(0, (conv.last_seq || 0) - conv._read);
  }
  S.convs.set(c.id, conv);
  if (conv.priority === 'emergency' && conv.status !== 'resolved' && !S.knownEmergencies.has(conv.id)) {
    S.knownEmergencies.add(conv.id);
  }
  return conv;
}

async function fetchConv(id) {
  try {
    const c = await api.get(`/v1/conversations/${encodeURIComponent(id)}`);
    const conv = upsertConv(c);
    scheduleRender();
    return conv;
  } catch {
    return null;
  }
}

function setRead(conv, seq, tell = true) {
  if (seq <= conv._read) return;
  conv._read = seq;
  conv._unread = 0;
  S.readLocal[conv.id] = seq;
  const keys = Object.keys(S.readLocal);
  if (keys.length > 3000) for (const k of keys.slice(0, keys.length - 2000)) delete S.readLocal[k];
  try { localStorage.setItem(readKey(), JSON.stringify(S.readLocal)); } catch { /* full */ }
  if (tell) socket.send({ type: 'read', conversation_id: conv.id, seq });
  scheduleRender();
}

function agentName(id) {
  if (!id) return '';
  if (id === S.me.id) return S.me.name || t('me');
  return S.agents.get(id)?.name || t('someone');
}

function matchesView(c) {
  switch (S.view) {
    case 'active': return c.status === 'open' || (c.status === 'assigned' && c.assignee_id === S.me.id);
    case 'waiting': return c.status === 'open';
    case 'mine': return c.status === 'assigned' && c.assignee_id === S.me.id;
    case 'assigned': return c.status === 'assigned';
    case 'resolved': return c.status === 'resolved';
    default: return true;
  }
}

function queueCompare(a, b) {
  if (S.view === 'resolved') return (b.updated_at || '').localeCompare(a.updated_at || '');
  const r = (RANK[b.priority] || 0) - (RANK[a.priority] || 0);
  return r || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

const VIEWS = {
  active: [{ status: 'open', order: 'queue' }, { status: 'assigned', mine: true, order: 'queue' }],
  waiting: [{ status: 'open', order: 'queue' }],
  mine: [{ status: 'assigned', mine: true, order: 'queue' }],
  assigned: [{ status: 'assigned', order: 'queue' }],
  resolved: [{ status: 'resolved', order: 'recent' }],
};

/** Load the next page of the current view (each of its server queries pages on its own). */
async function loadQueue(reset) {
  const queries = VIEWS[S.view] || VIEWS.active;
  if (reset) {
    S.cursors = queries.map(() => undefined);
    S.shown = SHOW_STEP;
  }
  const view = S.view;
  await Promise.all(queries.map(async (params, i) => {
    if (S.cursors[i] === null) return;
    try {
      const r = await api.get(`/v1/conversations${qs({ ...params, limit: 50, cursor: S.cursors[i] })}`);
      if (view !== S.view) return;
      for (const c of r.conversations || []) upsertConv(c);
      S.cursors[i] = r.next_cursor || null;
    } catch (e) {
      if (e instanceof ApiError && e.status === 403) toast(t('error.forbidden_conversations'));
    }
  }));
  scheduleRender();
}

function moreOnServer() {
  return (S.cursors || []).some((c) => c !== null);
}

async function loadEmergencies() {
  for (const status of ['open', 'assigned']) {
    try {
      const r = await api.get(`/v1/conversations${qs({ priority: 'emergency', status, order: 'queue', limit: 200 })}`);
      for (const c of r.conversations || []) upsertConv(c);
    } catch { /* shown from the snapshot */ }
  }
  renderLane();
}

function openEscalation(e) {
  return e.state === 'pending' || e.state === 'delivered';
}

async function loadEscalations() {
  if (!S.escalationsSupported) return;
  try {
    const r = await api.get('/v1/escalations');
    for (const e of r.escalations || []) {
      S.escalations.set(e.id, e);
      if (openEscalation(e) && !S.convs.has(e.conversation_id)) fetchConv(e.conversation_id);
    }
  } catch (e) {
    if (e instanceof ApiError && (e.missing || e.status === 404)) {
      S.escalationsSupported = false;
      $('#esc-section').hidden = true;
    }
  }
  renderLane();
  renderEscalations();
}

async function loadAgents() {
  try {
    const r = await api.get('/v1/agents');
    for (const a of r.agents || []) {
      const old = S.agents.get(a.id);
      if (old && old.mission_ids) {
        old.mission_ids.add(a.mission_id);
        Object.assign(old, { ...a, mission_ids: old.mission_ids });
      } else {
        S.agents.set(a.id, { ...a, mission_ids: new Set([a.mission_id]) });
      }
    }
  } catch { /* editors and admins without missions */ }
  renderTeam();
  if (S.current) renderHeader();
}

// ---------------------------------------------------------------- rendering: queue and lane

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    renderQueue();
    renderLane();
    renderEscalations();
    if (S.current) renderHeader();
  });
}

function queueRow(c) {
  let li = S.rows.get(c.id);
  if (!li) {
    li = h('li', { class: 'qrow' });
    li.dataset.id = c.id;
    S.rows.set(c.id, li);
  }
  const emergency = c.priority === 'emergency';
  const name = c.citizen?.display_name || t('citizen');
  const unread = c._unread || 0;
  const current = c.id === S.current;
  const bits = [
    c.citizen?.country ? countryName(c.citizen.country) : null,
    t(`channel.${c.channel}`),
    c.assignee_id ? t('queue.with', { name: agentName(c.assignee_id) }) : null,
    fmtTime(c.updated_at, getLang()),
  ].filter(Boolean);
  const selectable = !emergency && c.status !== 'resolved';
  // Rebuild only what changed, so focus and screen-reader position stay put.
  const sig = JSON.stringify([name, c.priority, bits, unread, current, selectable, S.selected.has(c.id)]);
  if (li.dataset.sig === sig) return li;
  li.dataset.sig = sig;
  li.className = `qrow prio-${c.priority}${current ? ' current' : ''}${unread ? ' has-unread' : ''}`;
  const hadFocus = li.contains(document.activeElement) ? document.activeElement.className : null;
  const btn = h('button', {
    type: 'button', class: 'qbtn', 'aria-current': current ? 'true' : null,
    onclick: () => openConv(c.id),
  },
  h('span', { class: 'qname', text: name }), ' ',
  c.priority !== 'normal' ? h('span', { class: `badge prio-${c.priority}`, text: t(`priority.${c.priority}`) }) : null, ' ',
  h('span', { class: 'qmeta', text: bits.join(' · ') }), ' ',
  unread ? h('span', { class: 'unread', text: t('queue.unread', { n: unread }) }) : null);
  const children = [];
  if (selectable) {
    children.push(h('input', {
      type: 'checkbox', class: 'qsel', checked: S.selected.has(c.id),
      'aria-label': t('queue.select', { name }),
      onchange: (ev) => {
        if (ev.target.checked) S.selected.add(c.id); else S.selected.delete(c.id);
        $('#bulk-resolve').disabled = S.selected.size === 0;
      },
    }));
  }
  children.push(btn);
  li.replaceChildren(...children);
  if (hadFocus) li.querySelector(hadFocus.includes('qsel') ? '.qsel' : '.qbtn')?.focus();
  return li;
}

function visibleConvs() {
  return [...S.convs.values()]
    .filter((c) => matchesView(c) && (!S.unreadOnly || c._unread > 0))
    .sort(queueCompare);
}

function renderQueue() {
  const all = visibleConvs();
  const shown = all.slice(0, S.shown).map(queueRow);
  const ul = $('#queue-list');
  const same = ul.children.length === shown.length && shown.every((li, i) => ul.children[i] === li);
  if (!same) {
    const focused = ul.contains(document.activeElement) ? document.activeElement : null;
    ul.replaceChildren(...shown);
    if (focused && document.contains(focused)) focused.focus();
  }
  $('#queue-empty').hidden = all.length > 0;
  $('#queue-more').hidden = !(all.length > S.shown || moreOnServer());
  for (const id of [...S.selected]) {
    const c = S.convs.get(id);
    if (!c || c.status === 'resolved' || c.priority === 'emergency') S.selected.delete(id);
  }
  $('#bulk-resolve').disabled = S.selected.size === 0;
  const total = [...S.convs.values()].reduce((n, c) => n + (c.status !== 'resolved' && c._unread > 0 ? 1 : 0), 0);
  document.title = total ? `(${total}) ${t('console.title')}` : t('console.title');
}

function laneItems() {
  const items = new Map();
  for (const c of S.convs.values()) {
    if (c.priority === 'emergency' && c.status !== 'resolved') items.set(c.id, { conv: c, escalations: [] });
  }
  for (const e of S.escalations.values()) {
    if (!openEscalation(e)) continue;
    const it = items.get(e.conversation_id) || { conv: S.convs.get(e.conversation_id), escalations: [] };
    it.escalations.push(e);
    items.set(e.conversation_id, it);
  }
  return [...items.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1));
}

function renderLane() {
  const items = laneItems();
  const ul = $('#lane-list');
  ul.replaceChildren(...items.map(([id, it]) => {
    const c = it.conv;
    const name = c?.citizen?.display_name || it.escalations[0]?.citizen?.display_name || t('citizen');
    const why = it.escalations.length
      ? it.escalations.map((e) => t(`esc.reason.${e.reason}`)).join(', ')
      : t('lane.priority');
    const where = c?.citizen?.country || it.escalations[0]?.citizen?.country;
    const label = [name, where ? countryName(where) : null, why,
      c?.assignee_id ? t('queue.with', { name: agentName(c.assignee_id) }) : t('lane.unassigned')].filter(Boolean).join(' · ');
    return h('li', { class: `lane-item${id === S.current ? ' current' : ''}` },
      h('button', { type: 'button', class: 'lane-open', 'aria-current': id === S.current ? 'true' : null, onclick: () => openConv(id) },
        h('span', { class: 'lane-icon', 'aria-hidden': 'true', text: '!' }), ' ', label),
      ...it.escalations.map((e) => h('button', {
        type: 'button', class: 'danger', onclick: () => ackEscalation(e.id),
        'aria-label': t('esc.ack_named', { name }),
      }, t('esc.ack'))));
  }));
  $('#lane-empty').hidden = items.length > 0;
  $('#lane-count').textContent = items.length ? `(${items.length})` : '';
  $('#lane').classList.toggle('active', items.length > 0);
  keepAlarming(items);
}

function renderEscalations() {
  if (!S.escalationsSupported) return;
  const open = [...S.escalations.values()].filter(openEscalation);
  $('#esc-empty').hidden = open.length > 0;
  $('#esc-list').replaceChildren(...open.map((e) => {
    const name = e.citizen?.display_name || t('citizen');
    return h('li', {},
      h('span', { text: `${name} · ${t(`esc.reason.${e.reason}`)} · ${t(`esc.state.${e.state}`)} · ${fmtTime(e.created_at, getLang())}` }), ' ',
      h('button', { type: 'button', onclick: () => openConv(e.conversation_id), 'aria-label': t('esc.open_named', { name }) }, t('esc.open')), ' ',
      h('button', { type: 'button', class: 'danger', onclick: () => ackEscalation(e.id), 'aria-label': t('esc.ack_named', { name }) }, t('esc.ack')));
  }));
}

async function ackEscalation(id) {
  try {
    const r = await api.post(`/v1/escalations/${encodeURIComponent(id)}/ack`, {});
    const e = r?.escalation || r;
    if (e?.id) S.escalations.set(e.id, e);
    else {
      const old = S.escalations.get(id);
      if (old) old.state = 'acknowledged';
    }
    announce($('#announcer'), t('esc.acked'));
  } catch (e) {
    toast(errorText(e));
  }
  renderLane();
  renderEscalations();
}

function renderTeam() {
  const ul = $('#team-list');
  const agents = [...S.agents.values()].sort((a, b) => (a.name || '').localeCompare(b.name || ''));
  ul.replaceChildren(...agents.map((a) => h('li', { class: `presence-${a.presence || 'offline'}` },
    h('span', { class: 'dot', 'aria-hidden': 'true' }), ' ',
    h('span', { text: a.name || a.email || '' }), ' ',
    h('span', { class: 'muted', text: `(${t(`presence.${a.presence || 'offline'}`)})` }))));
  const sel = $('#transfer-agent');
  sel.replaceChildren(...agents.filter((a) => a.id !== S.me.id && (a.role === 'agent' || a.role === 'admin'))
    .map((a) => h('option', { value: a.id, text: `${a.name} (${t(`presence.${a.presence || 'offline'}`)})` })));
  const missions = new Set(S.me.missions || []);
  for (const a of S.agents.values()) for (const m of a.mission_ids || []) missions.add(m);
  $('#missions-list').replaceChildren(...[...missions].sort().map((m) => h('option', { value: m })));
}

// ---------------------------------------------------------------- sounds and notifications

function ensureAudio() {
  if (audio) return audio;
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (!Ctx) return null;
  try { audio = new Ctx(); } catch { audio = null; }
  return audio;
}

function beep(freqs, dur = 0.18) {
  const ctx = ensureAudio();
  if (!ctx) return;
  if (ctx.state === 'suspended') ctx.resume().catch(() => {});
  let at = ctx.currentTime + 0.02;
  for (const f of freqs) {
    const o = ctx.createOscillator();
    const g = ctx.createGain();
    o.frequency.value = f;
    o.type = 'square';
    g.gain.setValueAtTime(0.0001, at);
    g.gain.exponentialRampToValueAtTime(0.2, at + 0.02);
    g.gain.exponentialRampToValueAtTime(0.0001, at + dur);
    o.connect(g).connect(ctx.destination);
    o.start(at);
    o.stop(at + dur + 0.02);
    at += dur + 0.06;
  }
}

function ding(c) {
  if ($('#mute').checked) return;
  beep([880], 0.12);
  notify(t('notify.message', { name: c?.citizen?.display_name || t('citizen') }), c?.id, false);
}

/** Emergencies always sound and notify; the mute switch does not apply to them. */
function alarm(c) {
  beep([988, 740, 988, 740], 0.22);
  notify(t('notify.emergency', { name: c?.citizen?.display_name || t('citizen') }), c?.id, true);
  toast(t('announce.emergency', { name: c?.citizen?.display_name || t('citizen') }));
}

/** While an emergency waits for someone, the alarm repeats every minute. */
function keepAlarming(items) {
  const waiting = items.some(([, it]) => it.escalations.some((e) => e.state !== 'acknowledged') || !it.conv?.assignee_id);
  if (waiting && !S.alarmTimer) {
    S.alarmTimer = setInterval(() => beep([988, 740, 988, 740], 0.22), 60_000);
  } else if (!waiting && S.alarmTimer) {
    clearInterval(S.alarmTimer);
    S.alarmTimer = null;
  }
}

function notify(text, convId, urgent) {
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  if (!urgent && !document.hidden) return;
  try {
    const n = new Notification(t('console.title'), { body: text, tag: convId || undefined, requireInteraction: !!urgent });
    n.onclick = () => { window.focus(); if (convId) openConv(convId); n.close(); };
  } catch { /* some browsers only allow notifications from a service worker */ }
}

function renderNotifyButton() {
  const b = $('#notify-btn');
  if (!('Notification' in window)) { b.hidden = true; return; }
  const p = Notification.permission;
  b.textContent = p === 'granted' ? t('notify.on') : p === 'denied' ? t('notify.blocked') : t('notify.enable');
  b.disabled = p !== 'default';
}

// ---------------------------------------------------------------- the open conversation

function setupList() {
  list = new MessageList({
    scroller: $('#scroller'),
    list: $('#messages'),
    fetchPage: async ({ before_seq, limit }) => {
      const id = S.current;
      const r = await api.get(`/v1/conversations/${encodeURIComponent(id)}/messages${qs({ before_seq, limit })}`);
      if (id === S.current) $('#history-start').hidden = (r.messages || []).length >= limit;
      return r.messages || [];
    },
    render: (m) => renderMessage(m, { me: S.me, staff: true, images, viewer, lang: getLang() }),
    onSeen: (seq) => {
      const c = S.convs.get(S.current);
      if (c && document.visibilityState === 'visible') setRead(c, seq);
    },
    onUnseen: (n) => {
      const b = $('#jump');
      b.hidden = n === 0;
      b.textContent = t('conv.new_below', { n });
    },
  });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && S.current && list.stuck) list.seen();
  });
}

async function openConv(id) {
  if (!id) return;
  if (S.current === id) {
    $('#reply').focus();
    return;
  }
  if (S.current) sendViewing(S.current, false);
  S.current = id;
  history.replaceState(null, '', `#c=${id}`);
  let conv = S.convs.get(id) || await fetchConv(id);
  if (S.current !== id) return;
  if (!conv) {
    toast(t('error.not_found'));
    S.current = null;
    return;
  }
  $('#conv-empty').hidden = true;
  $('#conv-body').hidden = false;
  $('#note').checked = false;
  $('#composer').classList.remove('note-mode');
  S.canned = null;
  renderHeader();
  renderSuggestions();
  renderPendingList();
  scheduleRender();
  sendViewing(id, true);
  try {
    await list.open(conv.last_seq);
  } catch (e) {
    toast(errorText(e));
  }
  conv = S.convs.get(id);
  if (conv && S.current === id) renderHeader();
}

function sendViewing(id, active) {
  socket.send({ type: 'viewing', conversation_id: id, active });
}

setInterval(() => {
  // Keep "who else is viewing" fresh on every side, and forget what went quiet.
  if (S.current && socket?.open) sendViewing(S.current, true);
  const now = Date.now();
  for (const m of S.viewers.values()) for (const [k, v] of m) if (now - v.at > 150_000) m.delete(k);
  for (const m of S.typers.values()) for (const [k, v] of m) if (v.until < now) m.delete(k);
  if (S.current) renderPresenceLine();
}, 5_000);

function renderHeader() {
  const c = S.convs.get(S.current);
  if (!c) return;
  $('#conv-name').textContent = c.citizen?.display_name || t('citizen');
  const meta = [
    c.citizen?.country ? countryName(c.citizen.country) : null,
    t(`channel.${c.channel}`),
    t(`status.${c.status}`),
    c.assignee_id ? t('conv.assignee', { name: agentName(c.assignee_id) }) : t('conv.unassigned'),
    c.mission_id ? t('conv.mission', { id: c.mission_id }) : null,
  ].filter(Boolean);
  $('#conv-meta').textContent = meta.join(' · ');
  $('#act-priority').value = c.priority || 'normal';
  const claim = $('#act-claim');
  claim.hidden = c.assignee_id === S.me.id;
  claim.textContent = c.assignee_id ? t('act.takeover') : t('act.claim');
  $('#act-resolve').textContent = c.status === 'resolved' ? t('act.reopen') : t('act.resolve');
  $('#act-resolve').setAttribute('aria-keyshortcuts', 'r');
  const labels = c.labels || [];
  $('#labels-list').replaceChildren(...labels.map((l) => h('li', { class: 'label' },
    h('span', { text: l }), ' ',
    h('button', { type: 'button', class: 'x', 'aria-label': t('labels.remove', { label: l }), onclick: () => changeLabels([], [l]) }, '×'))));
  renderPresenceLine();
}

function renderPresenceLine() {
  const id = S.current;
  const parts = [];
  const viewers = [...(S.viewers.get(id)?.values() || [])].map((v) => v.name).filter(Boolean);
  if (viewers.length) parts.push(t('conv.viewing', { names: viewers.join(', ') }));
  $('#conv-presence').textContent = parts.join(' · ');
  const now = Date.now();
  const typers = [...(S.typers.get(id)?.values() || [])].filter((v) => v.until > now).map((v) => v.name);
  $('#typing').textContent = typers.length ? t('conv.typing', { names: typers.join(', ') }) : '';
}

function renderSuggestions() {
  const hits = S.suggestions.get(S.current) || [];
  $('#sugg-empty').hidden = hits.length > 0;
  $('#sugg-list').replaceChildren(...hits.map(hitItem));
}

function hitItem(hit) {
  const snip = h('p', { class: 'snippet' });
  renderSnippet(snip, hit.snippet);
  return h('li', { class: 'hit' },
    h('p', { class: 'hit-title', text: hit.title }),
    snip,
    h('button', { type: 'button', onclick: () => insertArticle(hit), 'aria-label': t('kb.insert_named', { title: hit.title }) }, t('kb.insert')));
}

async function insertArticle(hit) {
  let text = hit.title;
  try {
    const a = await api.get(`/v1/kb/articles/${encodeURIComponent(hit.slug || hit.id)}${qs({ locale: hit.locale })}`);
    const summary = a.summary || (a.body_markdown || '').slice(0, 600);
    text = `${a.title}\n${summary}`.trim();
  } catch { /* the title alone */ }
  insertIntoReply(text);
}

function insertIntoReply(text) {
  const ta = $('#reply');
  const start = ta.selectionStart ?? ta.value.length;
  const end = ta.selectionEnd ?? ta.value.length;
  const before = ta.value.slice(0, start);
  const sep = before && !before.endsWith('\n') ? '\n' : '';
  ta.value = before + sep + text + ta.value.slice(end);
  const pos = (before + sep + text).length;
  ta.focus();
  ta.setSelectionRange(pos, pos);
}

function renderPendingList() {
  const ul = $('#pending');
  if (!S.current) { clear(ul); return; }
  const wasStuck = list?.stuck;
  const items = outbox.items.filter((i) => i.conversation_id === S.current);
  ul.replaceChildren(...items.map((i) => renderPending(i, {
    me: S.me,
    retry: () => { outbox.retry(i.client_msg_id); outbox.flush(socket); },
    discard: () => outbox.remove(i.client_msg_id),
  })));
  if (wasStuck) $('#scroller').scrollTop = $('#scroller').scrollHeight;
}

// ---------------------------------------------------------------- actions

function currentConv() {
  return S.current ? S.convs.get(S.current) : null;
}

async function claim() {
  const c = currentConv();
  if (!c || c.assignee_id === S.me.id) return;
  if (c.assignee_id && c.assignee_id !== S.me.id) {
    const dlg = $('#takeover');
    $('#takeover-text').textContent = t('takeover.text', { name: agentName(c.assignee_id) });
    dlg.returnValue = '';
    openDialog(dlg, dlg.querySelector('button[value=cancel]'));
    dlg.addEventListener('close', async () => {
      if (dlg.returnValue !== 'yes') return;
      await doAssign(c.id, { agent_id: S.me.id });
    }, { once: true });
    return;
  }
  await doAssign(c.id, { if_unassigned: true });
}

async function doAssign(id, body) {
  try {
    const conv = await api.post(`/v1/conversations/${encodeURIComponent(id)}/assign`, body);
    upsertConv(conv);
    if (conv.assignee_id === S.me.id) announce($('#announcer'), t('act.claimed'));
    else toast(t('act.taken', { name: agentName(conv.assignee_id) }));
  } catch (e) {
    if (e instanceof ApiError && e.status === 409) {
      const fresh = await fetchConv(id);
      toast(t('act.taken', { name: agentName(fresh?.assignee_id) }));
    } else {
      toast(errorText(e));
    }
  }
  renderHeader();
  scheduleRender();
}

async function resolveOrReopen() {
  const c = currentConv();
  if (!c) return;
  const what = c.status === 'resolved' ? 'reopen' : 'resolve';
  try {
    upsertConv(await api.post(`/v1/conversations/${encodeURIComponent(c.id)}/${what}`, {}));
    announce($('#announcer'), t(`act.done_${what}`));
  } catch (e) {
    toast(errorText(e));
  }
  renderHeader();
  scheduleRender();
}

async function bulkResolve() {
  const ids = [...S.selected].filter((id) => {
    const c = S.convs.get(id);
    return c && c.priority !== 'emergency' && c.status !== 'resolved';
  });
  let done = 0;
  for (const id of ids) {
    try {
      upsertConv(await api.post(`/v1/conversations/${encodeURIComponent(id)}/resolve`, {}));
      done++;
    } catch { /* reported below */ }
    S.selected.delete(id);
  }
  announce($('#announcer'), t('queue.bulk_done', { n: done, total: ids.length }));
  scheduleRender();
}

async function setPriority(p) {
  const c = currentConv();
  if (!c || c.priority === p) return;
  try {
    upsertConv(await api.post(`/v1/conversations/${encodeURIComponent(c.id)}/priority`, { priority: p }));
    announce($('#announcer'), t('act.priority_set', { p: t(`priority.${p}`) }));
  } catch (e) {
    toast(errorText(e));
    $('#act-priority').value = c.priority;
  }
  scheduleRender();
}

async function changeLabels(add, remove) {
  const c = currentConv();
  if (!c) return;
  try {
    if (add.length) upsertConv(await api.post(`/v1/conversations/${encodeURIComponent(c.id)}/labels`, { labels: add }));
    if (remove.length) upsertConv(await api.del(`/v1/conversations/${encodeURIComponent(c.id)}/labels`, { labels: remove }));
  } catch (e) {
    toast(errorText(e));
  }
  renderHeader();
}

function openTransfer() {
  const c = currentConv();
  if (!c) return;
  loadAgents();
  $('#transfer-error').textContent = '';
  openDialog($('#transfer'), $('#transfer-agent'));
}

async function doTransfer() {
  const c = currentConv();
  const form = $('#transfer-form');
  const kind = form.elements.kind.value;
  const body = kind === 'agent' ? { agent_id: $('#transfer-agent').value } : { mission_id: $('#transfer-mission').value.trim() };
  if (!body.agent_id && !body.mission_id) {
    $('#transfer-error').textContent = t('transfer.pick');
    return;
  }
  try {
    upsertConv(await api.post(`/v1/conversations/${encodeURIComponent(c.id)}/transfer`, body));
    $('#transfer').close();
    announce($('#announcer'), t('transfer.done'));
  } catch (e) {
    $('#transfer-error').textContent = errorText(e);
  }
  scheduleRender();
}

async function sendReply(ev) {
  ev?.preventDefault();
  const c = currentConv();
  const ta = $('#reply');
  const body = ta.value.trim();
  if (!c || !body) return;
  const kind = $('#note').checked ? 'note' : 'text';
  outbox.add({ client_msg_id: uuid(), conversation_id: c.id, kind, body });
  ta.value = '';
  closeCanned();
  stopTyping();
  outbox.flush(socket);
}

async function sendImage(file) {
  const c = currentConv();
  if (!c || !file) return;
  const note = $('#note').checked;
  announce($('#announcer'), t('reply.uploading'));
  try {
    const att = await api.upload(file);
    const caption = $('#reply').value.trim();
    outbox.add({
      client_msg_id: uuid(), conversation_id: c.id, kind: note ? 'note' : 'image',
      body: caption, attachment_ids: [att.id], attachments: [att],
    });
    $('#reply').value = '';
    outbox.flush(socket);
  } catch (e) {
    toast(e instanceof ApiError && e.status === 413 ? t('error.too_large')
      : e instanceof ApiError && e.status === 415 ? t('error.not_image') : errorText(e));
  }
}

let typingSentAt = 0;
let typingStop = null;
function onReplyInput() {
  const c = currentConv();
  updateCanned();
  if (!c || $('#note').checked) return;
  const now = Date.now();
  if (now - typingSentAt > 3000) {
    socket.send({ type: 'typing', conversation_id: c.id, active: true });
    typingSentAt = now;
  }
  clearTimeout(typingStop);
  typingStop = setTimeout(stopTyping, 4000);
}

function stopTyping() {
  clearTimeout(typingStop);
  if (typingSentAt && S.current) socket.send({ type: 'typing', conversation_id: S.current, active: false });
  typingSentAt = 0;
}

// ---------------------------------------------------------------- canned responses ("/")

let cannedMatches = [];
let cannedActive = 0;

async function loadCanned() {
  if (S.canned && S.cannedFor === S.current) return S.canned;
  const id = S.current;
  let list = [];
  try {
    const r = await api.post(`/v1/conversations/${encodeURIComponent(id)}/canned-responses`, {});
    list = r.canned_responses || [];
  } catch {
    try {
      list = (await api.get('/v1/canned-responses')).canned_responses || [];
    } catch { list = []; }
  }
  S.canned = list;
  S.cannedFor = id;
  return list;
}

function cannedQuery() {
  const ta = $('#reply');
  const upto = ta.value.slice(0, ta.selectionStart ?? ta.value.length);
  const m = /(?:^|\s)\/([^\s/]*(?: [^\s/]*)*)$/.exec(upto);
  return m ? { q: m[1], start: upto.length - m[1].length - 1 } : null;
}

async function updateCanned() {
  const q = cannedQuery();
  if (!q) { closeCanned(); return; }
  const all = await loadCanned();
  const still = cannedQuery();
  if (!still) { closeCanned(); return; }
  cannedMatches = all
    .map((c) => ({ c, s: fuzzyScore(still.q, c.title, c.rendered || c.body) }))
    .filter((x) => x.s > 0)
    .sort((a, b) => b.s - a.s)
    .slice(0, 8)
    .map((x) => x.c);
  cannedActive = 0;
  renderCanned();
}

function renderCanned() {
  const box = $('#canned');
  const ul = $('#canned-list');
  const ta = $('#reply');
  box.hidden = false;
  if (!cannedMatches.length) {
    ul.replaceChildren(h('li', { role: 'option', id: 'canned-none', 'aria-selected': 'false', 'aria-disabled': 'true', text: t('canned.none') }));
    ta.removeAttribute('aria-activedescendant');
    return;
  }
  ul.replaceChildren(...cannedMatches.map((c, i) => h('li', {
    role: 'option', id: `canned-${i}`, 'aria-selected': i === cannedActive ? 'true' : 'false',
    class: i === cannedActive ? 'active' : '',
    onmousedown: (ev) => { ev.preventDefault(); cannedActive = i; pickCanned(); },
  }, h('strong', { text: c.title }), ' ', h('span', { class: 'muted', text: (c.rendered || c.body || '').slice(0, 120) }))));
  ta.setAttribute('aria-activedescendant', `canned-${cannedActive}`);
  announce($('#announcer'), t('canned.count', { n: cannedMatches.length }));
}

function closeCanned() {
  $('#canned').hidden = true;
  $('#reply').removeAttribute('aria-activedescendant');
  cannedMatches = [];
}

function pickCanned() {
  const c = cannedMatches[cannedActive];
  const q = cannedQuery();
  if (!c || !q) return;
  const ta = $('#reply');
  const caret = ta.selectionStart ?? ta.value.length;
  const text = c.rendered || c.body || '';
  ta.value = ta.value.slice(0, q.start) + text + ta.value.slice(caret);
  const pos = q.start + text.length;
  ta.setSelectionRange(pos, pos);
  closeCanned();
}

function onReplyKey(ev) {
  if (!$('#canned').hidden && cannedMatches.length) {
    if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
      ev.preventDefault();
      const n = cannedMatches.length;
      cannedActive = (cannedActive + (ev.key === 'ArrowDown' ? 1 : n - 1)) % n;
      renderCanned();
      return;
    }
    if (ev.key === 'Enter' || ev.key === 'Tab') {
      ev.preventDefault();
      pickCanned();
      return;
    }
  }
  if (ev.key === 'Escape') {
    if (!$('#canned').hidden) { ev.preventDefault(); closeCanned(); return; }
    $('#reply').blur();
    focusQueue();
    return;
  }
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    sendReply();
  }
}

// ---------------------------------------------------------------- KB search

async function searchKb(ev) {
  ev?.preventDefault();
  const q = $('#kb-q').value.trim();
  const status = $('#kb-status');
  if (!q) { $('#kb-list').replaceChildren(); status.textContent = ''; return; }
  const c = currentConv();
  try {
    const r = await api.get(`/v1/kb/search${qs({ q, limit: 8, country: c?.citizen?.country })}`);
    $('#kb-list').replaceChildren(...(r.hits || []).map(hitItem));
    status.textContent = t('kb.results', { n: r.total ?? (r.hits || []).length });
  } catch (e) {
    status.textContent = errorText(e);
  }
}

// ---------------------------------------------------------------- keyboard

const SHORTCUTS = [
  ['?', 'help.k.help', () => openDialog($('#help'), $('#help button'))],
  ['j', 'help.k.next', () => moveSelection(1)],
  ['k', 'help.k.prev', () => moveSelection(-1)],
  ['e', 'help.k.lane', () => ($('#lane-list .lane-open') || $('#lane-h')).focus()],
  ['u', 'help.k.unread', () => { const b = $('#unread-only'); b.checked = !b.checked; b.dispatchEvent(new Event('change')); }],
  ['/', 'help.k.reply', () => $('#reply').focus()],
  ['c', 'help.k.claim', () => claim()],
  ['t', 'help.k.transfer', () => openTransfer()],
  ['r', 'help.k.resolve', () => resolveOrReopen()],
  ['p', 'help.k.priority', () => $('#act-priority').focus()],
  ['l', 'help.k.label', () => $('#labels-input').focus()],
  ['n', 'help.k.note', () => { const n = $('#note'); n.checked = !n.checked; n.dispatchEvent(new Event('change')); }],
  ['i', 'help.k.image', () => $('#image-input').click()],
  ['s', 'help.k.search', () => $('#kb-q').focus()],
  ['a', 'help.k.presence', () => { const p = $('#presence'); p.value = p.value === 'online' ? 'away' : 'online'; p.dispatchEvent(new Event('change')); }],
  ['x', 'help.k.ack', () => { const e = [...S.escalations.values()].find(openEscalation); if (e) ackEscalation(e.id); }],
  ['g', 'help.k.latest', () => list.jumpToLatest()],
  ['Esc', 'help.k.escape', null],
  ['Enter', 'help.k.send', null],
  ['Shift+Enter', 'help.k.newline', null],
];

function renderHelp() {
  $('#help-rows').replaceChildren(...SHORTCUTS.map(([k, label]) => h('tr', {},
    h('td', {}, h('kbd', { text: k })), h('td', { text: t(label) }))));
}

function focusQueue() {
  const cur = S.current && S.rows.get(S.current)?.querySelector('.qbtn');
  (cur || $('#queue-list .qbtn') || $('#queue-h')).focus();
}

function moveSelection(d) {
  const ids = visibleConvs().slice(0, S.shown).map((c) => c.id);
  if (!ids.length) return;
  const i = ids.indexOf(S.current);
  const next = ids[Math.max(0, Math.min(ids.length - 1, i < 0 ? 0 : i + d))];
  openConv(next).then(() => S.rows.get(next)?.querySelector('.qbtn')?.focus());
}

function onKey(ev) {
  if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (document.querySelector('dialog[open]')) return;
  if (typingInField(ev)) return;
  const s = SHORTCUTS.find(([k, , fn]) => fn && k === ev.key);
  if (!s) return;
  ev.preventDefault();
  s[2]();
}

// ---------------------------------------------------------------- wiring

function wire() {
  document.addEventListener('keydown', onKey);
  document.addEventListener('pointerdown', ensureAudio, { once: true });
  document.addEventListener('keydown', ensureAudio, { once: true });
  $('#signout').addEventListener('click', async () => {
    socket.stop();
    await signOut(S.token);
    location.reload();
  });
  $('#help-btn').addEventListener('click', () => openDialog($('#help'), $('#help button')));
  $('#presence').addEventListener('change', async (ev) => {
    const status = ev.target.value;
    if (!socket.send({ type: 'presence', status })) {
      try { await api.put('/v1/agent/presence', { status }); } catch (e) { toast(errorText(e)); }
    }
    announce($('#announcer'), t('presence.set', { s: t(`presence.${status}`) }));
  });
  $('#notify-btn').addEventListener('click', async () => {
    try { await Notification.requestPermission(); } catch { /* ignored */ }
    renderNotifyButton();
  });
  renderNotifyButton();
  $('#queue-view').addEventListener('change', (ev) => {
    S.view = ev.target.value;
    S.selected.clear();
    loadQueue(true);
    scheduleRender();
  });
  $('#unread-only').addEventListener('change', (ev) => {
    S.unreadOnly = ev.target.checked;
    announce($('#announcer'), ev.target.checked ? t('queue.unread_on') : t('queue.unread_off'));
    scheduleRender();
  });
  $('#queue-more').addEventListener('click', () => {
    S.shown += SHOW_STEP;
    if (visibleConvs().length < S.shown) loadQueue(false);
    scheduleRender();
  });
  const sentinel = $('#queue-more');
  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && !sentinel.hidden) sentinel.click();
  }).observe(sentinel);
  $('#bulk-resolve').addEventListener('click', bulkResolve);
  $('#act-claim').addEventListener('click', claim);
  $('#act-transfer').addEventListener('click', openTransfer);
  $('#act-resolve').addEventListener('click', resolveOrReopen);
  $('#act-priority').addEventListener('change', (ev) => setPriority(ev.target.value));
  $('#labels-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = $('#labels-input').value.trim();
    if (v) changeLabels([v], []);
    $('#labels-input').value = '';
  });
  $('#transfer-go').addEventListener('click', doTransfer);
  $('#composer').addEventListener('submit', sendReply);
  $('#reply').addEventListener('keydown', onReplyKey);
  $('#reply').addEventListener('input', onReplyInput);
  $('#reply').addEventListener('blur', () => setTimeout(closeCanned, 150));
  $('#note').addEventListener('change', (ev) => {
    $('#composer').classList.toggle('note-mode', ev.target.checked);
    if (ev.target.checked) stopTyping();
    announce($('#announcer'), ev.target.checked ? t('reply.note_on') : t('reply.note_off'));
  });
  $('#image-input').addEventListener('change', (ev) => {
    const f = ev.target.files?.[0];
    ev.target.value = '';
    if (f) sendImage(f);
  });
  $('#jump').addEventListener('click', () => list.jumpToLatest());
  $('#kb-form').addEventListener('submit', searchKb);
  $('#kb-q').addEventListener('input', debounce(() => searchKb(), 300));
  onLangChange(() => {
    renderHelp();
    renderNotifyButton();
    connState(socket.state);
    S.rows.clear();
    scheduleRender();
    if (S.current) {
      renderHeader();
      const seq = list.lastSeq;
      list.open(seq);
    }
  });
}

let toastTimer = null;
/** A message that needs the agent's attention now (role=alert), gone after a while. */
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
    if (e.status === 409) return t('error.conflict', { message: e.message });
    return e.message || t('error.generic');
  }
  return String(e?.message || e || t('error.generic'));
}

// Last, so that every module-level binding above exists before the page starts.
initLang();
start();
