/* capi-edge sandbox: a stand-in for Meta's fbevents.js (local development and tests only).
 * It takes over the standard `fbq` queue like Meta's script does and forwards every
 * track/trackCustom call, with its eventID, to the sandbox that served it. */
(function (w) {
  var src = (document.currentScript && document.currentScript.src) || '';
  var sandbox = src.replace(/\/fbevents\.js(?:[?#].*)?$/, '');
  var pixels = [];
  var calls = w.__fbqCalls = w.__fbqCalls || [];
  function handle(args) {
    var a = Array.prototype.slice.call(args);
    if (a[0] === 'init') { pixels.push(String(a[1])); return; }
    if (a[0] !== 'track' && a[0] !== 'trackCustom') return;
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
