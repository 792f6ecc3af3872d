// Staff sign-in shared by the console and the editor: email + password, or on a fresh
// installation the create-admin form opened by the `#setup=<token>` link the server
// prints. The token lives in sessionStorage (this tab only), never in a URL.

import { Api, ApiError } from './api.js';
import { t } from './i18n.js';
import { $ } from './dom.js';

const KEY = 'lingshi.staff';

export function loadSession() {
  try {
    const v = JSON.parse(sessionStorage.getItem(KEY) || 'null');
    return v && v.token ? v : null;
  } catch {
    return null;
  }
}

export function saveSession(token, agent) {
  sessionStorage.setItem(KEY, JSON.stringify({ token, agent }));
}

export function clearSession() {
  sessionStorage.removeItem(KEY);
}

/** The setup token from `#setup=<token>`, removed from the address bar at once. */
function takeSetupToken() {
  const m = /(?:^#|&)setup=([^&]+)/.exec(location.hash || '');
  if (!m) return null;
  history.replaceState(null, '', location.pathname + location.search);
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return null;
  }
}

function errorText(e) {
  if (e instanceof ApiError) {
    if (e.status === 401) return t('signin.bad');
    if (e.status === 429) return t('error.rate_limited');
    if (e.status === 0) return t('error.network');
    return e.message;
  }
  return String(e?.message || e);
}

/**
 * Show the sign-in (or setup) screen inside `screen` and resolve with `{token, agent}`
 * once signed in. Expects the page's markup: #signin-form, #setup-form, #signin-error,
 * #setup-error.
 */
export function signIn(screen) {
  const api = new Api();
  const signinForm = $('#signin-form', screen);
  const setupForm = $('#setup-form', screen);
  const setupToken = takeSetupToken();
  screen.hidden = false;
  signinForm.hidden = !!setupToken;
  setupForm.hidden = !setupToken;
  return new Promise((resolve) => {
    const done = (r) => {
      saveSession(r.token, r.agent);
      screen.hidden = true;
      resolve({ token: r.token, agent: r.agent });
    };
    signinForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const err = $('#signin-error', screen);
      err.textContent = '';
      const btn = signinForm.querySelector('button[type=submit]');
      btn.disabled = true;
      try {
        const r = await api.post('/v1/agent/sessions', {
          email: signinForm.elements.email.value.trim(),
          password: signinForm.elements.password.value,
        });
        signinForm.elements.password.value = '';
        done(r);
      } catch (e) {
        err.textContent = errorText(e);
      } finally {
        btn.disabled = false;
      }
    });
    setupForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const err = $('#setup-error', screen);
      err.textContent = '';
      const f = setupForm.elements;
      if (f.password.value !== f.password2.value) {
        err.textContent = t('setup.mismatch');
        return;
      }
      try {
        const r = await api.post('/v1/setup', {
          setup_token: setupToken,
          email: f.email.value.trim(),
          name: f.name.value.trim(),
          password: f.password.value,
        });
        done(r);
      } catch (e) {
        err.textContent = e instanceof ApiError && e.status === 401 ? t('setup.bad_token')
          : e instanceof ApiError && e.missing ? t('setup.unsupported') : errorText(e);
      }
    });
    (setupToken ? setupForm : signinForm).querySelector('input')?.focus();
  });
}

export async function signOut(token) {
  try {
    await new Api({ token: () => token }).del('/v1/agent/sessions', undefined, { noAuthHook: true });
  } catch { /* the token is forgotten either way */ }
  clearSession();
}
