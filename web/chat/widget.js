/*
 * Lingshi chat widget. A mission's web site includes it with
 *
 *   <script src="https://LINGSHI-HOST/chat/widget.js" data-country="BE" data-lang="zh" defer></script>
 *
 * and gets a button that opens the consular chat in a frame. The chat itself runs on
 * the Lingshi server's origin (its own storage, its own security policy); this script
 * only draws the button and the frame, and sends nothing anywhere. The server must list
 * the site's origin among the origins allowed to frame the chat.
 */
(function () {
  'use strict';
  var script = document.currentScript;
  if (!script || window.__lingshiWidget) return;
  window.__lingshiWidget = true;
  var origin = new URL(script.src, location.href).origin;
  var country = (script.getAttribute('data-country') || '').replace(/[^A-Za-z]/g, '').slice(0, 2).toUpperCase();
  var lang = script.getAttribute('data-lang') === 'en' ? 'en'
    : script.getAttribute('data-lang') === 'zh' ? 'zh'
      : ((navigator.language || '').toLowerCase().indexOf('zh') === 0 ? 'zh' : 'en');
  var label = lang === 'zh' ? '领事服务在线咨询' : 'Consular help chat';
  var closeLabel = lang === 'zh' ? '关闭咨询窗口' : 'Close the chat';

  var src = origin + '/chat/?embed=1&lang=' + lang + (country ? '&country=' + country : '');

  var button = document.createElement('button');
  button.type = 'button';
  button.textContent = label;
  button.setAttribute('aria-expanded', 'false');
  button.setAttribute('aria-controls', 'lingshi-chat-frame');
  var bs = button.style;
  bs.position = 'fixed'; bs.right = '16px'; bs.bottom = '16px'; bs.zIndex = '2147483646';
  bs.background = '#b3261e'; bs.color = '#ffffff'; bs.border = '0'; bs.borderRadius = '999px';
  bs.padding = '12px 18px'; bs.font = '600 16px system-ui, sans-serif'; bs.cursor = 'pointer';
  bs.boxShadow = '0 2px 10px rgba(0,0,0,.3)';

  var panel = document.createElement('div');
  panel.id = 'lingshi-chat-frame';
  panel.hidden = true;
  var ps = panel.style;
  ps.position = 'fixed'; ps.right = '16px'; ps.bottom = '76px'; ps.zIndex = '2147483647';
  ps.width = 'min(400px, calc(100vw - 32px))'; ps.height = 'min(640px, calc(100vh - 100px))';
  ps.background = '#ffffff'; ps.borderRadius = '12px'; ps.overflow = 'hidden';
  ps.boxShadow = '0 6px 24px rgba(0,0,0,.3)';

  var close = document.createElement('button');
  close.type = 'button';
  close.textContent = '×';
  close.setAttribute('aria-label', closeLabel);
  var cs = close.style;
  cs.position = 'absolute'; cs.top = '4px'; cs.right = '4px'; cs.zIndex = '1';
  cs.width = '32px'; cs.height = '32px'; cs.border = '0'; cs.borderRadius = '50%';
  cs.background = '#1f2328'; cs.color = '#ffffff'; cs.font = '20px system-ui, sans-serif'; cs.cursor = 'pointer';

  var frame = null;
  function open() {
    if (!frame) {
      frame = document.createElement('iframe');
      frame.src = src;
      frame.title = label;
      frame.setAttribute('allow', 'geolocation ' + origin);
      frame.setAttribute('referrerpolicy', 'no-referrer');
      var fs = frame.style;
      fs.width = '100%'; fs.height = '100%'; fs.border = '0';
      panel.appendChild(frame);
    }
    panel.hidden = false;
    button.setAttribute('aria-expanded', 'true');
    frame.focus();
  }
  function hide() {
    panel.hidden = true;
    button.setAttribute('aria-expanded', 'false');
    button.focus();
  }
  button.addEventListener('click', function () { if (panel.hidden) open(); else hide(); });
  close.addEventListener('click', hide);
  panel.addEventListener('keydown', function (e) { if (e.key === 'Escape') hide(); });
  panel.appendChild(close);

  function mount() {
    document.body.appendChild(panel);
    document.body.appendChild(button);
  }
  if (document.body) mount(); else document.addEventListener('DOMContentLoaded', mount);
})();
