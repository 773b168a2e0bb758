//! Every call into JavaScript and the browser, in one place. Nothing here panics: a missing
//! API (old browser, sandboxed frame) reads as "absent" and the caller carries on.
//!
//! Imports are a few lines of JavaScript of our own (`inline_js`), not `web-sys`/`js-sys`: each
//! takes and returns plain strings, numbers and values, and catches its own exceptions, so the
//! wasm holds no exception plumbing, no global-object lookup and none of `js-sys`'s always-linked
//! task machinery (-2.3 KB gzip with the `no_std` panic path; BENCHMARKS.md, sizes).

use alloc::string::String;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(inline_js = r#"
export function cookies() { try { return document.cookie } catch (e) { return '' } }
export function write_cookie(c) { try { document.cookie = c } catch (e) {} }
export function href() { return location.href }
export function referrer() { return document.referrer }
export function now_ms() { return Date.now() }
export function random_bytes(b) { try { crypto.getRandomValues(b); return true } catch (e) { return false } }
export function call_fbq(m, n, p, id) {
  var f = window.fbq;
  if (typeof f == 'function') try { f.apply(null, [m, n, p, { eventID: id }]) } catch (e) {}
}
export function object() { return {} }
export function set(o, k, v) { o[k] = v }
export function params_or_empty(v) { return v !== null && typeof v == 'object' && !Array.isArray(v) ? v : {} }
export function text_field(o, k) {
  try { var v = o[k] } catch (e) { return }
  return typeof v == 'string' ? v : typeof v == 'number' ? v.toString(10) : undefined
}
export function post_beacon(u, b) {
  try { b = JSON.stringify(b) } catch (e) { return }
  var done = function () { var c = window.capi; c && c.settled && c.settled() };
  try { if ('keepalive' in Request.prototype) return fetch(u, { method: 'POST', body: b, keepalive: true, mode: 'no-cors', credentials: 'include' }).then(done, done) } catch (e) {}
  try { navigator.sendBeacon(u, b) } catch (e) {}
}
"#)]
extern "C" {
    /// `document.cookie`, or empty (it throws in a sandboxed frame).
    pub fn cookies() -> String;
    /// Writes one `document.cookie` assignment.
    pub fn write_cookie(assignment: &str);
    /// `location.href` (host, scheme and query are read from it in Rust: fewer imports).
    pub fn href() -> String;
    /// `document.referrer`.
    pub fn referrer() -> String;
    /// Milliseconds since the epoch (`Date.now()`: whole milliseconds).
    pub fn now_ms() -> f64;
    /// Fills `buf` from `crypto.getRandomValues`; false if the browser has no Web Crypto.
    pub fn random_bytes(buf: &mut [u8]) -> bool;
    /// `fbq(method, name, params, {eventID})` when the page has Meta's pixel (or its queue stub);
    /// what it throws stays there.
    pub fn call_fbq(method: &str, name: &str, params: &JsValue, event_id: &str);
    /// An empty JS object for building the beacon.
    pub fn object() -> JsValue;
    /// `obj[key] = value`.
    pub fn set(obj: &JsValue, key: &str, value: &JsValue);
    /// `obj[key] = value`, a string.
    #[wasm_bindgen(js_name = set)]
    pub fn set_str(obj: &JsValue, key: &str, value: &str);
    /// `obj[key] = value`, a number.
    #[wasm_bindgen(js_name = set)]
    pub fn set_num(obj: &JsValue, key: &str, value: f64);
    /// `value` when it is a plain object (the command's params), else a fresh empty object.
    pub fn params_or_empty(value: &JsValue) -> JsValue;
    /// `obj[key]` as text: a string, or a number's decimal form (order ids are either).
    fn text_field(obj: &JsValue, key: &str) -> Option<String>;
    /// Posts `JSON.stringify(beacon)` to `url` (nothing if it cannot be serialized: cycles,
    /// BigInt): `fetch` with `keepalive` (survives page unload), as `navigator.sendBeacon` sends
    /// (`no-cors`, cookies included, the body as `text/plain`); `sendBeacon` where the browser
    /// has no `keepalive` (Firefox before 133 would drop the fetch on unload). Unlike a
    /// beacon, the fetch's answer is seen: once it has landed (and with it the Worker's
    /// `Set-Cookie`), the loader's `capi.settled` runs, which expires the browser ids again if
    /// consent was refused while the beacon was in flight.
    pub fn post_beacon(url: &str, beacon: &JsValue);
}

/// `obj[key]` as text, when it is a non-blank string or a number.
pub fn non_blank_text_field(obj: &JsValue, key: &str) -> Option<String> {
    text_field(obj, key).filter(|s| !s.trim().is_empty())
}
