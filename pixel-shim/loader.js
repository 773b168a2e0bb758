// capi-edge loader: `<script src="/t/p.js" data-pixel="PIXEL_ID" async></script>`.
// The wasm-bindgen glue (no-modules target) is prepended by the build; this part boots it.
// Options (data attributes): data-pageview="off" (no automatic PageView), data-fbq="off"
// (never install Meta's pixel), data-fbevents="URL" (where Meta's pixel script is loaded from).
(function (w, d) {
  var s = d.currentScript, ds = (s && s.dataset) || {};
  var base = s ? s.src.replace(/\/p\.js(?:[?#].*)?$/, '') : '/t';
  // Commands given before the wasm is ready are queued, not lost (also from a page-side stub).
  var pending = (w.capi && w.capi.q) || [];
  if (!w.capi || w.capi.q) {
    w.capi = function () { pending.push(arguments); };
    w.capi.q = pending;
  }
  wasm_bindgen({ module_or_path: base + '/p.wasm?v=__WASM_VERSION__' }).then(function () {
    var shim = wasm_bindgen;
    shim.start();
    // Meta's standard base code, when the page has no pixel of its own.
    if (!w.fbq && ds.fbq !== 'off' && ds.pixel) {
      var n = w.fbq = function () { n.callMethod ? n.callMethod.apply(n, arguments) : n.queue.push(arguments); };
      if (!w._fbq) w._fbq = n;
      n.push = n; n.loaded = true; n.version = '2.0'; n.queue = [];
      var t = d.createElement('script');
      t.async = true;
      t.src = ds.fbevents || 'https://connect.facebook.net/en_US/fbevents.js';
      (d.head || d.documentElement).appendChild(t);
      w.fbq('init', ds.pixel);
    }
    var api = w.capi = function () { return shim.command(base + '/e', Array.prototype.slice.call(arguments)); };
    api.loaded = true;
    if (ds.pageview !== 'off') api('track', 'PageView');
    for (var i = 0; i < pending.length; i++) api.apply(w, pending[i]);
    pending.length = 0;
  })['catch'](function (e) {
    if (w.console) w.console.warn('capi-edge: the pixel shim failed to load', e);
  });
})(window, document);
