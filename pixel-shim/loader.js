// capi-edge loader: `<script src="/t/p.js" data-pixel="PIXEL_ID" async></script>`.
// Bundled by the build with the wasm-bindgen glue (web target) into one minified script.
// Options (data attributes): data-pageview="off" (no automatic PageView), data-fbq="off"
// (never install Meta's pixel), data-fbevents="URL" (where Meta's pixel script is loaded from),
// data-shopify-cart="on" (copy _fbp/_fbc and the consent state into hidden Shopify cart
// attributes, which the order webhook carries back as note_attributes), data-consent="required"
// (opt-in: nothing runs until `capi('consent', 'grant')`).
// A consent banner calls capi('consent', …) on every page. The shim remembers only a refusal
// (localStorage `capi_consent`): the next page is then opt-in (events wait) until the banner
// speaks again; a grant forgets it. A refusal also expires the browser ids (_fbp, _fbc,
// _capi_eid), again on each page while it is remembered, and tells a pixel the page installed.
import { initSync, start, command } from './capi_pixel.js';

(function (w, d) {
  var s = d.currentScript, ds = (s && s.dataset) || {};
  var base = s ? s.src.replace(/\/p\.js(?:[?#].*)?$/, '') : '/t';
  // The Worker writes its privacy modes over this literal when it serves p.js (a JSON object:
  // consent optional|required, gpc ldu|drop|ignore, ldu off|on|geo); still a string = defaults.
  var modes = "__CAPI_MODES__";
  if (typeof modes != 'object') modes = {};
  var S = w.Shopify, shopify = S && (S.customerPrivacy || S.loadFeatures);
  var gpc = w.navigator.globalPrivacyControl === true;
  // Opt-in (and on Shopify, until its Customer Privacy API allows marketing): until consent is
  // granted no cookie is written, Meta's pixel is not loaded and no beacon leaves; events wait.
  var optIn = ds.consent == 'required' || modes.consent == 'required' || shopify;
  // GPC in "drop" mode: this page is treated as consent refused, whatever a banner says later.
  var locked = gpc && modes.gpc == 'drop';
  var consent = locked ? 'denied' : ''; // '' unknown | 'granted' | 'denied'
  // The browser ids, expired on the host and every parent domain they may have been set on.
  var forget = function () {
    for (var h = w.location.hostname.split('.'), i = 0; i < h.length; i++)
      ['_fbp', '_fbc', '_capi_eid'].forEach(function (n) { d.cookie = n + '=; max-age=0; path=/; domain=' + h.slice(i).join('.'); d.cookie = n + '=; max-age=0; path=/'; });
    if (w.fbq) w.fbq('consent', 'revoke');
  };
  try { if (localStorage.getItem('capi_consent') == 'denied') { optIn = 1; forget(); } } catch (e) { /* storage blocked */ }
  var ready, booted, held = [];
  // Events Manager test code for this browser session only: `?capi_test=CODE` on any page
  // starts it, `?capi_test=off` ends it (kept in sessionStorage: this tab, until it closes).
  var test = '';
  try {
    var tm = /[?&]capi_test=([A-Za-z0-9]{1,32})(?:[&#]|$)/.exec(w.location.search);
    if (tm) tm[1] == 'off' ? sessionStorage.removeItem('capi_test') : sessionStorage.setItem('capi_test', tm[1]);
    test = sessionStorage.getItem('capi_test') || '';
  } catch (e) { /* storage blocked: no test session */ }
  var ck = function (n) { var m = d.cookie.match('(?:^|; )' + n + '=([^;]+)'); return m ? m[1] : ''; };
  // Data controls on (CUSTOMER_DATA=hashed): the browser id the Worker set (_capi_eid), hashed
  // (SHA-256, lowercase hex) as the server copies send it, is the pixel's external_id. Web Crypto
  // needs https (or localhost); without it, or on a first visit (no id yet), init has none.
  var xid, hashed;
  try {
    var id = ck('_capi_eid');
    if (modes.customer_data == 'hashed' && /^[0-9a-f]{32}$/.test(id))
      hashed = crypto.subtle.digest('SHA-256', new TextEncoder().encode(id)).then((b) => {
        xid = { external_id: Array.from(new Uint8Array(b), (x) => (x | 256).toString(16).slice(1)).join('') };
      }, () => {});
  } catch (e) { /* cookies blocked (sandboxed frame), no Web Crypto: no external_id */ }

  // Every command goes through here, before and after the wasm is ready.
  function run(a) {
    if (a[0] == 'consent') {
      if (!locked && (a[1] == 'grant' || a[1] == 'revoke')) {
        consent = a[1] == 'grant' ? 'granted' : 'denied';
        try { a[1] == 'grant' ? localStorage.removeItem('capi_consent') : localStorage.setItem('capi_consent', consent); } catch (e) { /* storage blocked */ }
        // Meta's pixel: events held while consent is pending are dropped on revoke; the
        // browser ids expire (and the hash of the old one is not given to a later init).
        if (a[1] == 'revoke') { held.length = 0; xid = 0; forget(); }
        else if (w.fbq) w.fbq('consent', a[1]);
        flush();
      }
      return;
    }
    if (consent == 'denied') return;
    if (!ready || (optIn && !consent)) { held.push(a); return; }
    return command(base + '/e', a[0], a[1], a[2], (consent ? 1 : 0) | (gpc ? 4 : 0), test);
  }

  // Starts tracking once the wasm is ready and consent allows it, then sends what waited.
  function flush() {
    if (!ready) return;
    if (consent != 'denied' && !(optIn && !consent)) {
      if (!booted) {
        booted = 1;
        start();
        // Meta's standard base code, when the page has no pixel of its own. Meta requires
        // consent and data processing options before init.
        if (!w.fbq && ds.fbq != 'off' && ds.pixel) {
          var n = w.fbq = function () { n.callMethod ? n.callMethod.apply(n, arguments) : n.queue.push(arguments); };
          if (!w._fbq) w._fbq = n;
          n.push = n; n.loaded = true; n.version = '2.0'; n.queue = [];
          var t = d.createElement('script');
          t.async = true;
          t.src = ds.fbevents || 'https://connect.facebook.net/en_US/fbevents.js';
          (d.head || d.documentElement).appendChild(t);
          if (consent) n('consent', 'grant');
          // Meta LDU: [1, 1000] = California, [0, 0] = Meta geolocates the visitor.
          if (modes.ldu == 'on') n('dataProcessingOptions', ['LDU'], 1, 1000);
          else if (modes.ldu == 'geo' || (gpc && !modes.gpc) || (gpc && modes.gpc == 'ldu')) n('dataProcessingOptions', ['LDU'], 0, 0);
          n('init', ds.pixel, xid);
        }
      }
      var q = held.splice(0);
      for (var i = 0; i < q.length; i++) run(q[i]);
    }
    cart();
  }

  // Shopify: the cart attributes the order webhook carries back (with the browser's GPC signal,
  // which the order's Purchase then honours, written at once, consent or not). Never _fbp/_fbc
  // before tracking started; emptied (Shopify removes empty attributes) when consent is refused.
  function cart() {
    if (ds.shopifyCart != 'on' || !(booted || consent || gpc)) return;
    var attrs = consent == 'denied' ? { _fbp: '', _fbc: '', _capi_consent: consent } : booted ? { _fbp: ck('_fbp'), _fbc: ck('_fbc') } : {};
    if (consent == 'granted') attrs._capi_consent = consent;
    if (gpc) attrs._capi_gpc = '1';
    // Written once per cart (a new order in the same tab has a new cart: Shopify's `cart` token).
    var sent = JSON.stringify(attrs);
    try {
      if (sessionStorage.getItem('capi_cart') !== sent + ck('cart')) {
        fetch('/cart/update.js', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ attributes: attrs }), credentials: 'same-origin' })
          .then(function (r) { if (r.ok) sessionStorage.setItem('capi_cart', sent + ck('cart')); });
      }
    } catch (e) { /* storage blocked: skip, the webhook falls back to landing_site */ }
  }

  // Commands given before the wasm is ready wait in order (also from a page-side stub).
  var early = (w.capi && w.capi.q) || [];
  var api = w.capi = function () { return run(arguments); };
  // Called by the shim when a beacon's answer has landed: one sent before a refusal may carry
  // the Worker's Set-Cookie for _fbp/_fbc/_capi_eid, which must not outlive the refusal.
  api.settled = function () { if (consent == 'denied') forget(); };
  if (ds.pageview != 'off') held.push(['track', 'PageView']);
  for (var i = 0; i < early.length; i++) run(early[i]);

  // Shopify's Customer Privacy API: marketing allowed = granted; until then, opt-in. The
  // visitor's "do not sell or share" (saleOfDataAllowed false) counts as a GPC signal.
  if (shopify) {
    var optOut = function (sale) {
      if (sale !== false || gpc) return;
      gpc = true;
      if (modes.gpc == 'drop') { run(['consent', 'revoke']); locked = true; }
      flush();
    };
    var follow = function () { try { var P = S.customerPrivacy; optOut(P.saleOfDataAllowed && P.saleOfDataAllowed()); if (P.marketingAllowed()) run(['consent', 'grant']); } catch (e) {} };
    S.customerPrivacy ? follow() : S.loadFeatures([{ name: 'consent-tracking-api', version: '0.1' }], follow);
    d.addEventListener('visitorConsentCollected', function (e) { var x = e.detail || {}; optOut(x.saleOfDataAllowed); run(['consent', x.marketingAllowed ? 'grant' : 'revoke']); });
  }

  // Compiled off the main thread as it streams in; only the (cheap) instantiation is synchronous.
  // Tracking starts once the browser id is hashed too (a digest of 32 bytes: no wait to speak of).
  Promise.all([WebAssembly.compileStreaming(fetch(base + '/p.wasm?v=__WASM_VERSION__')), hashed]).then(function (r) {
    initSync({ module: r[0] });
    ready = api.loaded = true;
    flush();
  })['catch'](function (e) {
    if (w.console) w.console.warn('capi-edge: the pixel shim failed to load', e);
  });
})(window, document);
