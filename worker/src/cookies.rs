//! Reading the Cookie header and writing `_fbp`/`_fbc` as server cookies.

use capi_core::fbc::COOKIE_MAX_AGE_SECS;

/// The value of cookie `name` in a `Cookie:` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A first-party `Set-Cookie` for `_fbp`/`_fbc`: 90 days (Meta's advice), set by the server so
/// Safari does not cap it at 7 days like script-written cookies; readable by the pixel.
pub fn set_cookie(name: &str, value: &str, domain: Option<&str>, secure: bool) -> String {
    let mut c = format!("{name}={value}; Max-Age={COOKIE_MAX_AGE_SECS}; Path=/; SameSite=Lax");
    if let Some(d) = domain {
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

    #[test]
    fn cookies_are_found_by_exact_name() {
        let h = "a=1; _fbp=fb.1.2.3; x_fbp=no; _fbc=fb.1.2.AbC";
        assert_eq!(cookie(h, "_fbp"), Some("fb.1.2.3"));
        assert_eq!(cookie(h, "_fbc"), Some("fb.1.2.AbC"));
        assert_eq!(cookie(h, "_x"), None);
        assert_eq!(
            set_cookie("_fbp", "v", Some(".example.com"), true),
            "_fbp=v; Max-Age=7776000; Path=/; SameSite=Lax; Domain=.example.com; Secure"
        );
    }
}
