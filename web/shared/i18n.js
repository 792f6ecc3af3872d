// Chinese and English. The language follows the browser (`navigator.languages`) until
// the reader picks one in the page; the choice is remembered.

import { STRINGS } from './strings.js';

const KEY = 'lingshi.lang';
let lang = pick();
const listeners = new Set();

function pick() {
  try {
    const q = new URLSearchParams(location.search).get('lang');
    if (q === 'zh' || q === 'en') return q;
    const saved = localStorage.getItem(KEY);
    if (saved === 'zh' || saved === 'en') return saved;
  } catch { /* storage disabled */ }
  for (const l of navigator.languages || [navigator.language || '']) {
    const low = String(l).toLowerCase();
    if (low.startsWith('zh')) return 'zh';
    if (low.startsWith('en')) return 'en';
  }
  return 'zh';
}

export function getLang() {
  return lang;
}

/** The BCP 47 locale the API uses for the current language. */
export function locale() {
  return lang === 'zh' ? 'zh-CN' : 'en';
}

/** A UI string, with `{name}` placeholders filled from `vars` (as text). */
export function t(key, vars) {
  const s = STRINGS[lang]?.[key] ?? STRINGS.en[key] ?? key;
  if (!vars) return s;
  return s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
}

export function setLang(l) {
  if (l !== 'zh' && l !== 'en') return;
  lang = l;
  try { localStorage.setItem(KEY, l); } catch { /* storage disabled */ }
  apply();
  for (const fn of listeners) fn(l);
}

export function onLangChange(fn) {
  listeners.add(fn);
}

/**
 * Fill the static page: `data-i18n` (text), `data-i18n-label` (aria-label),
 * `data-i18n-placeholder`, `data-i18n-title`, and the document's language and title.
 */
export function apply(root = document) {
  document.documentElement.lang = locale();
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-label]')) el.setAttribute('aria-label', t(el.dataset.i18nLabel));
  for (const el of root.querySelectorAll('[data-i18n-placeholder]')) el.setAttribute('placeholder', t(el.dataset.i18nPlaceholder));
  for (const el of root.querySelectorAll('[data-i18n-title]')) el.setAttribute('title', t(el.dataset.i18nTitle));
  const title = document.querySelector('meta[name="lingshi-title"]')?.getAttribute('content');
  if (title) document.title = t(title);
  for (const sel of root.querySelectorAll('select[data-lang-switch]')) sel.value = lang;
}

/** Wire every language `<select data-lang-switch>` of the page. */
export function initLang() {
  apply();
  for (const sel of document.querySelectorAll('select[data-lang-switch]')) {
    sel.value = lang;
    sel.addEventListener('change', () => setLang(sel.value));
  }
}

/** A country's name in the current language (Intl knows them all). */
export function countryName(code) {
  if (!code) return '';
  try {
    return new Intl.DisplayNames([locale()], { type: 'region' }).of(code) || code;
  } catch {
    return code;
  }
}
