//! Reading the Cookie header and writing `_fbp`/`_fbc` as first-party server cookies.

use capi_core::fbc::{is_domain, COOKIE_MAX_AGE_SECS};

/// RFC 6265 `cookie-octet`s only: no `;`, space, quote, comma, backslash or control character
/// can reach a `Set-Cookie` header.
fn is_cookie_value(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 1024
        && v.bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e))
}

/// A first-party `Set-Cookie` for `_fbp`/`_fbc`: 90 days (Meta's advice), set by the server so
/// Safari does not cap it at 7 days like script-written cookies; readable by the pixel.
/// None when the value is not a valid cookie value (it is dropped, never echoed).
pub fn set_cookie(name: &str, value: &str, domain: Option<&str>, secure: bool) -> Option<String> {
    if !is_cookie_value(value) {
        return None;
    }
    let mut c = format!("{name}={value}; Max-Age={COOKIE_MAX_AGE_SECS}; Path=/; SameSite=Lax");
    if let Some(d) = domain.filter(|d| is_domain(d)) {
        c.push_str("; Domain=");
        c.push_str(d);
    }
    if secure {
        c.push_str("; Secure");
    }
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_cookies_have_metas_attributes() {
        assert_eq!(
            set_cookie("_fbp", "v", Some("example.com"), true).as_deref(),
            Some("_fbp=v; Max-Age=7776000; Path=/; SameSite=Lax; Domain=example.com; Secure")
        );
    }

    #[test]
    fn values_outside_the_cookie_grammar_never_reach_a_header() {
        for bad in ["a;b", "a b", "a\r\nSet-Cookie: x=1", "a\"b", "a,b", "", "é"] {
            assert_eq!(set_cookie("_fbc", bad, None, true), None, "{bad:?}");
        }
        assert_eq!(
            set_cookie("_fbp", "v", Some("evil.com; HttpOnly"), false).as_deref(),
            Some("_fbp=v; Max-Age=7776000; Path=/; SameSite=Lax")
        );
    }
}
