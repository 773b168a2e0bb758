//! Event ids and the `_fbp`/`_fbc` cookie values, as plain string building (no `format!`).

use crate::ffi;

/// A UUIDv7 (RFC 9562): 48-bit Unix ms, then 74 random bits from `crypto.getRandomValues`.
/// Time-ordered and collision-safe; None when the browser has no Web Crypto.
pub fn uuid_v7(now_ms: u64) -> Option<String> {
    let mut random = [0u8; 10];
    if !ffi::random_bytes(&mut random) {
        return None;
    }
    let t = now_ms.to_be_bytes();
    let [_, _, t0, t1, t2, t3, t4, t5] = t;
    let [r0, r1, r2, r3, r4, r5, r6, r7, r8, r9] = random;
    // version 7 in the high nibble of byte 6, variant 0b10 in byte 8
    let b = [
        t0,
        t1,
        t2,
        t3,
        t4,
        t5,
        (r0 & 0x0f) | 0x70,
        r1,
        (r2 & 0x3f) | 0x80,
        r3,
        r4,
        r5,
        r6,
        r7,
        r8,
        r9,
    ];
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(HEX[usize::from(byte >> 4)] as char);
        s.push(HEX[usize::from(byte & 0xf)] as char);
    }
    Some(s)
}

/// The Purchase `event_id` for an order: `purchase:<order id>`, as `capi_core::webhook::
/// event_id_for_order` derives it from the order webhook (a test holds the two together).
pub fn purchase_event_id(order_id: &str) -> String {
    let mut id = String::from("purchase:");
    id.push_str(order_id.trim());
    id
}

/// Decimal digits of `n`.
fn push_u64(s: &mut String, n: u64) {
    let mut div = 1;
    while n / div >= 10 {
        div *= 10;
    }
    while div > 0 {
        s.push(char::from(b'0' + (n / div % 10) as u8));
        div /= 10;
    }
}

/// `fb.<index>.<ms>.<tail>` (D-FBC).
fn fb_value(index: u64, ms: u64, tail: &str) -> String {
    let mut s = String::from("fb.");
    push_u64(&mut s, index);
    s.push('.');
    push_u64(&mut s, ms);
    s.push('.');
    s.push_str(tail);
    s
}

/// A new `_fbp`: `fb.<index>.<ms>.<random 31-bit>`.
pub fn fbp(index: u64, ms: u64, random: u32) -> String {
    let mut r = String::new();
    push_u64(&mut r, u64::from(random));
    fb_value(index, ms, &r)
}

/// A new `_fbc`: `fb.<index>.<ms>.<fbclid>`, the click id unaltered (Meta: case-sensitive).
pub fn fbc(index: u64, ms: u64, fbclid: &str) -> String {
    fb_value(index, ms, fbclid)
}

/// The click id inside an `_fbc` value (4th segment).
pub fn fbc_click_id(value: &str) -> Option<&str> {
    value.split('.').nth(3).filter(|c| !c.is_empty())
}

/// A plausible `fbclid`: URL-safe characters, at most 500 long.
pub fn is_fbclid(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 500
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `href` is https, and its host (no port, no credentials). Single-char patterns only:
/// a `&str` pattern would pull std's substring searcher (~5 KB) into the shim.
pub fn scheme_and_host(href: &str) -> (bool, &str) {
    let (scheme, rest) = href.split_once(':').unwrap_or(("", href));
    let authority = rest
        .trim_start_matches('/')
        .split(['/', '?', '#'])
        .next()
        .unwrap_or("");
    let host = authority.split('@').next_back().unwrap_or(authority);
    // An IPv6 literal keeps its colons; otherwise a colon starts the port.
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host.split(':').next().unwrap_or(host),
    };
    (scheme == "https", host)
}

/// The raw value of query parameter `name` in `href` (undecoded: a click id must stay exact).
pub fn query_param<'a>(href: &'a str, name: &str) -> Option<&'a str> {
    let query = href.split('#').next()?.split_once('?')?.1;
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// The value of cookie `name` in a `document.cookie` string.
pub fn cookie_value<'a>(cookies: &'a str, name: &str) -> Option<&'a str> {
    cookies
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// Writes a 90-day cookie on the widest domain the browser accepts (as Meta's own client code
/// does: the registrable domain, found by trying from the top), host-only on IPs/localhost.
/// `value_for` gets the subdomain index (labels of the cookie domain − 1) for `fb.<index>`.
pub fn store_cookie(host: &str, secure: bool, name: &str, value_for: impl Fn(u64) -> String) {
    let is_ip = host.contains(':') || host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if !is_ip {
        // Suffixes with at least two labels, shortest first: `example.co.uk` is tried after
        // `co.uk`, which the browser refuses (a public suffix).
        // A plain reverse byte scan: `rmatch_indices` would pull std's reverse searcher in.
        let mut labels = 1u64;
        let mut i = host.len();
        while i > 0 {
            i -= 1;
            if host.as_bytes().get(i) != Some(&b'.') {
                continue;
            }
            labels += 1;
            // `labels - 1` dots seen so far: the suffix after this dot has `labels - 1` labels.
            if labels > 2 {
                if let Some(domain) = host.get(i + 1..) {
                    if try_domain(name, &value_for(labels - 2), domain, secure) {
                        return;
                    }
                }
            }
        }
        if labels >= 2 && try_domain(name, &value_for(labels - 1), host, secure) {
            return;
        }
    }
    write(name, &value_for(0), None, secure);
}

fn try_domain(name: &str, value: &str, domain: &str, secure: bool) -> bool {
    write(name, value, Some(domain), secure);
    cookie_value(&ffi::cookies(), name) == Some(value)
}

fn write(name: &str, value: &str, domain: Option<&str>, secure: bool) {
    let mut c = String::with_capacity(96);
    c.push_str(name);
    c.push('=');
    c.push_str(value);
    c.push_str("; max-age=7776000; path=/; SameSite=Lax");
    if let Some(d) = domain {
        c.push_str("; domain=");
        c.push_str(d);
    }
    if secure {
        c.push_str("; Secure");
    }
    ffi::write_cookie(&c);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shim_derives_ids_and_cookies_exactly_as_the_worker_reads_them() {
        for order in ["1001", " 5123456789 ", "order-5001"] {
            assert_eq!(
                purchase_event_id(order),
                capi_core::webhook::event_id_for_order(order)
            );
        }
        assert!(capi_core::fbc::is_valid_fbp(&fbp(
            1,
            1_763_900_000_000,
            2_147_483_647
        )));
        let fbc = fbc(2, 1_763_900_000_000, "IwAR_x-1");
        assert_eq!(capi_core::fbc::fbc_click_id(&fbc), Some("IwAR_x-1"));
        assert_eq!(
            capi_core::fbc::fbc_for_click("IwAR_x-1", 5, Some(&fbc)),
            None,
            "the Worker sees the same click id"
        );
    }

    #[test]
    fn cookie_values_have_metas_shape() {
        assert_eq!(
            fbp(1, 1596403881668, 1116446470),
            "fb.1.1596403881668.1116446470"
        );
        assert_eq!(
            fbc(1, 1554763741205, "IwAR2F4-dbP"),
            "fb.1.1554763741205.IwAR2F4-dbP"
        );
        assert_eq!(
            fbc_click_id("fb.1.1554763741205.IwAR2F4-dbP"),
            Some("IwAR2F4-dbP")
        );
        assert_eq!(cookie_value("a=1; _fbp=fb.1.2.3", "_fbp"), Some("fb.1.2.3"));
        assert_eq!(cookie_value("x_fbp=1", "_fbp"), None);
        assert!(is_fbclid("IwAR_a-1") && !is_fbclid("a b"));
        assert_eq!(
            scheme_and_host("https://u:p@shop.example.co.uk:8443/a?b#c"),
            (true, "shop.example.co.uk")
        );
        assert_eq!(scheme_and_host("http://[::1]:8787/"), (false, "::1"));
        assert_eq!(
            query_param("http://h/p?a=1&fbclid=IwAR_x-1#f", "fbclid"),
            Some("IwAR_x-1")
        );
        assert_eq!(query_param("http://h/p#x?fbclid=1", "fbclid"), None);
    }
}
