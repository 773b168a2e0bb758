// capi-edge loader: `<script src="/t/p.js" data-pixel="PIXEL_ID" async></script>`.
// Bundled by the build with the wasm-bindgen glue (web target) into one minified script.
// Options (data attributes): data-pageview="off" (no automatic PageView), data-fbq="off"
// (never install Meta's pixel), data-fbevents="URL" (where Meta's pixel script is loaded from),
// data-shopify-cart="on" (copy _fbp/_fbc into hidden Shopify cart attributes, which the order
// webhook carries back as note_attributes).
import { initSync, start, command } from './capi_pixel.js';

(function (w, d) {
  var s = d.currentScript, ds = (s && s.dataset) || {};
  var base = s ? s.src.replace(/\/p\.js(?:[?#].*)?$/, '') : '/t';
  // Commands given before the wasm is ready are queued, not lost (also from a page-side stub).
  var pending = (w.capi && w.capi.q) || [];
  if (!w.capi || w.capi.q) {
    w.capi = function () { pending.push(arguments); };
    w.capi.q = pending;
  }
  // Compiled off the main thread as it streams in; only the (cheap) instantiation is synchronous.
  WebAssembly.compileStreaming(fetch(base + '/p.wasm?v=__WASM_VERSION__')).then(function (module) {
    initSync({ module: module });
    start();
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
    if (ds.shopifyCart === 'on') {
      var ck = function (n) { var m = d.cookie.match('(?:^|; )' + n + '=([^;]+)'); return m ? m[1] : ''; };
      var attrs = { _fbp: ck('_fbp'), _fbc: ck('_fbc') }, sent = JSON.stringify(attrs);
      try {
        if (sessionStorage.getItem('capi_cart') !== sent) {
          fetch('/cart/update.js', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ attributes: attrs }), credentials: 'same-origin' })
            .then(function (r) { if (r.ok) sessionStorage.setItem('capi_cart', sent); });
        }
      } catch (e) { /* storage blocked: skip, the webhook falls back to landing_site */ }
    }
    var api = w.capi = function () { return command(base + '/e', Array.prototype.slice.call(arguments)); };
    api.loaded = true;
    if (ds.pageview !== 'off') api('track', 'PageView');
    for (var i = 0; i < pending.length; i++) api.apply(w, pending[i]);
    pending.length = 0;
  })['catch'](function (e) {
    if (w.console) w.console.warn('capi-edge: the pixel shim failed to load', e);
  });
})(window, document);
