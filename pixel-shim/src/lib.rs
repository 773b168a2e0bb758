//! capi-edge pixel shim: gives each browser event one `event_id`, hands it to Meta's pixel
//! (`fbq(..., {eventID})`) and posts the same event to the shop's own `/t/e`.
//!
//! Kept tiny on purpose: no serde, no `format!`, no panicking paths; JSON via `JSON.stringify`.
//! All JavaScript interop is in `ffi`.
//!
//! `no_std` in the browser: std's panic path formats its message (~4 KB of `core::fmt` in the
//! wasm, kept even with `panic = "abort"`); here a panic is a bare `unreachable` trap instead.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

mod ffi;
mod ids;

use alloc::string::String;
use capi_rules::cookie_value;
use wasm_bindgen::prelude::*;

/// `command`'s `privacy` bit: the visitor granted consent (beacon `"consent": "granted"`).
pub const CONSENT_GRANTED: u8 = 1;
/// `command`'s `privacy` bit: `navigator.globalPrivacyControl` is on (beacon `"gpc": true`).
pub const GPC: u8 = 4;

// A free-list allocator a few hundred bytes in size instead of std's dlmalloc (~7 KB); the
// shim allocates a handful of short strings per event.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: lol_alloc::LockedAllocator<lol_alloc::FreeListAllocator> =
    lol_alloc::LockedAllocator::new(lol_alloc::FreeListAllocator::new());

// No message, no formatting: the shim has no panicking paths by design, and a trap only ends
// this call (the page and Meta's pixel carry on).
#[cfg(all(target_arch = "wasm32", not(test)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

/// Called by the loader before Meta's pixel loads, once tracking is allowed (never while
/// consent is pending or refused): makes sure a valid `_fbp` (and `_fbc` when the URL has a new
/// `fbclid`) exist, so the pixel and the server see one `_fbp`.
#[wasm_bindgen]
pub fn start() {
    let href = ffi::href();
    let (secure, host) = ids::scheme_and_host(&href);
    let cookies = ffi::cookies();
    let now = ffi::now_ms() as u64;
    if !cookie_value(&cookies, "_fbp").is_some_and(capi_rules::is_valid_fbp) {
        let mut r = [0u8; 4];
        if ffi::random_bytes(&mut r) {
            let random = u32::from_le_bytes(r) & 0x7fff_ffff;
            ids::store_cookie(host, secure, "_fbp", |index| {
                capi_rules::fbp(index, now, random)
            });
        }
    }
    if let Some(click) = capi_rules::fbclid_in_url(&href) {
        if capi_rules::is_valid_fbclid(click)
            && cookie_value(&cookies, "_fbc").and_then(capi_rules::fbc_click_id) != Some(click)
        {
            ids::store_cookie(host, secure, "_fbc", |index| {
                capi_rules::fbc(index, now, click)
            });
        }
    }
}

/// One command from the page's `capi(...)` queue, beacons going to `endpoint` (`/t/e`):
/// `capi('track', 'AddToCart', {value, currency, content_ids})`,
/// `capi('trackCustom', 'MyEvent', {...})`, or on the thank-you page
/// `capi('purchase', {order_id, value, currency, ...})`, whose `event_id` is derived from the
/// order id exactly as the Worker derives it from the order webhook (`purchase:<order_id>`),
/// so the two copies deduplicate. `method`, `arg1` and `arg2` are the command's arguments as the
/// page gave them. `privacy` is what the loader knows of the visitor's choices, as bits:
/// [`CONSENT_GRANTED`], [`GPC`] (the loader sends nothing once consent is refused). Returns the
/// event's id (undefined if ignored).
#[wasm_bindgen]
pub fn command(
    endpoint: &str,
    method: &JsValue,
    arg1: &JsValue,
    arg2: &JsValue,
    privacy: u8,
    test_code: &str,
) -> Option<String> {
    let method = method.as_string()?;
    let purchase = method == "purchase";
    let name = if purchase {
        String::from("Purchase")
    } else if method == "track" || method == "trackCustom" {
        arg1.as_string().filter(|n| !n.is_empty())?
    } else {
        return None;
    };
    let params = ffi::params_or_empty(if purchase { arg1 } else { arg2 });
    // An order's Purchase (`capi('purchase', {order_id})`, or `capi('track', 'Purchase',
    // {order_id})` as a merchant used to `fbq` writes it) has the order's id, which its webhook's
    // copy has too.
    let order_id = (name == "Purchase" && method != "trackCustom")
        .then(|| ffi::non_blank_text_field(&params, "order_id"))
        .flatten();
    let event_id = match order_id {
        Some(order_id) => capi_rules::event_id_for_order(&order_id),
        None if purchase => return None,
        None => ids::uuid_v7(ffi::now_ms() as u64)?,
    };
    let method = if method == "trackCustom" {
        "trackCustom"
    } else {
        "track"
    };
    ffi::call_fbq(method, &name, &params, &event_id);
    send(endpoint, &name, &event_id, &params, privacy, test_code);
    Some(event_id)
}

/// Posts the event to the Worker: the same name and id the pixel got, plus page facts.
fn send(endpoint: &str, name: &str, event_id: &str, params: &JsValue, privacy: u8, test: &str) {
    let (href, referrer) = (ffi::href(), ffi::referrer());
    let cookies = ffi::cookies();
    let beacon = ffi::object();
    ffi::set_str(&beacon, "event_name", name);
    ffi::set_str(&beacon, "event_id", event_id);
    ffi::set_str(&beacon, "event_source_url", &href);
    if !referrer.is_empty() {
        ffi::set_str(&beacon, "referrer_url", &referrer);
    }
    // Whole milliseconds (`Date.now()` already is; the cast is `floor` for a positive time).
    let ms = ffi::now_ms() as u64;
    ffi::set_num(&beacon, "event_time_ms", ms as f64);
    // The Worker's consent gate reads these (absent = consent unknown / no GPC signal).
    if privacy & CONSENT_GRANTED != 0 {
        ffi::set_str(&beacon, "consent", "granted");
    }
    if privacy & GPC != 0 {
        ffi::set(&beacon, "gpc", &JsValue::TRUE);
    }
    // This browser session's Events Manager test code (`?capi_test=CODE`), checked by the loader.
    if !test.is_empty() {
        ffi::set_str(&beacon, "test_event_code", test);
    }
    for (key, cookie) in [("fbp", "_fbp"), ("fbc", "_fbc")] {
        if let Some(v) = cookie_value(&cookies, cookie) {
            ffi::set_str(&beacon, key, v);
        }
    }
    ffi::set(&beacon, "custom_data", params);
    ffi::post_beacon(endpoint, &beacon);
}
