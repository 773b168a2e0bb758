/* capi-edge sandbox: a stand-in for Meta's fbevents.js (local development and tests only).
 * It takes over the standard `fbq` queue like Meta's script does and forwards every
 * track/trackCustom call, with its eventID, to the sandbox that served it. Like Meta's pixel it
 * sends nothing while consent is revoked. `window.__fbqLog` keeps every call in order
 * (consent, dataProcessingOptions, init, track, …) for tests. */
(function (w) {
  var src = (document.currentScript && document.currentScript.src) || '';
  var sandbox = src.replace(/\/fbevents\.js(?:[?#].*)?$/, '');
  var pixels = [];
  var calls = w.__fbqCalls = w.__fbqCalls || [];
  var log = w.__fbqLog = w.__fbqLog || [];
  var revoked = false;
  function handle(args) {
    var a = Array.prototype.slice.call(args);
    log.push(a);
    if (a[0] === 'consent') { revoked = a[1] === 'revoke'; return; }
    if (a[0] === 'init') { pixels.push(String(a[1])); return; }
    if (a[0] !== 'track' && a[0] !== 'trackCustom') return;
    if (revoked) return;
    var options = a[3] || {};
    var call = { method: a[0], event_name: a[1], event_id: options.eventID || null, params: a[2] || {}, pixel_ids: pixels.slice(), url: location.href };
    calls.push(call);
    fetch(sandbox + '/_sandbox/browser', { method: 'POST', body: JSON.stringify(call), keepalive: true, mode: 'cors' });
  }
  var f = w.fbq;
  if (!f) { f = w.fbq = function () { f.callMethod.apply(f, arguments); }; f.queue = []; }
  f.callMethod = function () { handle(arguments); };
  var queued = f.queue || [];
  f.queue = [];
  for (var i = 0; i < queued.length; i++) handle(queued[i]);
})(window);
