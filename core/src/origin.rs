//! Which browser origins may post beacons.

/// The origin (`scheme://host[:port]`) of an absolute URL.
pub fn origin_of(url: &str) -> Option<&str> {
    let scheme_end = url.find("://")?;
    let rest = &url[scheme_end + 3..];
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if host_end == 0 {
        return None;
    }
    url.get(..scheme_end + 3 + host_end)
}

/// A beacon is accepted from the Worker's own origin (the shop's domain) or from one listed
/// in `ALLOWED_ORIGINS` (comma separated, exact origins, e.g. the apex and `www.` hosts).
pub fn is_allowed_origin(origin: &str, own_origin: &str, allowed: &str) -> bool {
    let origin = origin.trim_end_matches('/');
    origin.eq_ignore_ascii_case(own_origin)
        || allowed
            .split(',')
            .map(|o| o.trim().trim_end_matches('/'))
            .any(|o| !o.is_empty() && o.eq_ignore_ascii_case(origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_compared_exactly() {
        assert_eq!(
            origin_of("https://shop.example.com/t/e?x=1"),
            Some("https://shop.example.com")
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8787"),
            Some("http://127.0.0.1:8787")
        );
        assert!(is_allowed_origin(
            "https://shop.example.com",
            "https://shop.example.com",
            ""
        ));
        assert!(is_allowed_origin(
            "https://www.example.com",
            "https://shop.example.com",
            "https://example.com, https://www.example.com"
        ));
        assert!(!is_allowed_origin(
            "https://evil.example",
            "https://shop.example.com",
            "https://example.com"
        ));
        assert!(!is_allowed_origin(
            "https://shop.example.com.evil.example",
            "https://shop.example.com",
            ""
        ));
        assert!(!is_allowed_origin("null", "https://shop.example.com", ""));
    }
}
