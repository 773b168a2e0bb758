//! Reading the Cookie header and writing `_fbp`/`_fbc` as first-party server cookies.

use capi_core::fbc::COOKIE_MAX_AGE_SECS;

/// The domain `_fbp`/`_fbc` are set on: `COOKIE_DOMAIN` when configured, else the request
/// host's registrable domain (`www.shop.co.uk` → `shop.co.uk`), so the shim's cookie and the
/// server's are one cookie, not two of different scope. None (host-only) for IP addresses,
/// `localhost`, and hosts that are themselves a public suffix.
///
/// The full Public Suffix List (the `psl` crate) would add ~285 KB gzip to a ~330 KB Worker,
/// so the registrable domain is the last two labels, or three under a country code's
/// second-level registry (`co.uk`, `com.au`, `co.jp`, …, see [`SECOND_LEVEL`]). Hosts under
/// other multi-label suffixes set `COOKIE_DOMAIN`.
pub fn cookie_domain(configured: Option<&str>, host: &str) -> Option<String> {
    if let Some(d) = configured {
        let d = d.trim().trim_start_matches('.').to_ascii_lowercase();
        return is_domain(&d).then_some(d);
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.parse::<std::net::IpAddr>().is_ok() || !host.contains('.') || !is_domain(&host) {
        return None;
    }
    let labels: Vec<&str> = host.split('.').collect();
    let n = labels.len();
    let cc_second_level =
        n >= 2 && labels[n - 1].len() == 2 && SECOND_LEVEL.contains(&labels[n - 2]);
    let take = if cc_second_level { 3 } else { 2 };
    (n >= take).then(|| labels[n - take..].join("."))
}

/// Second-level labels country-code registries sell domains under (`example.co.uk`,
/// `shop.com.au`, `store.co.jp`, `loja.com.br`): under a two-letter TLD these are public
/// suffixes, not registrable domains.
const SECOND_LEVEL: &[&str] = &[
    "ac", "co", "com", "edu", "gob", "gov", "gouv", "go", "ltd", "me", "mil", "ne", "net", "nic",
    "nom", "or", "org", "plc", "sch", "ind", "firm", "gen", "info", "biz",
];

fn is_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

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

    #[test]
    fn the_cookie_domain_is_the_registrable_domain() {
        assert_eq!(
            cookie_domain(None, "www.shop.example.com").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            cookie_domain(None, "www.shop.co.uk").as_deref(),
            Some("shop.co.uk")
        );
        assert_eq!(cookie_domain(None, "co.uk"), None);
        assert_eq!(
            cookie_domain(None, "www.shop.test").as_deref(),
            Some("shop.test")
        );
        assert_eq!(
            cookie_domain(None, "a.b.shop.com.au").as_deref(),
            Some("shop.com.au")
        );
        assert_eq!(cookie_domain(None, "127.0.0.1"), None);
        assert_eq!(cookie_domain(None, "localhost"), None);
        assert_eq!(
            cookie_domain(Some(".example.com"), "www.example.com").as_deref(),
            Some("example.com")
        );
    }
}
