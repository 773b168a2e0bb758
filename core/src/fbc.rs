//! `_fbp` / `_fbc` cookie values (D-FBC): parsing, and building `_fbc` from a click id.

/// Cookie lifetime Meta recommends for server-set `_fbp`/`_fbc` (D-FBC: 90 days).
pub const COOKIE_MAX_AGE_SECS: u32 = 90 * 24 * 3600;
/// PB ignores click ids longer than this.
const MAX_FBCLID_LEN: usize = 500;

/// `fb.<subdomain index>.<creation ms>.<payload>[.<PB appendix>]` — the shape both cookies share.
fn parts(value: &str) -> Option<(&str, &str)> {
    let mut it = value.splitn(4, '.');
    let (fb, index, ms, rest) = (it.next()?, it.next()?, it.next()?, it.next()?);
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if fb != "fb"
        || !(index.len() == 1 && digits(index))
        || !(digits(ms) && ms.len() <= 16)
        || rest.is_empty()
    {
        return None;
    }
    // An optional Parameter Builder appendix follows the payload after one more dot.
    let payload = match rest.split_once('.') {
        Some((p, appendix)) if !appendix.is_empty() && !appendix.contains('.') => p,
        Some(_) => return None,
        None => rest,
    };
    Some((ms, payload))
}

/// True when `value` is a well-formed `_fbp` (random part all digits).
pub fn is_valid_fbp(value: &str) -> bool {
    matches!(parts(value), Some((_, random)) if random.len() <= 20 && random.bytes().all(|b| b.is_ascii_digit()))
}

/// The click id of a well-formed `_fbc`, if it is one.
pub fn fbc_click_id(value: &str) -> Option<&str> {
    parts(value)
        .map(|(_, click)| click)
        .filter(|c| is_valid_fbclid(c))
}

/// True for something Meta could have put in `fbclid` (URL-safe token, bounded length).
pub fn is_valid_fbclid(fbclid: &str) -> bool {
    !fbclid.is_empty()
        && fbclid.len() <= MAX_FBCLID_LEN
        && fbclid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// D-FBC "Store ClickID": a new `_fbc` is due when there is none, or when the URL's
/// `fbclid` differs from the one the cookie holds. The click id is kept exactly (case-sensitive).
pub fn fbc_for_click(fbclid: &str, now_ms: u64, existing: Option<&str>) -> Option<String> {
    if !is_valid_fbclid(fbclid) {
        return None;
    }
    match existing.and_then(fbc_click_id) {
        Some(current) if current == fbclid => None,
        _ => Some(format!("fb.1.{now_ms}.{fbclid}")),
    }
}

/// The `fbclid` query parameter of a page URL, undecoded (Meta: never alter it).
pub fn fbclid_in_url(url: &str) -> Option<&str> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("fbclid="))
        .filter(|v| !v.is_empty())
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
