// The chat as a floating button on any intranet page (a script tag whose src is this file, /widget.js).
// The server fills in its own address and the sites allowed to frame it (its frame-ancestors setting). On a site
// not on that list the browser would show a broken frame, so the button opens the chat in a new tab instead.
(function () {
  var base = '__BASE__';
  var allowed = '__ALLOWED__';
  function allows(o) {  // an origin, '*', or a wildcard host (https://*.intranet)
    o = o.replace(/\/+$/, '');
    if (o === '*' || o === location.origin || o === location.host) return true;
    if (o.indexOf('*') < 0) return false;
    var rx = '^(https?://)?' + o.replace(/^https?:\/\//, '').replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace('*', '.+') + '$';
    return new RegExp(rx).test(location.origin) || new RegExp(rx).test(location.host);
  }
  var framable = base.replace(/^(https?:\/\/[^\/]+).*$/, '$1') === location.origin || allowed.split(' ').some(allows);
  var b = document.createElement('button');
  b.type = 'button';
  b.textContent = '政策问答';
  b.setAttribute('aria-label', '打开政策问答');
  b.style.cssText = 'position:fixed;right:20px;bottom:20px;z-index:99999;padding:10px 16px;border-radius:20px;' +
    'border:0;background:#b71c1c;color:#fff;cursor:pointer;font-size:14px';
  var panel = null;

  function close() {
    if (!panel) return;
    panel.remove();
    panel = null;
    b.setAttribute('aria-expanded', 'false');
    b.focus();
  }

  function open() {
    if (!framable) {  // a frame would be refused here: the chat in its own tab works everywhere
      window.open(base + '/embed', '_blank', 'noopener');
      return;
    }
    var small = window.matchMedia('(max-width: 480px)').matches || screen.width <= 480;
    panel = document.createElement('div');
    panel.setAttribute('role', 'dialog');
    panel.setAttribute('aria-label', '政策问答');
    panel.style.cssText = small
      ? 'position:fixed;inset:0;z-index:100000;background:#fff;display:flex;flex-direction:column'
      : 'position:fixed;right:20px;bottom:70px;width:min(380px,calc(100vw - 40px));height:min(560px,calc(100vh - 90px));' +
        'border:1px solid #ccc;border-radius:8px;z-index:99999;background:#fff;display:flex;flex-direction:column;overflow:hidden';
    var bar = document.createElement('div');
    bar.style.cssText = 'display:flex;justify-content:space-between;align-items:center;padding:4px 8px;' +
      'background:#b71c1c;color:#fff;font:14px sans-serif';
    bar.appendChild(document.createTextNode('政策问答'));
    var x = document.createElement('button');
    x.type = 'button';
    x.textContent = '×';
    x.setAttribute('aria-label', '关闭');
    x.style.cssText = 'background:none;border:0;color:#fff;font-size:22px;cursor:pointer;line-height:1';
    x.onclick = close;
    bar.appendChild(x);
    var f = document.createElement('iframe');
    f.src = base + '/embed';
    f.title = '政策问答';
    f.style.cssText = 'flex:1;width:100%;border:0';
    panel.appendChild(bar);
    panel.appendChild(f);
    document.body.appendChild(panel);
    b.setAttribute('aria-expanded', 'true');
    x.focus();
  }

  b.onclick = function () { panel ? close() : open(); };
  document.addEventListener('keydown', function (e) { if (e.key === 'Escape') close(); });
  window.addEventListener('message', function (e) {  // Esc pressed inside the frame
    if (e.origin === base.replace(/^(https?:\/\/[^\/]+).*$/, '$1') && e.data === 'policy-chat:close') close();
  });
  document.body.appendChild(b);
})();
