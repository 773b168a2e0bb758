//! Reading the Cookie header and writing `_fbp`/`_fbc` and the browser id as first-party server
//! cookies.

use capi_core::fbc::is_domain;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// `crypto.getRandomValues`: the Workers runtime's cryptographic random source.
    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues)]
    fn get_random_values(buf: &mut [u8]);
}

/// 128 random bits for a new browser id.
pub fn random_128() -> [u8; 16] {
    let mut buf = [0u8; 16];
    get_random_values(&mut buf);
    buf
}

/// RFC 6265 `cookie-octet`s only: no `;`, space, quote, comma, backslash or control character
/// can reach a `Set-Cookie` header.
fn is_cookie_value(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 1024
        && v.bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e))
}

/// A first-party `Set-Cookie` living `max_age` seconds (`_fbp`/`_fbc`: 90 days, Meta's advice),
/// set by the server so Safari does not cap it at 7 days like script-written cookies; readable
/// by the pixel and the shim. None when the value is not a valid cookie value (it is dropped,
/// never echoed).
pub fn set_cookie(
    name: &str,
    value: &str,
    max_age: u32,
    domain: Option<&str>,
    secure: bool,
) -> Option<String> {
    if !is_cookie_value(value) {
        return None;
    }
    Some(cookie(name, value, max_age, domain, secure))
}

/// The `Set-Cookie` that deletes cookie `name` set by [`set_cookie`] on the same domain.
pub fn clear_cookie(name: &str, domain: Option<&str>, secure: bool) -> String {
    cookie(name, "", 0, domain, secure)
}

fn cookie(name: &str, value: &str, max_age: u32, domain: Option<&str>, secure: bool) -> String {
    let mut c = format!("{name}={value}; Max-Age={max_age}; Path=/; SameSite=Lax");
    if let Some(d) = domain.filter(|d| is_domain(d)) {
        c.push_str("; Domain=");
        c.push_str(d);
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAYS_90: u32 = capi_core::fbc::COOKIE_MAX_AGE_SECS;

    #[test]
    fn server_cookies_have_metas_attributes() {
        assert_eq!(
            set_cookie("_fbp", "v", DAYS_90, Some("example.com"), true).as_deref(),
            Some("_fbp=v; Max-Age=7776000; Path=/; SameSite=Lax; Domain=example.com; Secure")
        );
    }

    #[test]
    fn a_cleared_cookie_is_the_same_cookie_with_no_life_left() {
        assert_eq!(
            clear_cookie("_capi_eid", Some("example.com"), true),
            "_capi_eid=; Max-Age=0; Path=/; SameSite=Lax; Domain=example.com; Secure"
        );
    }

    #[test]
    fn values_outside_the_cookie_grammar_never_reach_a_header() {
        for bad in ["a;b", "a b", "a\r\nSet-Cookie: x=1", "a\"b", "a,b", "", "é"] {
            assert_eq!(
                set_cookie("_fbc", bad, DAYS_90, None, true),
                None,
                "{bad:?}"
            );
        }
        assert_eq!(
            set_cookie("_fbp", "v", DAYS_90, Some("evil.com; HttpOnly"), false).as_deref(),
            Some("_fbp=v; Max-Age=7776000; Path=/; SameSite=Lax")
        );
    }
}
