//! Webhook signatures, verified on the raw body, in constant time, against up to two secrets
//! (comma separated, for rotation).

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was refused (all answered with 401; the reason goes to the log only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// The platform's signature header is absent.
    Missing,
    /// No secret is configured for this platform.
    NoSecret,
    /// The header is not in the platform's format.
    Malformed,
    /// No configured secret produces this signature.
    Mismatch,
    /// Stripe: the signed timestamp is outside the tolerance (replay protection).
    Stale,
}

impl SignatureError {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureError::Missing => "signature_missing",
            SignatureError::NoSecret => "secret_not_configured",
            SignatureError::Malformed => "signature_malformed",
            SignatureError::Mismatch => "signature_mismatch",
            SignatureError::Stale => "signature_timestamp_out_of_tolerance",
        }
    }
}

/// The configured secrets: at most two, comma separated.
fn secrets(configured: &str) -> impl Iterator<Item = &str> {
    configured
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .take(2)
}

/// True when HMAC-SHA256(secret, parts…) equals `expected`, compared in constant time.
fn hmac_matches(secret: &[u8], parts: &[&[u8]], expected: &[u8]) -> bool {
    hmac_matches_any(secret, parts, std::slice::from_ref(&expected))
}

/// One MAC over the body per secret, compared (in constant time) with each signature given: a
/// header listing many signatures costs no more hashing of the body than one.
fn hmac_matches_any<E: AsRef<[u8]>>(secret: &[u8], parts: &[&[u8]], expected: &[E]) -> bool {
    let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
        return false;
    };
    parts.iter().for_each(|p| mac.update(p));
    expected
        .iter()
        .any(|e| mac.clone().verify_slice(e.as_ref()).is_ok())
}

fn any_secret(configured: &str, check: impl Fn(&str) -> bool) -> Result<(), SignatureError> {
    let mut any = false;
    for s in secrets(configured) {
        any = true;
        if check(s) {
            return Ok(());
        }
    }
    if any {
        Err(SignatureError::Mismatch)
    } else {
        Err(SignatureError::NoSecret)
    }
}

/// The signature header, once a secret is configured: with none, the platform is not set up
/// (`NoSecret`, 503) whatever the request carries.
fn signature_header<'a>(
    header: Option<&'a str>,
    configured: &str,
) -> Result<&'a str, SignatureError> {
    if secrets(configured).next().is_none() {
        return Err(SignatureError::NoSecret);
    }
    header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(SignatureError::Missing)
}

fn base64_digest(header: Option<&str>, configured: &str) -> Result<Vec<u8>, SignatureError> {
    let h = signature_header(header, configured)?;
    let d = base64::engine::general_purpose::STANDARD
        .decode(h)
        .map_err(|_| SignatureError::Malformed)?;
    if d.len() == 32 {
        Ok(d)
    } else {
        Err(SignatureError::Malformed)
    }
}

fn hex_digest(h: &str) -> Option<Vec<u8>> {
    if h.len() != 64 {
        return None;
    }
    (0..32)
        .map(|i| {
            h.get(i * 2..i * 2 + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}

/// Shopify: `X-Shopify-Hmac-Sha256` = base64(HMAC-SHA256(secret, raw body)).
pub fn verify_shopify(
    body: &[u8],
    header: Option<&str>,
    configured: &str,
) -> Result<(), SignatureError> {
    let expected = base64_digest(header, configured)?;
    any_secret(configured, |s| {
        hmac_matches(s.as_bytes(), &[body], &expected)
    })
}

/// WooCommerce: `X-WC-Webhook-Signature` = base64(HMAC-SHA256(secret, raw body)), where
/// WooCommerce HTML-entity-decodes the secret first (`wp_specialchars_decode($secret, ENT_QUOTES)`).
pub fn verify_woocommerce(
    body: &[u8],
    header: Option<&str>,
    configured: &str,
) -> Result<(), SignatureError> {
    let expected = base64_digest(header, configured)?;
    any_secret(configured, |s| {
        hmac_matches(html_entity_decoded(s).as_bytes(), &[body], &expected)
    })
}

/// `wp_specialchars_decode(…, ENT_QUOTES)`: the five entities WordPress decodes.
fn html_entity_decoded(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#039;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Stripe's default replay tolerance (official libraries: 300 s).
pub const STRIPE_TOLERANCE_SECS: i64 = 300;

/// The most `v1` signatures a `Stripe-Signature` header may list (Stripe sends one per active
/// secret, two while a secret rolls); more is refused as malformed.
pub const STRIPE_MAX_SIGNATURES: usize = 8;

/// Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`, each v1 = hex(HMAC-SHA256(secret,
/// "{t}.{raw body}")); any v1 may match (Stripe sends several while rolling a secret).
pub fn verify_stripe(
    body: &[u8],
    header: Option<&str>,
    configured: &str,
    now_secs: i64,
) -> Result<(), SignatureError> {
    let h = signature_header(header, configured)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in h.split(',') {
        match item.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", sig)) => signatures.extend(hex_digest(sig)),
            _ => {}
        }
    }
    let t = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() || signatures.len() > STRIPE_MAX_SIGNATURES {
        return Err(SignatureError::Malformed);
    }
    let t_text = t.to_string();
    any_secret(configured, |s| {
        hmac_matches_any(s.as_bytes(), &[t_text.as_bytes(), b".", body], &signatures)
    })?;
    if (now_secs - t).abs() > STRIPE_TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// capi-edge's generic order webhook: `X-Capi-Signature: sha256=<hex of HMAC-SHA256(secret, raw body)>`
/// (the `sha256=` prefix is optional).
pub fn verify_order(
    body: &[u8],
    header: Option<&str>,
    configured: &str,
) -> Result<(), SignatureError> {
    let h = signature_header(header, configured)?;
    let hex = h.strip_prefix("sha256=").unwrap_or(h).to_ascii_lowercase();
    let expected = hex_digest(&hex).ok_or(SignatureError::Malformed)?;
    any_secret(configured, |s| {
        hmac_matches(s.as_bytes(), &[body], &expected)
    })
}

/// `Authorization: Bearer <token>` against the configured token, in constant time (an HMAC of
/// each under a fixed key, compared with `verify_slice`, so neither length nor content leaks).
pub fn bearer_matches(authorization: Option<&str>, expected: &str) -> bool {
    let Some(presented) = authorization.and_then(bearer_token) else {
        return false;
    };
    if expected.is_empty() {
        return false;
    }
    let digest = |s: &str| {
        let mut mac =
            HmacSha256::new_from_slice(b"capi-edge bearer").expect("HMAC takes keys of any length");
        mac.update(s.as_bytes());
        mac
    };
    digest(presented.trim())
        .verify_slice(&digest(expected).finalize().into_bytes())
        .is_ok()
}

/// The token of an `Authorization: Bearer …` header (the scheme in any case, RFC 9110 §11.1).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// Hex HMAC-SHA256, for signing test fixtures and the generic webhook's senders.
pub fn hmac_sha256_hex(secret: &str, body: &[u8]) -> String {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    crate::hash::lower_hex(&mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_must_match_exactly() {
        assert!(bearer_matches(Some("Bearer s3cret"), "s3cret"));
        assert!(!bearer_matches(Some("Bearer s3cre"), "s3cret"));
        assert!(!bearer_matches(Some("s3cret"), "s3cret"));
        assert!(!bearer_matches(None, "s3cret"));
        assert!(!bearer_matches(Some("Bearer "), ""));
        // The scheme in any case (RFC 9110 §11.1), never the token.
        assert!(bearer_matches(Some("bearer s3cret"), "s3cret"));
        assert!(bearer_matches(Some("BEARER s3cret"), "s3cret"));
        assert!(!bearer_matches(Some("Bearer S3CRET"), "s3cret"));
        assert!(!bearer_matches(Some("Basic s3cret"), "s3cret"));
    }

    #[test]
    fn a_platform_without_a_secret_is_not_configured_whatever_the_request_carries() {
        for header in [None, Some(""), Some("not base64 !"), Some("t=1,v1=zz")] {
            assert_eq!(
                verify_shopify(b"{}", header, ""),
                Err(SignatureError::NoSecret)
            );
            assert_eq!(
                verify_woocommerce(b"{}", header, " , "),
                Err(SignatureError::NoSecret)
            );
            assert_eq!(
                verify_stripe(b"{}", header, "", 0),
                Err(SignatureError::NoSecret)
            );
            assert_eq!(
                verify_order(b"{}", header, ""),
                Err(SignatureError::NoSecret)
            );
        }
        assert_eq!(verify_order(b"{}", None, "s"), Err(SignatureError::Missing));
    }

    #[test]
    fn a_stripe_header_may_list_a_few_signatures_and_no_more() {
        let body = b"{\"id\":\"evt_1\"}";
        let good = hmac_sha256_hex("whsec_b", b"100.{\"id\":\"evt_1\"}");
        let wrong = "0".repeat(64);
        // The matching signature last among several, checked against both secrets.
        let header = format!("t=100,v1={wrong},v1={wrong},v1={good}");
        assert_eq!(
            verify_stripe(body, Some(&header), "whsec_a,whsec_b", 100),
            Ok(())
        );
        // A header listing more than STRIPE_MAX_SIGNATURES is refused before any MAC is made,
        // even when one of them matches.
        let many = std::iter::repeat_n(format!("v1={wrong}"), STRIPE_MAX_SIGNATURES)
            .chain([format!("v1={good}")])
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            verify_stripe(body, Some(&format!("t=100,{many}")), "whsec_b", 100),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn rfc4231_case_2_known_answer() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            hmac_sha256_hex("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
