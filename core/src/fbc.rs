//! `_fbp` / `_fbc` cookie values (D-FBC): parsing, and building `_fbc` from a click id. The
//! rules themselves live in `capi-rules`, which the pixel shim compiles in too: one source for
//! what the browser writes and what the Worker accepts.

pub use capi_rules::{
    cookie_value, fbc_click_id, fbclid_in_page_or_referrer, fbclid_in_url, is_valid_fbclid,
    is_valid_fbp, subdomain_index, COOKIE_MAX_AGE_SECS,
};

/// D-FBC "Store ClickID": a new `_fbc` is due when there is none, or when the URL's
/// `fbclid` differs from the one the cookie holds. The click id is kept exactly (case-sensitive).
/// Built for the registrable domain the Worker sets it on (subdomain index 1).
pub fn fbc_for_click(fbclid: &str, now_ms: u64, existing: Option<&str>) -> Option<String> {
    if !is_valid_fbclid(fbclid) {
        return None;
    }
    match existing.and_then(fbc_click_id) {
        Some(current) if current == fbclid => None,
        _ => Some(capi_rules::fbc(1, now_ms, fbclid)),
    }
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
            fbc_for_click("AbC_1", 1700000000000, None).as_deref(),
            Some("fb.1.1700000000000.AbC_1")
        );
        assert_eq!(
            fbc_for_click("AbC_1", 1700000000001, Some("fb.1.1.AbC_1")),
            None
        );
        assert_eq!(
            fbc_for_click("Other", 5, Some("fb.1.1.AbC_1")).as_deref(),
            Some("fb.1.5.Other")
        );
        assert_eq!(fbc_for_click("bad id", 5, None), None);
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
}
