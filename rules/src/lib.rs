//! The rules a browser can see, written once: the Worker (through `capi-core`) and the pixel
//! shim (compiled into its wasm) both use these functions, so the id the thank-you page derives,
//! the `_fbp`/`_fbc` values the shim writes and the ones the Worker accepts cannot drift apart.
//!
//! No dependencies, no `format!`, no panicking indexing, only `char` patterns (a `&str` pattern
//! pulls std's substring searcher, ~5 KB, into the shim). Known answers:
//! `tests/data/browser_rules.json`, read by the Rust tests and by the browser tests.

#![no_std]

extern crate alloc;

use alloc::string::String;

/// Cookie lifetime Meta recommends for `_fbp`/`_fbc` (90 days).
pub const COOKIE_MAX_AGE_SECS: u32 = 90 * 24 * 3600;

/// Meta's Parameter Builder ignores click ids longer than this.
const MAX_FBCLID_LEN: usize = 500;

/// The `event_id` of an order's Purchase, on both sides: the order webhook and the thank-you
/// page's `capi('purchase', {order_id})`. `purchase:<order id without surrounding spaces>`; an id
/// written as Shopify's global id (`gid://shopify/OrderIdentity/450789469`, as a checkout pixel
/// may have it) counts by its last part, the number the order webhook has.
pub fn event_id_for_order(order_id: &str) -> String {
    let order_id = order_id.trim();
    // Forward on purpose: `next_back` would bring std's reverse searcher into the shim (+90 B).
    #[allow(clippy::double_ended_iterator_last)]
    let order_id = match order_id.split('/').last() {
        Some(n) if !n.is_empty() && order_id.as_bytes().starts_with(b"gid://shopify/") => n,
        _ => order_id,
    };
    let mut id = String::from("purchase:");
    id.push_str(order_id);
    id
}

/// A new `_fbp`: `fb.<subdomain index>.<creation ms>.<random>` (Meta: random is a 31-bit
/// number, decimal).
pub fn fbp(subdomain_index: u32, ms: u64, random: u32) -> String {
    let mut s = fb_prefix(subdomain_index, ms);
    push_decimal(&mut s, u64::from(random));
    s
}

/// A new `_fbc`: `fb.<subdomain index>.<creation ms>.<fbclid>`, the click id unaltered
/// (Meta: case-sensitive, never decoded or rewritten).
pub fn fbc(subdomain_index: u32, ms: u64, fbclid: &str) -> String {
    let mut s = fb_prefix(subdomain_index, ms);
    s.push_str(fbclid);
    s
}

/// `fb.<index>.<ms>.`
fn fb_prefix(subdomain_index: u32, ms: u64) -> String {
    let mut s = String::with_capacity(40);
    s.push_str("fb.");
    push_decimal(&mut s, u64::from(subdomain_index));
    s.push('.');
    push_decimal(&mut s, ms);
    s.push('.');
    s
}

/// Appends the decimal digits of `n`. Divisions by the constant 10 only: a variable divisor
/// would bring a divide-by-zero panic path into the shim.
fn push_decimal(s: &mut String, mut n: u64) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
        start -= 1;
        if n == 0 {
            break;
        }
    }
    for &d in digits.get(start..).unwrap_or_default() {
        s.push(char::from(d));
    }
}

/// `fb.<subdomain index>.<creation ms>.<payload>[.<Parameter Builder appendix>]`, the shape both
/// cookies share: the payload, or None. A fifth part must be an appendix as Meta's Parameter
/// Builder reads one ([`is_appendix`]); any other value (`;`, spaces, a second appendix) is
/// refused whole, as Parameter Builder discards it.
fn payload(value: &str) -> Option<&str> {
    let rest = value.strip_prefix("fb.")?;
    let (index, rest) = rest.split_once('.')?;
    let (ms, rest) = rest.split_once('.')?;
    if !(index.len() == 1 && is_digits(index) && is_digits(ms) && ms.len() <= 16) {
        return None;
    }
    match rest.split_once('.') {
        Some((payload, appendix)) if is_appendix(appendix) => Some(payload),
        Some(_) => None,
        None => Some(rest),
    }
}

/// The appendix Meta's Parameter Builder puts after an `_fbp`/`_fbc` payload (capi-param-builder
/// `_validateAppendix`, `cookieUnpack`): a v1 language token, base64 of the SDK's language byte
/// (`AQ`, `Ag`, `Aw`, `BA`, `BQ`, `Bg`), or a v2 appendix of 8 characters, base64url of six
/// bytes (format, language, new/modified/unchanged, SDK major, minor, patch). Parameter Builder
/// takes any 8 characters; only its base64url alphabet is taken here, which keeps `;`, spaces
/// and quotes out of a Set-Cookie header and a CAPI field.
pub fn is_appendix(s: &str) -> bool {
    matches!(s, "AQ" | "Ag" | "Aw" | "BA" | "BQ" | "Bg") || (s.len() == 8 && is_token(s))
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `[A-Za-z0-9_-]+`: the URL-safe alphabet of click ids and Parameter Builder appendices.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// True when `value` is a well-formed `_fbp` (random part: 1–20 digits).
pub fn is_valid_fbp(value: &str) -> bool {
    payload(value).is_some_and(|random| random.len() <= 20 && is_digits(random))
}

/// The click id of a well-formed `_fbc`, if it is one.
pub fn fbc_click_id(value: &str) -> Option<&str> {
    payload(value).filter(|click| is_valid_fbclid(click))
}

/// True for something Meta could have put in `fbclid`: a URL-safe token of at most 500 bytes.
pub fn is_valid_fbclid(fbclid: &str) -> bool {
    fbclid.len() <= MAX_FBCLID_LEN && is_token(fbclid)
}

/// The raw (undecoded: Meta says never alter it) `fbclid` of a page URL: from the query, else
/// from a single-page app's fragment route (`/#/product?fbclid=…`), where Meta's pixel finds it
/// too. Not validated: see [`is_valid_fbclid`].
pub fn fbclid_in_url(url: &str) -> Option<&str> {
    let (before_fragment, fragment) = url.split_once('#').unwrap_or((url, ""));
    let query = before_fragment.split_once('?').map(|(_, q)| q);
    let route_query = fragment.split_once('?').map(|(_, q)| q);
    query
        .and_then(fbclid_in_query)
        .or_else(|| route_query.and_then(fbclid_in_query))
}

/// The `fbclid` of the page URL, else of the `Referer` (Meta's Parameter Builder reads both: a
/// redirect or a fragment-stripping router can lose it from the landing URL).
pub fn fbclid_in_page_or_referrer<'a>(url: &'a str, referrer: Option<&'a str>) -> Option<&'a str> {
    fbclid_in_url(url).or_else(|| referrer.and_then(fbclid_in_url))
}

/// The first non-empty `fbclid=` pair of a query string.
fn fbclid_in_query(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("fbclid="))
        .filter(|v| !v.is_empty())
}

/// The value of cookie `name` in a `Cookie` header or `document.cookie` string, if non-empty.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// The subdomain index of the domain a cookie is set on (Meta: `com` = 0, `example.com` = 1,
/// `www.example.com` = 2): its number of dots, a leading dot ignored. A host-only cookie (no
/// `Domain` attribute: `localhost`, an intranet name) counts its host the same way; an IP
/// address is not a domain and counts 0. At most 9: Meta's parsers read one digit.
pub fn subdomain_index(domain: &str) -> u32 {
    let domain = domain.strip_prefix('.').unwrap_or(domain);
    if is_ip_address(domain) {
        return 0;
    }
    let mut dots = 0;
    for b in domain.bytes() {
        if b == b'.' && dots < 9 {
            dots += 1;
        }
    }
    dots
}

/// An IPv6 literal (it has colons) or a dotted IPv4 address (digits and dots only).
pub fn is_ip_address(host: &str) -> bool {
    // Byte scans, not `contains(':')`: a char pattern pulls a searcher into the shim.
    host.bytes().any(|b| b == b':')
        || (!host.is_empty() && host.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_digits_are_exact_at_the_edges() {
        assert_eq!(fbp(0, 0, 0), "fb.0.0.0");
        assert_eq!(
            fbp(9, u64::MAX, u32::MAX),
            "fb.9.18446744073709551615.4294967295"
        );
    }

    #[test]
    fn an_appendix_with_a_dot_or_a_separator_refuses_the_whole_value() {
        assert_eq!(fbc_click_id("fb.1.1.AbC.x.y"), None);
        assert_eq!(fbc_click_id("fb.1.1.AbC.x;y"), None);
        assert_eq!(fbc_click_id("fb.1.1.AbC."), None);
        assert_eq!(fbc_click_id("fb.1.1.AbC.AQQCAQ;B"), None);
    }

    #[test]
    fn appendices_are_parameter_builders_v1_tokens_or_8_characters() {
        for ok in [
            "AQ", "Ag", "Aw", "BA", "BQ", "Bg", "AQQCAQIB", "AQYDAQAA", "ABCDEFGH",
        ] {
            assert!(is_appendix(ok), "{ok}");
        }
        for bad in [
            "",
            "A",
            "AB",
            "Bw",
            "aq",
            "BAA",
            "Aq_Q-1",
            "AQQCAQIBx",
            "AQQCAQ==",
        ] {
            assert!(!is_appendix(bad), "{bad}");
        }
    }
}
