//! capi-edge pixel shim: gives each browser event one `event_id`, hands it to Meta's pixel
//! (`fbq(..., {eventID})`) and posts the same event to the shop's own `/t/e`.
//!
//! Kept tiny on purpose: no serde, no `format!`, no panicking paths; JSON via `JSON.stringify`.
//! All JavaScript interop is in `ffi`.

mod ffi;
mod ids;

use wasm_bindgen::prelude::*;

// A free-list allocator a few hundred bytes in size instead of std's dlmalloc (~7 KB); the
// shim allocates a handful of short strings per event.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: lol_alloc::LockedAllocator<lol_alloc::FreeListAllocator> =
    lol_alloc::LockedAllocator::new(lol_alloc::FreeListAllocator::new());

/// Called once by the loader, before Meta's pixel loads: makes sure `_fbp` (and `_fbc` when
/// the URL has a new `fbclid`) exist, so the pixel and the server see one `_fbp`.
#[wasm_bindgen]
pub fn start() {
    let href = ffi::href();
    let (secure, host) = ids::scheme_and_host(&href);
    let cookies = ffi::cookies();
    let now = ffi::now_ms() as u64;
    if ids::cookie_value(&cookies, "_fbp").is_none() {
        let mut r = [0u8; 4];
        if ffi::random_bytes(&mut r) {
            let random = u32::from_le_bytes(r) & 0x7fff_ffff;
            ids::store_cookie(host, secure, "_fbp", |index| ids::fbp(index, now, random));
        }
    }
    if let Some(click) = ids::query_param(&href, "fbclid") {
        if ids::is_fbclid(click)
            && ids::cookie_value(&cookies, "_fbc").and_then(ids::fbc_click_id) != Some(click)
        {
            ids::store_cookie(host, secure, "_fbc", |index| ids::fbc(index, now, click));
        }
    }
}

/// One command from the page's `capi(...)` queue, beacons going to `endpoint` (`/t/e`):
/// `capi('track', 'AddToCart', {value, currency, content_ids})`,
/// `capi('trackCustom', 'MyEvent', {...})`, or on the thank-you page
/// `capi('purchase', {order_id, value, currency, ...})`, whose `event_id` is derived from the
/// order id exactly as the Worker derives it from the order webhook (`purchase:<order_id>`),
/// so the two copies deduplicate. Returns the event's id (undefined if ignored).
#[wasm_bindgen]
pub fn command(endpoint: &str, args: js_sys::Array) -> Option<String> {
    let method = args.get(0).as_string()?;
    let (method, name, params, event_id) = if method == "purchase" {
        let params = ffi::params_or_empty(args.get(1));
        let order_id = ffi::text_field(&params, "order_id")?;
        (
            String::from("track"),
            String::from("Purchase"),
            params,
            ids::purchase_event_id(&order_id),
        )
    } else if method == "track" || method == "trackCustom" {
        let name = args.get(1).as_string().filter(|n| !n.is_empty())?;
        (
            method,
            name,
            ffi::params_or_empty(args.get(2)),
            ids::uuid_v7(ffi::now_ms() as u64)?,
        )
    } else {
        return None;
    };
    ffi::call_fbq(&method, &name, &params, &event_id);
    send(endpoint, &name, &event_id, &params);
    Some(event_id)
}

/// Posts the event to the Worker: the same name and id the pixel got, plus page facts.
fn send(endpoint: &str, name: &str, event_id: &str, params: &JsValue) {
    let (href, referrer) = (ffi::href(), ffi::referrer());
    let cookies = ffi::cookies();
    let beacon = ffi::object();
    ffi::set(&beacon, "event_name", &JsValue::from_str(name));
    ffi::set(&beacon, "event_id", &JsValue::from_str(event_id));
    ffi::set(&beacon, "event_source_url", &JsValue::from_str(&href));
    if !referrer.is_empty() {
        ffi::set(&beacon, "referrer_url", &JsValue::from_str(&referrer));
    }
    ffi::set(
        &beacon,
        "event_time_ms",
        &JsValue::from_f64(ffi::now_ms().floor()),
    );
    for (key, cookie) in [("fbp", "_fbp"), ("fbc", "_fbc")] {
        if let Some(v) = ids::cookie_value(&cookies, cookie) {
            ffi::set(&beacon, key, &JsValue::from_str(v));
        }
    }
    ffi::set(&beacon, "custom_data", params);
    let Some(body) = ffi::to_json(&beacon) else {
        return;
    };
    ffi::post_beacon(endpoint, &body);
}
