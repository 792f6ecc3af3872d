// The knowledge-base editor: find, write, preview (the server's sanitiser), publish and
// archive articles and safety alerts, go back to an earlier version, see what citizens
// searched for in vain, and try the triage rules.

import { Api, ApiError, qs } from '/shared/api.js';
import { initLang, onLangChange, t, getLang } from '/shared/i18n.js';
import { h, $, $$, setTrustedHtml, fmtTime, debounce, announce } from '/shared/dom.js';
import { loadSession, signIn, signOut, clearSession } from '/shared/staff.js';

const CATEGORIES = ['guide', 'faq', 'safety_alert', 'announcement', 'visa_policy', 'document_policy', 'emergency_contacts'];
const PAGE = 50;

const S = {
  token: null,
  me: null,
  current: null,
  dirty: false,
  offset: 0,
  more: false,
  rows: [],
  previewSupported: true,
  triageSupported: true,
};

let api;


async function start() {
  const session = loadSession() || await signIn($('#signin'));
  S.token = session.token;
  S.me = session.agent;
  api = new Api({ token: () => S.token, onUnauthorized: () => { clearSession(); location.reload(); } });
  $('#app').hidden = false;
  $('#me').textContent = S.me?.name || S.me?.email || '';
  fillCategories();
  wire();
  newArticle();
  loadList(true);
  probe();
}

/** Find out once which optional server features exist, and hide what is missing. */
async function probe() {
  try {
    await api.post('/v1/kb/preview', { body_markdown: '' });
  } catch (e) {
    if (e instanceof ApiError && e.missing) {
      S.previewSupported = false;
      $('#preview-pane').hidden = true;
    }
  }
  try {
    await api.post('/v1/triage', { text: 'test' });
  } catch (e) {
    if (e instanceof ApiError && e.missing) {
      S.triageSupported = false;
      $('[data-tab=triage]').hidden = true;
    }
  }
}

function fillCategories() {
  for (const sel of $$('.category-select')) {
    const v = sel.value;
    const any = sel.id === 'f-category';
    sel.replaceChildren(
      ...(any ? [h('option', { value: '', text: t('any') })] : []),
      ...CATEGORIES.map((c) => h('option', { value: c, text: t(`cat.${c}`) })),
    );
    sel.value = v || (any ? '' : 'guide');
  }
}

// ---------------------------------------------------------------- list

async function loadList(reset) {
  if (reset) {
    S.offset = 0;
    S.rows = [];
  }
  const q = $('#f-q').value.trim();
  const status = $('#f-status').value;
  const locale = $('#f-locale').value;
  const category = $('#f-category').value;
  const st = $('#list-status');
  try {
    if (q) {
      const r = await api.get(`/v1/kb/search${qs({ q, locale, category, status: 'all', limit: 50 })}`);
      S.rows = (r.hits || []).map((hit) => ({ ...hit, fromSearch: true }));
      S.more = false;
    } else {
      const r = await api.get(`/v1/kb/articles${qs({ status, locale, limit: PAGE, offset: S.offset })}`);
      const got = r.articles || [];
      S.offset += got.length;
      S.more = got.length === PAGE;
      S.rows = S.rows.concat(got);
    }
  } catch (e) {
    st.textContent = errorText(e);
    return;
  }
  const rows = S.rows.filter((a) => (!category || a.category === category) && (!status || a.fromSearch || a.status === status));
  st.textContent = t('list.count', { n: rows.length });
  $('#more').hidden = !S.more;
  $('#list').replaceChildren(...rows.map((a) => h('li', { class: a.id === S.current?.id ? 'current' : '' },
    h('button', {
      type: 'button', class: 'article-row', 'aria-current': a.id === S.current?.id ? 'true' : null,
      onclick: () => openArticle(a.id),
    },
    h('span', { class: 'title', text: a.title || a.slug }), ' ',
    h('span', { class: 'muted meta', text: [a.locale, t(`cat.${a.category}`), a.status ? t(`status.${a.status}`) : null].filter(Boolean).join(' · ') })))));
  // With a category filter a page may show little: fetch on while there is more.
  if (!q && category && rows.length < 20 && S.more) loadList(false);
}

// ---------------------------------------------------------------- form

function form() {
  return $('#article-form');
}

function newArticle() {
  S.current = null;
  const f = form();
  f.reset();
  f.elements.locale.value = getLang() === 'zh' ? 'zh-CN' : 'en';
  f.elements.category.value = 'guide';
  $('#edit-h').textContent = t('edit.new');
  $('#edit-state').textContent = '';
  $('#versions').hidden = true;
  $('#versions-btn').setAttribute('aria-expanded', 'false');
  S.dirty = false;
  updateButtons();
  updatePreview();
}

function fill(a) {
  S.current = a;
  const f = form().elements;
  f.title.value = a.title || '';
  f.slug.value = a.slug || '';
  f.locale.value = a.locale || 'zh-CN';
  f.category.value = a.category || 'guide';
  f.countries.value = (a.countries || []).join(', ');
  f.tags.value = (a.tags || []).join(', ');
  f.summary.value = a.summary || '';
  f.body_markdown.value = a.body_markdown || '';
  f.severity.value = a.severity || '';
  f.expires_at.value = a.expires_at ? toLocalInput(a.expires_at) : '';
  f.lat.value = a.area?.lat ?? '';
  f.lon.value = a.area?.lon ?? '';
  f.radius_km.value = a.area?.radius_km ?? '';
  $('#edit-h').textContent = t('edit.editing', { title: a.title || a.slug });
  $('#edit-state').textContent = t('edit.state', {
    status: t(`status.${a.status}`), version: a.version ?? 1, when: fmtTime(a.updated_at, getLang()),
  });
  S.dirty = false;
  updateButtons();
  updatePreview(a.body_html);
}

function toLocalInput(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

function updateButtons() {
  const a = S.current;
  // A new article can be published at once: it is saved first.
  $('#publish').disabled = !!a && a.status === 'published' && !S.dirty;
  $('#archive').disabled = !a || a.status === 'archived';
  $('#versions-btn').disabled = !a;
  $('#alert-fields').hidden = form().elements.category.value !== 'safety_alert';
}

function list(v) {
  return v.split(/[,，\s]+/).map((x) => x.trim()).filter(Boolean);
}

/** The article fields from the form, or throws a message for the editor. */
function fields() {
  const f = form().elements;
  const out = {
    title: f.title.value.trim(),
    slug: f.slug.value.trim().toLowerCase(),
    locale: f.locale.value,
    category: f.category.value,
    countries: list(f.countries.value).map((c) => c.toUpperCase()),
    tags: list(f.tags.value),
    summary: f.summary.value.trim(),
    body_markdown: f.body_markdown.value,
  };
  if (!out.title) throw new Error(t('edit.need_title'));
  if (!/^[a-z0-9][a-z0-9-]*$/.test(out.slug)) throw new Error(t('edit.bad_slug'));
  if (out.countries.some((c) => !/^[A-Z]{2}$/.test(c))) throw new Error(t('edit.bad_countries'));
  if (out.category === 'safety_alert') {
    if (f.severity.value) out.severity = f.severity.value;
    if (f.expires_at.value) {
      const d = new Date(f.expires_at.value);
      if (Number.isNaN(d.getTime())) throw new Error(t('edit.bad_expiry'));
      out.expires_at = d.toISOString().replace(/\.\d{3}Z$/, 'Z');
    }
    const [lat, lon, r] = [f.lat.value, f.lon.value, f.radius_km.value];
    if (lat !== '' || lon !== '' || r !== '') {
      const area = { lat: Number(lat), lon: Number(lon), radius_km: Number(r) };
      if ([lat, lon, r].some((x) => x === '') || !(area.lat >= -90 && area.lat <= 90) ||
        !(area.lon >= -180 && area.lon <= 180) || !(area.radius_km > 0)) {
        throw new Error(t('edit.bad_area'));
      }
      out.area = area;
    }
  }
  return out;
}

async function save(ev) {
  ev?.preventDefault();
  const err = $('#form-error');
  err.textContent = '';
  let body;
  try {
    body = fields();
  } catch (e) {
    err.textContent = e.message;
    return null;
  }
  try {
    const a = S.current
      ? await api.put(`/v1/kb/articles/${encodeURIComponent(S.current.id)}`, body)
      : await api.post('/v1/kb/articles', body);
    fill(a);
    status(t('edit.saved', { version: a.version ?? 1 }));
    loadList(true);
    return a;
  } catch (e) {
    err.textContent = e instanceof ApiError && e.status === 409 ? t('edit.slug_taken') : errorText(e);
    return null;
  }
}

async function publish() {
  if (S.dirty || !S.current) {
    if (!await save()) return;
  }
  try {
    const a = await api.post(`/v1/kb/articles/${encodeURIComponent(S.current.id)}/publish`, {});
    fill(a);
    status(t('edit.published'));
    loadList(true);
  } catch (e) {
    $('#form-error').textContent = errorText(e);
  }
}

async function archive() {
  if (!S.current) return;
  try {
    await api.del(`/v1/kb/articles/${encodeURIComponent(S.current.id)}`);
    await openArticle(S.current.id);
    status(t('edit.archived'));
    loadList(true);
  } catch (e) {
    $('#form-error').textContent = errorText(e);
  }
}

async function openArticle(id) {
  if (S.dirty && S.current?.id !== id) status(t('edit.discarded'));
  try {
    const a = await api.get(`/v1/kb/articles/${encodeURIComponent(id)}`);
    fill(a);
    $('#versions').hidden = true;
    $('#versions-btn').setAttribute('aria-expanded', 'false');
    for (const b of $$('#list .article-row')) b.removeAttribute('aria-current');
    form().elements.title.focus();
  } catch (e) {
    toast(errorText(e));
  }
}

async function toggleVersions() {
  const box = $('#versions');
  const btn = $('#versions-btn');
  if (!box.hidden) {
    box.hidden = true;
    btn.setAttribute('aria-expanded', 'false');
    return;
  }
  try {
    const r = await api.get(`/v1/kb/articles/${encodeURIComponent(S.current.id)}/versions`);
    const versions = (r.versions || []).slice().sort((a, b) => b.version - a.version);
    $('#versions-list').replaceChildren(...versions.map((v) => h('li', {},
      h('span', { text: t('edit.version_line', { v: v.version, when: fmtTime(v.created_at, getLang()), title: v.article?.title || '' }) }), ' ',
      v.version === S.current.version ? h('span', { class: 'muted', text: t('edit.current') })
        : h('button', { type: 'button', onclick: () => restore(v.version), 'aria-label': t('edit.restore_named', { v: v.version }) }, t('edit.restore')))));
    box.hidden = false;
    btn.setAttribute('aria-expanded', 'true');
  } catch (e) {
    toast(errorText(e));
  }
}

async function restore(version) {
  try {
    const a = await api.post(`/v1/kb/articles/${encodeURIComponent(S.current.id)}/versions/${version}/restore`, {});
    fill(a);
    status(t('edit.restored', { v: version }));
    $('#versions').hidden = true;
    $('#versions-btn').setAttribute('aria-expanded', 'false');
    loadList(true);
  } catch (e) {
    toast(errorText(e));
  }
}

// ---------------------------------------------------------------- preview

let previewSeq = 0;
const updatePreviewSoon = debounce(() => updatePreview(), 400);

async function updatePreview(knownHtml) {
  const el = $('#preview');
  if (!S.previewSupported) return;
  if (typeof knownHtml === 'string') {
    setTrustedHtml(el, knownHtml);
    return;
  }
  const md = form().elements.body_markdown.value;
  const n = ++previewSeq;
  if (!md.trim()) {
    el.replaceChildren();
    return;
  }
  try {
    const r = await api.post('/v1/kb/preview', { body_markdown: md });
    if (n === previewSeq) setTrustedHtml(el, r.body_html);
  } catch (e) {
    // Without the server's sanitiser there is no preview: never render Markdown here.
    if (e instanceof ApiError && e.missing) {
      S.previewSupported = false;
      $('#preview-pane').hidden = true;
    }
    if (n === previewSeq) el.replaceChildren();
  }
}

// ---------------------------------------------------------------- gaps and triage

async function loadGaps() {
  const st = $('#gaps-status');
  try {
    const r = await api.get(`/v1/kb/gaps${qs({ days: $('#gaps-days').value, limit: 100 })}`);
    const gaps = r.gaps || [];
    st.textContent = gaps.length ? t('gaps.count', { n: gaps.length }) : t('gaps.none');
    $('#gaps-rows').replaceChildren(...gaps.map((g) => h('tr', {},
      h('td', { text: g.query }),
      h('td', { text: g.example || '' }),
      h('td', { text: String(g.count ?? '') }),
      h('td', {}, h('time', { datetime: g.last_seen_at || '', text: fmtTime(g.last_seen_at, getLang()) })),
      h('td', {}, h('button', {
        type: 'button', 'aria-label': t('gaps.write_named', { q: g.example || g.query }),
        onclick: () => { selectTab('articles'); newArticle(); form().elements.title.value = g.example || g.query; form().elements.title.focus(); },
      }, t('gaps.write'))))));
  } catch (e) {
    st.textContent = errorText(e);
  }
}

async function runTriage(ev) {
  ev.preventDefault();
  const out = $('#triage-result');
  const text = $('#triage-text').value.trim();
  if (!text) return;
  try {
    const body = { text };
    const loc = $('#triage-locale').value;
    if (loc) body.locale = loc;
    const r = await api.post('/v1/triage', body);
    const reasons = r.reasons || [];
    out.replaceChildren(
      h('p', {}, h('span', { class: `badge triage-${r.category}`, text: t(`triage.${r.category}`) }), ' ',
        h('span', { text: t('triage.score', { s: typeof r.score === 'number' ? r.score.toFixed(2) : '?' }) })),
      reasons.length ? h('table', {},
        h('caption', { class: 'sr-only', text: t('triage.reasons') }),
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col', text: t('triage.kind') }),
          h('th', { scope: 'col', text: t('triage.matched') }),
          h('th', { scope: 'col', text: t('triage.detail') }))),
        h('tbody', {}, ...reasons.map((x) => h('tr', {},
          h('td', { text: x.kind || '' }), h('td', { text: x.matched || '' }), h('td', { text: x.detail || '' })))))
        : h('p', { class: 'muted', text: t('triage.no_reasons') }));
  } catch (e) {
    if (e instanceof ApiError && e.missing) {
      out.replaceChildren(h('p', { text: t('triage.unavailable') }));
    } else {
      out.replaceChildren(h('p', { class: 'error', text: errorText(e) }));
    }
  }
}

function selectTab(name) {
  for (const b of $$('.tab')) {
    if (b.dataset.tab === name) b.setAttribute('aria-current', 'page');
    else b.removeAttribute('aria-current');
  }
  $('#tab-articles').hidden = name !== 'articles';
  $('#tab-gaps').hidden = name !== 'gaps';
  $('#tab-triage').hidden = name !== 'triage';
  if (name === 'gaps') loadGaps();
}

// ---------------------------------------------------------------- wiring

function wire() {
  $('#signout').addEventListener('click', async () => {
    await signOut(S.token);
    location.reload();
  });
  for (const b of $$('.tab')) b.addEventListener('click', () => selectTab(b.dataset.tab));
  const reload = debounce(() => loadList(true), 300);
  $('#f-q').addEventListener('input', reload);
  for (const id of ['#f-status', '#f-locale', '#f-category']) $(id).addEventListener('change', () => loadList(true));
  $('#filters').addEventListener('submit', (ev) => { ev.preventDefault(); loadList(true); });
  $('#more').addEventListener('click', () => loadList(false));
  $('#new').addEventListener('click', () => { newArticle(); form().elements.title.focus(); });
  form().addEventListener('submit', save);
  form().addEventListener('input', (ev) => {
    S.dirty = true;
    updateButtons();
    if (ev.target.name === 'body_markdown') updatePreviewSoon();
  });
  form().elements.category.addEventListener('change', updateButtons);
  $('#publish').addEventListener('click', publish);
  $('#archive').addEventListener('click', archive);
  $('#versions-btn').addEventListener('click', toggleVersions);
  $('#gaps-days').addEventListener('change', loadGaps);
  $('#triage-form').addEventListener('submit', runTriage);
  document.addEventListener('keydown', (ev) => {
    if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === 's') {
      ev.preventDefault();
      save();
    }
  });
  onLangChange(() => {
    fillCategories();
    loadList(true);
    if (S.current) fill(S.current);
  });
}

function status(text) {
  announce($('#form-status'), text);
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
    if (e.status === 403) return t('error.editor_only');
    return e.message || t('error.generic');
  }
  return String(e?.message || e || t('error.generic'));
}

// Last, so that every module-level binding above exists before the page starts.
initLang();
start();
