//! Every call into JavaScript and the browser, in one place. Nothing here panics: a missing
//! API (old browser, sandboxed frame) reads as "absent" and the caller carries on.

use js_sys::{Array, Function, Object, Reflect, JSON};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{HtmlDocument, RequestInit, Window};

fn window() -> Option<Window> {
    web_sys::window()
}

fn html_document() -> Option<HtmlDocument> {
    window()?.document()?.dyn_into::<HtmlDocument>().ok()
}

/// `document.cookie`, or empty.
pub fn cookies() -> String {
    html_document()
        .and_then(|d| d.cookie().ok())
        .unwrap_or_default()
}

/// Writes one `document.cookie` assignment.
pub fn write_cookie(assignment: &str) {
    if let Some(d) = html_document() {
        let _ = d.set_cookie(assignment);
    }
}

/// `location.href` (host, scheme and query are read from it in Rust: fewer imports).
pub fn href() -> String {
    window()
        .and_then(|w| w.location().href().ok())
        .unwrap_or_default()
}

/// `document.referrer`.
pub fn referrer() -> String {
    window()
        .and_then(|w| w.document())
        .map(|d| d.referrer())
        .unwrap_or_default()
}

/// Milliseconds since the epoch.
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// Fills `buf` from `crypto.getRandomValues`; false if the browser has no Web Crypto.
pub fn random_bytes(buf: &mut [u8]) -> bool {
    window()
        .and_then(|w| w.crypto().ok())
        .is_some_and(|c| c.get_random_values_with_u8_array(buf).is_ok())
}

/// `fbq(method, name, params, {eventID})` when the page has Meta's pixel (or its queue stub).
pub fn call_fbq(method: &str, name: &str, params: &JsValue, event_id: &str) {
    let Some(w) = window() else { return };
    let Ok(fbq) = Reflect::get(&w, &JsValue::from_str("fbq")) else {
        return;
    };
    let Some(fbq) = fbq.dyn_ref::<Function>() else {
        return;
    };
    let options = Object::new();
    let _ = Reflect::set(
        &options,
        &JsValue::from_str("eventID"),
        &JsValue::from_str(event_id),
    );
    let args = Array::of4(
        &JsValue::from_str(method),
        &JsValue::from_str(name),
        params,
        &options,
    );
    let _ = fbq.apply(&JsValue::NULL, &args);
}

/// An empty JS object for building the beacon.
pub fn object() -> Object {
    Object::new()
}

pub fn set(obj: &Object, key: &str, value: &JsValue) {
    let _ = Reflect::set(obj, &JsValue::from_str(key), value);
}

/// `obj` when it is a plain object (the command's params), else a fresh empty object.
pub fn params_or_empty(value: JsValue) -> JsValue {
    if value.is_object() && !Array::is_array(&value) {
        value
    } else {
        Object::new().into()
    }
}

/// `obj[key]` as text: a non-empty string, or a number's decimal form (order ids are either).
pub fn text_field(obj: &JsValue, key: &str) -> Option<String> {
    let v = Reflect::get(obj, &JsValue::from_str(key)).ok()?;
    let s = v.as_string().or_else(|| {
        v.dyn_ref::<js_sys::Number>()?
            .to_string_with_radix(10)
            .ok()?
            .as_string()
    })?;
    Some(s).filter(|s| !s.trim().is_empty())
}

/// `JSON.stringify(value)`, or None if it cannot be serialized (cycles, BigInt).
pub fn to_json(value: &JsValue) -> Option<String> {
    JSON::stringify(value).ok().and_then(|s| s.as_string())
}

/// Posts `body` to `url`: `navigator.sendBeacon` (survives page unload), else `fetch` with
/// `keepalive`. Both send same-origin cookies and the body as `text/plain`.
pub fn post_beacon(url: &str, body: &str) {
    let Some(w) = window() else { return };
    if w.navigator()
        .send_beacon_with_opt_str(url, Some(body))
        .unwrap_or(false)
    {
        return;
    }
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_body(&JsValue::from_str(body));
    // web-sys has no setter for `keepalive`.
    let _ = Reflect::set(&init, &JsValue::from_str("keepalive"), &JsValue::TRUE);
    let _ = w.fetch_with_str_and_init(url, &init);
}
