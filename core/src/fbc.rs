//! `_fbp` / `_fbc` cookie values (D-FBC): parsing, and building `_fbc` from a click id. The
//! rules themselves live in `capi-rules`, which the pixel shim compiles in too: one source for
//! what the browser writes and what the Worker accepts.

pub use capi_rules::{
    cookie_value, fbc_click_id, fbclid_in_page_or_referrer, fbclid_in_url, is_appendix,
    is_valid_fbclid, is_valid_fbp, subdomain_index, COOKIE_MAX_AGE_SECS,
};

/// D-FBC "Store ClickID": a new `_fbc` is due when there is none, or when the URL's
/// `fbclid` differs from the one the cookie holds (Parameter Builder compares the same: the
/// fourth part, an appendix aside). The click id is kept exactly (case-sensitive).
/// `subdomain_index` is that of the domain the cookie is set on ([`subdomain_index`]).
///
/// The new value has no Parameter Builder appendix: an appendix names the Parameter Builder SDK
/// (its language byte) and version that wrote the value, and capi-edge is none of them. A
/// cookie that has one is kept and sent as it is (D-PBL: case-sensitive, send as-is).
pub fn fbc_for_click(
    fbclid: &str,
    subdomain_index: u32,
    now_ms: u64,
    existing: Option<&str>,
) -> Option<String> {
    if !is_valid_fbclid(fbclid) {
        return None;
    }
    match existing.and_then(fbc_click_id) {
        Some(current) if current == fbclid => None,
        _ => Some(capi_rules::fbc(subdomain_index, now_ms, fbclid)),
    }
}

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

/// A DNS name as a cookie `Domain` may hold: letters, digits, `-`, 1–63 per label.
pub fn is_domain(d: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_doc_examples_parse() {
        assert!(is_valid_fbp("fb.1.1596403881668.1116446470"));
        assert_eq!(
            fbc_click_id(
                "fb.1.1554763741205.IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgE"
            ),
            Some("IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgE")
        );
        assert_eq!(
            fbc_click_id("fb.1.1554763741205.AbCdEf.AQQCAQIB"),
            Some("AbCdEf")
        );
    }

    #[test]
    fn malformed_cookies_are_refused() {
        for bad in [
            "",
            "fb.1.123",
            "fb.1.abc.123",
            "xx.1.1596403881668.1",
            "fb.12.1596403881668.1",
            "fb.1.1596403881668.",
        ] {
            assert!(!is_valid_fbp(bad), "{bad}");
            assert_eq!(fbc_click_id(bad), None, "{bad}");
        }
        // Adsmurai#6: an _fbc without a click id segment is Meta's 2804001.
        assert_eq!(fbc_click_id("fb.1.1554763741205"), None);
    }

    #[test]
    fn fbc_is_built_only_when_the_click_id_is_new() {
        assert_eq!(
            fbc_for_click("AbC_1", 1, 1700000000000, None).as_deref(),
            Some("fb.1.1700000000000.AbC_1")
        );
        assert_eq!(
            fbc_for_click("AbC_1", 1, 1700000000001, Some("fb.1.1.AbC_1")),
            None
        );
        assert_eq!(
            fbc_for_click("Other", 1, 5, Some("fb.1.1.AbC_1")).as_deref(),
            Some("fb.1.5.Other")
        );
        assert_eq!(fbc_for_click("bad id", 1, 5, None), None);
    }

    #[test]
    fn fbclid_is_read_unaltered_from_the_url() {
        assert_eq!(
            fbclid_in_url("https://s.example/p?a=1&fbclid=IwAR_Xy-Z#top"),
            Some("IwAR_Xy-Z")
        );
        assert_eq!(fbclid_in_url("https://s.example/p?fbclid="), None);
        assert_eq!(fbclid_in_url("https://s.example/p"), None);
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
