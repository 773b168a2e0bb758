//! Event ids and writing the `_fbp`/`_fbc` cookies. What the values look like (and how the
//! Worker reads them back) is `capi_rules`; this module only knows the browser's cookie jar.

use crate::ffi;
use alloc::string::String;
use capi_rules::{cookie_value, is_ip_address, subdomain_index};

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

/// Whether `href` is https, and its host (no port, no credentials). Single-char patterns only:
/// a `&str` pattern would pull std's substring searcher (~5 KB) into the shim.
pub fn scheme_and_host(href: &str) -> (bool, &str) {
    let (scheme, rest) = href.split_once(':').unwrap_or(("", href));
    let authority = rest
        .trim_start_matches('/')
        .split(['/', '?', '#'])
        .next()
        .unwrap_or("");
    // Credentials end at the last `@`; a byte scan, as `split('@').next_back()` would pull std's
    // reverse searcher in (-400 B gzip).
    let host = match authority.bytes().rposition(|b| b == b'@') {
        Some(at) => authority.get(at + 1..).unwrap_or(""),
        None => authority,
    };
    // An IPv6 literal keeps its colons; otherwise a colon starts the port.
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host.split(':').next().unwrap_or(host),
    };
    (scheme == "https", host)
}

/// Writes a 90-day cookie on the widest domain the browser accepts (as Meta's own client code
/// does: the registrable domain, found by trying from the top), host-only on IPs/localhost.
/// `value_for` gets the subdomain index of the domain the cookie lands on, for `fb.<index>`.
pub fn store_cookie(host: &str, secure: bool, name: &str, value_for: impl Fn(u32) -> String) {
    if !is_ip_address(host) {
        // Suffixes with at least two labels, shortest first: `example.co.uk` is tried after
        // `co.uk`, which the browser refuses (a public suffix); the host itself last.
        // A plain reverse byte scan: `rmatch_indices` would pull std's reverse searcher in.
        let mut i = host.len();
        while i > 0 {
            i -= 1;
            let domain = match host.as_bytes().get(i) {
                Some(b'.') => host.get(i + 1..).unwrap_or(""),
                _ if i == 0 => host,
                _ => continue,
            };
            if domain.bytes().any(|b| b == b'.')
                && try_domain(name, &value_for(subdomain_index(domain)), domain, secure)
            {
                return;
            }
        }
    }
    write(name, &value_for(subdomain_index(host)), None, secure);
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
    // capi_rules::COOKIE_MAX_AGE_SECS, spelled out (a test holds them equal).
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
    fn what_the_shim_writes_the_worker_accepts() {
        assert!(capi_core::fbc::is_valid_fbp(&capi_rules::fbp(
            1,
            1_763_900_000_000,
            2_147_483_647
        )));
        let fbc = capi_rules::fbc(2, 1_763_900_000_000, "IwAR_x-1");
        assert_eq!(capi_core::fbc::fbc_click_id(&fbc), Some("IwAR_x-1"));
        assert_eq!(
            capi_core::fbc::fbc_for_click("IwAR_x-1", 2, 5, Some(&fbc)),
            None,
            "the Worker sees the same click id"
        );
        assert_eq!(capi_rules::COOKIE_MAX_AGE_SECS, 7_776_000);
    }

    #[test]
    fn host_is_read_from_the_page_url() {
        assert_eq!(
            scheme_and_host("https://u:p@shop.example.co.uk:8443/a?b#c"),
            (true, "shop.example.co.uk")
        );
        assert_eq!(scheme_and_host("http://[::1]:8787/"), (false, "::1"));
        assert_eq!(scheme_and_host("http://localhost/"), (false, "localhost"));
    }
}
