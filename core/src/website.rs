//! A browser beacon plus what the edge knows of the request → one `website` server event.
//!
//! Over 400 lines only with its tests.

use crate::beacon::Beacon;
use crate::custom_data::{self, Dropped};
use crate::event::{ServerEvent, UserData, UNHASHED_IDS};
use crate::fbc::{fbc_click_id, fbc_for_click, fbclid_in_page_or_referrer, is_valid_fbp};
use crate::normalize::{self, Field};
use crate::privacy::{self, CustomerData, Modes, Verdict};
use crate::quality::is_public;
use crate::webhook::lifecycle::{REFUND_EVENT, RENEWAL_EVENT};
use crate::MAX_EVENT_AGE_SECS;
use serde_json::Value;
use std::net::IpAddr;

/// What the edge saw of the HTTP request; all optional except the clock.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts<'a> {
    /// The client's address as the edge found it ([`cloudflare_client_ip`]: Cloudflare sets it,
    /// the client cannot). Sent only when [`client_ip_address`] accepts it: never a private,
    /// loopback or reserved address, never a port.
    pub client_ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub cookie_fbp: Option<&'a str>,
    pub cookie_fbc: Option<&'a str>,
    /// `Sec-GPC: 1` on the request (a browser setting page scripts cannot change).
    pub gpc_header: bool,
    /// Subdomain index of the cookie domain (`fb.<index>.…`, Meta: `example.com` is 1;
    /// `crate::fbc::subdomain_index`).
    pub subdomain_index: u32,
    pub now_ms: u64,
}

/// The event to send, what was dropped on the way, and the cookies to (re)set.
#[derive(Debug, Clone)]
pub struct WebsiteEvent {
    pub event: ServerEvent,
    /// `Some(reason)` when privacy rules say the event must not be relayed; then no cookie
    /// is set either.
    pub ignored: Option<&'static str>,
    /// This browser session's test code, when it carried a valid one: its events, and only
    /// its events, go to Events Manager → Test events.
    pub test_event_code: Option<String>,
    pub dropped: Vec<Dropped>,
    /// `_fbp` / `_fbc` values to set as server cookies (90 days; Safari caps script cookies).
    pub set_fbp: Option<String>,
    pub set_fbc: Option<String>,
    /// What to do with the browser id cookie ([`BROWSER_ID_COOKIE`]); None: leave it as it is.
    pub browser_id: Option<BrowserIdCookie>,
}

/// One address from a client-address header: `203.0.113.7`, `2001:db8::1`, or either with a
/// port (`203.0.113.7:443`, `[2001:db8::1]:443`), spaces around it ignored; an IPv4-mapped IPv6
/// address is its IPv4 address. None for anything else (a zone id, a list, a name).
pub fn header_ip(value: &str) -> Option<IpAddr> {
    let v = value.trim();
    let (host, port) = match v.strip_prefix('[') {
        Some(rest) => {
            let (inside, after) = rest.split_once(']')?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':')?),
            };
            (inside, port)
        }
        // A colon after an IPv4 address starts its port; an IPv6 address has several.
        None => match v.split_once(':') {
            Some((host, port)) if !port.contains(':') => (host, Some(port)),
            _ => (v, None),
        },
    };
    if port.is_some_and(|p| !(1..=5).contains(&p.len()) || !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let ip: IpAddr = host.parse().ok()?;
    // `[…]` holds IPv6 only (a bare `host:port` with one colon can only parse as IPv4).
    if v.starts_with('[') && !ip.is_ipv6() {
        return None;
    }
    Some(ip.to_canonical())
}

/// `client_ip_address` as Meta wants it (D-CIP: "IPv6 preferred"), chosen as Meta's Parameter
/// Builder chooses (capi-param-builder `_getClientIp`: IPv6 over IPv4, public over private):
/// of the candidates, in the order they are trusted, the first public IPv6 address, else the
/// first public IPv4 address, without port or brackets. An address that is not public
/// ([`is_public`]: private, loopback, link-local, carrier-grade NAT, Cloudflare's pseudo IPv4,
/// …) is the shop's network or a stand-in, never the shopper's, and is never sent.
pub fn client_ip_address(candidates: &[&str]) -> Option<String> {
    let mut v4 = None;
    for ip in candidates.iter().filter_map(|c| header_ip(c)) {
        if is_public(ip) {
            if ip.is_ipv6() {
                return Some(ip.to_string());
            }
            v4 = v4.or(Some(ip));
        }
    }
    v4.map(|ip| ip.to_string())
}

/// The client's address from Cloudflare's headers. `CF-Connecting-IP` is the address the client
/// connected from. A zone whose Pseudo IPv4 setting is "Overwrite headers" puts a Class E
/// stand-in there (240.0.0.0/4, not public) and the client's real address in
/// `CF-Connecting-IPv6` (developers.cloudflare.com/network/pseudo-ipv4). `CF-Connecting-IPv6` is
/// read only when `CF-Connecting-IP` holds no public address: Cloudflare sets it in no other
/// case, so there it could be a header the client sent itself.
pub fn cloudflare_client_ip(
    connecting_ip: Option<&str>,
    connecting_ipv6: Option<&str>,
) -> Option<String> {
    let ip = connecting_ip.unwrap_or("");
    match client_ip_address(&[ip]) {
        Some(public) => Some(public),
        None => client_ip_address(&[connecting_ipv6.unwrap_or("")]),
    }
}

/// The first-party cookie holding this browser's id, sent hashed as `external_id` while data
/// controls are on (`CUSTOMER_DATA = hashed`). Set by the Worker, read by the shim (which gives
/// the same hash to Meta's pixel), so it is not HttpOnly.
pub const BROWSER_ID_COOKIE: &str = "_capi_eid";

/// The browser id's lifetime: one year from when it was set, not extended by later visits (a new
/// id after that). The CNIL's guidance for audience cookies: 13 months at most, not renewed
/// automatically.
pub const BROWSER_ID_MAX_AGE_SECS: u32 = 365 * 24 * 3600;

/// What a beacon's answer does with the browser id cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrowserIdCookie {
    /// A new id: the browser had none (or not one of ours).
    Set(String),
    /// Data controls are off: an id set while they were on is deleted.
    Clear,
}

/// What the edge knows of the browser id: the cookie as the request carried it, and where new
/// random bits come from (called only when an id must be made).
pub struct BrowserId<'a> {
    pub cookie: Option<&'a str>,
    pub random: &'a mut dyn FnMut() -> [u8; 16],
}

/// A browser id: 128 random bits as 32 lowercase hex digits.
pub fn browser_id(random: [u8; 16]) -> String {
    crate::hash::lower_hex(&random)
}

/// True for a value [`browser_id`] makes.
pub fn is_browser_id(value: &str) -> bool {
    value.len() == 32
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Beacons are sent as the event happens, so a client clock more than this far from the
/// server's is wrong, not late: the server's clock wins.
const MAX_BEACON_SKEW_MS: u64 = 3600 * 1000;

/// `event_time` for a beacon: the client's time, clamped to the server clock — never in the
/// future, never older than the skew allowance (so never near Meta's 7-day limit).
pub fn beacon_event_time(client_ms: Option<u64>, now_ms: u64) -> i64 {
    let t = match client_ms {
        Some(c) if c <= now_ms && now_ms - c <= MAX_BEACON_SKEW_MS => c,
        _ => now_ms,
    };
    let secs = (t / 1000) as i64;
    secs.max((now_ms / 1000) as i64 - MAX_EVENT_AGE_SECS + 60)
}

/// Reason: a session test code not of the shape Events Manager issues.
pub const INVALID_TEST_CODE: &str = "invalid_test_event_code";
/// Reason: a session test code not in the tenant's allow-list (`TEST_EVENT_CODES`).
pub const TEST_CODE_NOT_LISTED: &str = "test_event_code_not_listed";

/// The browser session's test code (`?capi_test=CODE`, trimmed) if it may mark the session's
/// events, else the reason it is dropped. Any visitor can set one (a link to the shop can carry
/// it), and a marked event goes to Test Events instead of the live data; each distinct code also
/// makes a Conversions API request of its own. So only a code the tenant lists
/// (`TEST_EVENT_CODES`) is attached, and none while it lists none. An event whose code is
/// dropped is sent as a normal event.
pub fn session_test_code(code: &str, allowed: &[String]) -> Result<String, &'static str> {
    let code = code.trim();
    if !crate::event::is_test_event_code(code) {
        return Err(INVALID_TEST_CODE);
    }
    if !allowed.iter().any(|a| a.trim() == code) {
        return Err(TEST_CODE_NOT_LISTED);
    }
    Ok(code.to_string())
}

/// Builds the `website` event Meta receives for a beacon, under the shop's privacy modes; a
/// session test code is kept when it has Events Manager's shape.
pub fn website_event(
    beacon: Beacon,
    facts: &RequestFacts<'_>,
    modes: &Modes,
) -> crate::Result<WebsiteEvent> {
    tenant_website_event(beacon, facts, modes, &[])
}

/// [`website_event`] for a tenant that may list the test codes its visitors can use
/// (`TEST_EVENT_CODES`; empty: none, see [`session_test_code`]).
pub fn tenant_website_event(
    beacon: Beacon,
    facts: &RequestFacts<'_>,
    modes: &Modes,
    test_codes: &[String],
) -> crate::Result<WebsiteEvent> {
    browser_website_event(beacon, facts, modes, test_codes, None)
}

/// [`tenant_website_event`] for a browser that may carry the edge's browser id. With data
/// controls on (`CUSTOMER_DATA = hashed`) and the event relayed, the id (the cookie's, else a
/// new one, set as [`BrowserIdCookie::Set`]) is sent SHA-256-hashed as `external_id`, unless
/// the page gave an `external_id` of its own (the shop's customer id, as its orders carry).
/// With data controls off nothing of it is sent, and a cookie left from before is cleared.
pub fn browser_website_event(
    beacon: Beacon,
    facts: &RequestFacts<'_>,
    modes: &Modes,
    test_codes: &[String],
    browser: Option<BrowserId<'_>>,
) -> crate::Result<WebsiteEvent> {
    let mut dropped = Vec::new();
    let verdict = privacy::verdict(modes, beacon.consent, beacon.gpc || facts.gpc_header);
    let ua = facts.user_agent.map(str::trim).filter(|u| !u.is_empty());
    // Meta: website events require client_user_agent.
    let ua = ua.ok_or(crate::Error::MissingField("User-Agent header"))?;
    let mut user_data = UserData {
        client_user_agent: Some(ua.chars().take(512).collect()),
        client_ip_address: facts.client_ip.and_then(|ip| client_ip_address(&[ip])),
        ..UserData::default()
    };

    // _fbp: the cookie the browser sent wins over the copy in the body (same jar, but the
    // header cannot be altered by page scripts after the fact).
    let fbp = facts
        .cookie_fbp
        .filter(|v| is_valid_fbp(v))
        .or(beacon.fbp.as_deref().filter(|v| is_valid_fbp(v)));
    if fbp.is_none() && (facts.cookie_fbp.is_some() || beacon.fbp.is_some()) {
        dropped.push(Dropped {
            field: "fbp".into(),
            reason: "invalid_fbp",
        });
    }
    user_data.fbp = fbp.map(str::to_string);

    let existing_fbc = facts
        .cookie_fbc
        .filter(|v| fbc_click_id(v).is_some())
        .or(beacon.fbc.as_deref().filter(|v| fbc_click_id(v).is_some()));
    if existing_fbc.is_none() && (facts.cookie_fbc.is_some() || beacon.fbc.is_some()) {
        dropped.push(Dropped {
            field: "fbc".into(),
            reason: "invalid_fbc",
        });
    }
    // Meta's Parameter Builder: fbclid from the page URL, else from the referrer's query.
    let click =
        fbclid_in_page_or_referrer(&beacon.event_source_url, beacon.referrer_url.as_deref());
    let new_fbc = click
        .and_then(|click| fbc_for_click(click, facts.subdomain_index, facts.now_ms, existing_fbc));
    user_data.fbc = new_fbc.clone().or(existing_fbc.map(str::to_string));

    let country = beacon
        .user_data
        .get("country")
        .and_then(Value::as_str)
        .map(str::to_string);
    if modes.customer_data == CustomerData::Off {
        // Data controls off: contact fields are dropped before they are even normalized.
        dropped.extend(beacon.user_data.keys().map(|key| Dropped {
            field: key.clone(),
            reason: privacy::DATA_CONTROLS_OFF,
        }));
    }
    let user_fields = match modes.customer_data {
        CustomerData::Off => serde_json::Map::new(),
        CustomerData::Hashed => beacon.user_data,
    };
    for (key, value) in &user_fields {
        if UNHASHED_IDS.contains(&key.as_str()) {
            match value
                .as_str()
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.len() <= 256)
            {
                Some(v) => {
                    user_data.unhashed_ids.insert(key.clone(), v.to_string());
                }
                None => dropped.push(Dropped {
                    field: key.clone(),
                    reason: "invalid_id",
                }),
            }
            continue;
        }
        let Some(field) = Field::from_key(key) else {
            dropped.push(Dropped {
                field: key.clone(),
                reason: "unknown_user_data_field",
            });
            continue;
        };
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => {
                dropped.push(Dropped {
                    field: key.clone(),
                    reason: "not_a_string",
                });
                continue;
            }
        };
        match normalize::hashed(field, &text, country.as_deref()) {
            Ok(h) => *user_data.hashed_mut(field) = Some(h),
            Err(reason) => dropped.push(Dropped {
                field: key.clone(),
                reason: reason.as_str(),
            }),
        }
    }

    // After user_data: contact data found in custom_data fills only keys still empty (hashed).
    let custom_data = custom_data::sanitized(
        beacon.custom_data,
        modes.customer_data,
        &mut user_data,
        country.as_deref(),
        &mut dropped,
    );
    let test_event_code = match beacon
        .test_event_code
        .map(|code| session_test_code(&code, test_codes))
    {
        Some(Ok(code)) => Some(code),
        Some(Err(reason)) => {
            dropped.push(Dropped {
                field: "test_event_code".into(),
                reason,
            });
            None
        }
        None => None,
    };
    let (ignored, ldu) = match verdict {
        Verdict::Relay { ldu } => (None, ldu),
        Verdict::Ignore(reason) => (Some(reason), None),
    };
    let browser_id = browser.and_then(|b| {
        let held = b.cookie.filter(|v| is_browser_id(v));
        match (modes.customer_data, ignored) {
            (CustomerData::Hashed, None) => {
                let id = held.map_or_else(|| browser_id((b.random)()), str::to_string);
                if user_data.external_id.is_none() {
                    user_data.external_id = normalize::hashed(Field::ExternalId, &id, None).ok();
                }
                // Set once: a visit does not extend it (BROWSER_ID_MAX_AGE_SECS).
                held.is_none().then_some(BrowserIdCookie::Set(id))
            }
            (CustomerData::Off, _) if b.cookie.is_some() => Some(BrowserIdCookie::Clear),
            _ => None,
        }
    });
    let mut event = ServerEvent {
        event_name: beacon.event_name,
        event_time: beacon_event_time(beacon.event_time_ms, facts.now_ms),
        event_id: beacon.event_id,
        action_source: "website".into(),
        event_source_url: Some(beacon.event_source_url),
        referrer_url: beacon.referrer_url,
        user_data,
        custom_data,
        data_processing_options: None,
        data_processing_options_country: None,
        data_processing_options_state: None,
    };
    event.set_ldu(ldu);
    // No consent, no cookie: nothing is written for a visitor whose event is not relayed.
    let (set_fbp, set_fbc) = match ignored {
        Some(_) => (None, None),
        None => (
            event.user_data.fbp.clone(),
            new_fbc.or(existing_fbc.map(str::to_string)),
        ),
    };
    Ok(WebsiteEvent {
        event,
        ignored,
        test_event_code,
        dropped,
        set_fbp,
        set_fbc,
        browser_id,
    })
}

/// Reason: a beacon Purchase not relayed because signed order webhooks are configured.
pub const SIGNED_SOURCE_ONLY: &str = "signed_source_only";

/// The event ids the server gives the events of its order webhooks: an order's Purchase
/// (`purchase:`, `capi_rules::event_id_for_order`), its refunds, renewals and trials
/// (`webhook::lifecycle`).
pub const ORDER_EVENT_ID_PREFIXES: [&str; 4] = ["purchase:", "refund:", "renewal:", "trial:"];

/// The event ids of offline and CRM conversions (`offline::derived_event_id`), which the shop's
/// own uploads (`capi-edge send`) give them.
pub const OFFLINE_EVENT_ID_PREFIX: &str = "offline:";

/// Signed sources win: whether an unsigned beacon's server copy must not be relayed, because
/// its event belongs to a signed source.
///
/// - While any order webhook is configured, the server copy of a Purchase comes only from the
///   signed webhook: a beacon named `Purchase` or with a name only the webhooks give their
///   events (`OrderRefunded`, `SubscriptionRenewed`), or one that uses an id the webhooks give
///   their events (`purchase:…`, `refund:…`, `renewal:…`, `trial:…`, any case), goes to the
///   browser pixel only. So no unsigned beacon (a thank-you page arriving first, or a forged one) can
///   pre-empt, block or compete with the order's real Purchase, refund, renewal or trial.
///   Without webhooks such a beacon is relayed: it is then the only server copy.
/// - A beacon with an offline conversion's id (`offline:…`) is never relayed: only the shop's own
///   uploads make those, so a forged beacon cannot take the id of an upload still to come.
pub fn is_signed_source_only(event_name: &str, event_id: &str, signed_orders: bool) -> bool {
    let prefixed = |p: &str| {
        event_id
            .get(..p.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(p))
    };
    prefixed(OFFLINE_EVENT_ID_PREFIX)
        || signed_orders
            && (["purchase", REFUND_EVENT, RENEWAL_EVENT]
                .iter()
                .any(|n| event_name.eq_ignore_ascii_case(n))
                || ORDER_EVENT_ID_PREFIXES.iter().any(|p| prefixed(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_763_000_000_000;

    fn beacon(extra: &str) -> Beacon {
        let body = format!(
            r#"{{"event_name":"AddToCart","event_id":"e1","event_source_url":"https://s.example/p?fbclid=AbC-1"{extra}}}"#
        );
        Beacon::parse(body.as_bytes()).expect("valid beacon")
    }

    fn facts() -> RequestFacts<'static> {
        RequestFacts {
            client_ip: Some("2001:db8::1"),
            user_agent: Some("Mozilla/5.0"),
            subdomain_index: 1,
            now_ms: NOW,
            ..Default::default()
        }
    }

    const HASHED: Modes = Modes {
        customer_data: CustomerData::Hashed,
        consent: crate::privacy::ConsentMode::Optional,
        gpc: crate::privacy::GpcMode::Ldu,
        ldu: crate::privacy::LduMode::Off,
    };

    #[test]
    fn a_session_test_code_is_kept_only_when_valid_and_listed() {
        let listed = ["TEST12345".to_string()];
        let w = tenant_website_event(
            beacon(r#","test_event_code":"TEST12345""#),
            &facts(),
            &HASHED,
            &listed,
        )
        .expect("event");
        assert_eq!(w.test_event_code.as_deref(), Some("TEST12345"));
        // No list: no session code (a link to the shop could send its visitors' events to
        // Test Events).
        let w = website_event(
            beacon(r#","test_event_code":"TEST12345""#),
            &facts(),
            &HASHED,
        )
        .expect("event");
        assert_eq!(w.test_event_code, None);
        assert!(w.dropped.iter().any(|d| d.reason == TEST_CODE_NOT_LISTED));
        let w = tenant_website_event(
            beacon(r#","test_event_code":"TEST 1;x""#),
            &facts(),
            &HASHED,
            &listed,
        )
        .expect("event");
        assert_eq!(w.test_event_code, None);
        assert!(w
            .dropped
            .iter()
            .any(|d| d.reason == "invalid_test_event_code"));
    }

    #[test]
    fn session_test_codes_have_metas_shape_and_are_listed() {
        let none: &[String] = &[];
        assert_eq!(
            session_test_code(" TEST12345 ", none),
            Err(TEST_CODE_NOT_LISTED)
        );
        let mine = ["TEST12345".to_string(), "TEST123".to_string()];
        assert_eq!(
            session_test_code(" TEST12345 ", &mine),
            Ok("TEST12345".into())
        );
        assert_eq!(session_test_code("TEST123", &mine), Ok("TEST123".into()));
        for bad in ["", "T1", "test12345", "TEST-1", "TEST 1;x", &"A".repeat(21)] {
            assert_eq!(
                session_test_code(bad, &mine),
                Err(INVALID_TEST_CODE),
                "{bad}"
            );
        }
        let listed = ["TEST111".to_string(), "TEST222".to_string()];
        assert_eq!(session_test_code("TEST222", &listed), Ok("TEST222".into()));
        assert_eq!(
            session_test_code("TEST333", &listed),
            Err(TEST_CODE_NOT_LISTED)
        );
        let w = tenant_website_event(
            beacon(r#","test_event_code":"TEST333""#),
            &facts(),
            &HASHED,
            &listed,
        )
        .expect("event");
        assert_eq!(w.test_event_code, None, "sent as a normal event");
        assert!(w
            .dropped
            .iter()
            .any(|d| d.field == "test_event_code" && d.reason == TEST_CODE_NOT_LISTED));
    }

    #[test]
    fn with_webhooks_a_beacon_never_stands_in_for_a_signed_order_event() {
        assert!(is_signed_source_only("Purchase", "purchase:1234", true));
        assert!(is_signed_source_only("AddToCart", "PURCHASE:1234", true));
        assert!(is_signed_source_only("purchase", "0190-uuid", true));
        assert!(!is_signed_source_only("AddToCart", "0190-uuid", true));
        assert!(!is_signed_source_only("Purchase", "purchase:1234", false));
        // The ids the webhooks give refunds, renewals and trials are theirs too.
        let refund = crate::webhook::lifecycle::refund_event_id("1001", "cancel");
        for (name, id) in [
            ("OrderRefunded", refund.as_str()),
            ("SubscriptionRenewed", "renewal:in_1"),
            ("StartTrial", "Trial:sub_1"),
        ] {
            assert!(is_signed_source_only(name, id, true), "{id}");
            assert!(!is_signed_source_only(name, id, false), "{id}");
        }
        // So are the names only the webhooks give their events, whatever the id.
        for name in ["OrderRefunded", "subscriptionrenewed"] {
            assert!(is_signed_source_only(name, "x1", true), "{name}");
            assert!(!is_signed_source_only(name, "x1", false), "{name}");
        }
        assert!(!is_signed_source_only("StartTrial", "x1", true));
        assert!(ORDER_EVENT_ID_PREFIXES
            .iter()
            .any(|p| crate::webhook::event_id_for_order("1001").starts_with(p)));
        // An offline upload's id never comes from a browser, webhooks or not.
        assert!(is_signed_source_only("Purchase", "offline:0123abcd", false));
        assert!(is_signed_source_only("Lead", "OFFLINE:0123abcd", false));
        assert!(!is_signed_source_only("Lead", "offline-ish", false));
    }

    #[test]
    fn data_controls_off_sends_only_what_the_pixel_sends() {
        let w = website_event(
            beacon(r#","fbp":"fb.1.1.2","user_data":{"em":"jane@example.com","lead_id":"L1"}"#),
            &facts(),
            &Modes::default(),
        )
        .expect("event");
        let u = &w.event.user_data;
        assert_eq!((u.em.as_ref(), u.unhashed_ids.len()), (None, 0));
        assert!(u.fbp.is_some() && u.client_ip_address.is_some() && u.client_user_agent.is_some());
        let off: Vec<_> = w
            .dropped
            .iter()
            .filter(|d| d.reason == "data_controls_off")
            .map(|d| d.field.as_str())
            .collect();
        assert_eq!(off, ["em", "lead_id"]);
    }

    #[test]
    fn refused_consent_relays_nothing_and_sets_no_cookie() {
        let w = website_event(
            beacon(r#","fbp":"fb.1.1.2","consent":"denied""#),
            &facts(),
            &HASHED,
        )
        .expect("event");
        assert_eq!(w.ignored, Some("consent_refused"));
        assert_eq!((w.set_fbp, w.set_fbc), (None, None));
    }

    #[test]
    fn gpc_from_the_header_or_the_page_means_limited_data_use() {
        let f = RequestFacts {
            gpc_header: true,
            ..facts()
        };
        let w = website_event(beacon(""), &f, &HASHED).expect("event");
        assert_eq!(
            w.event.data_processing_options.as_deref(),
            Some(&["LDU".to_string()][..])
        );
        assert_eq!(
            (
                w.event.data_processing_options_country,
                w.event.data_processing_options_state
            ),
            (Some(0), Some(0))
        );
        let w = website_event(beacon(""), &facts(), &HASHED).expect("event");
        assert_eq!(w.event.data_processing_options, None);
    }

    #[test]
    fn fbclid_comes_from_the_referrer_when_the_page_url_has_none() {
        let b = Beacon::parse(
            br#"{"event_name":"PageView","event_id":"e2","event_source_url":"https://s.example/p","referrer_url":"https://s.example/landing?fbclid=IwAR_ref"}"#,
        )
        .expect("beacon");
        let f = RequestFacts {
            subdomain_index: 2,
            ..facts()
        };
        let w = website_event(b, &f, &HASHED).expect("event");
        assert_eq!(w.set_fbc, Some(format!("fb.2.{NOW}.IwAR_ref")));
        assert_eq!(crate::fbc::subdomain_index(".example.com"), 1);
    }

    #[test]
    fn event_time_is_clamped_to_the_server_clock() {
        assert_eq!(
            beacon_event_time(Some(NOW - 5_000), NOW),
            (NOW / 1000 - 5) as i64
        );
        assert_eq!(
            beacon_event_time(Some(NOW + 60_000), NOW),
            (NOW / 1000) as i64
        );
        assert_eq!(
            beacon_event_time(Some(NOW - 9 * 86_400_000), NOW),
            (NOW / 1000) as i64
        );
        assert_eq!(beacon_event_time(None, NOW), (NOW / 1000) as i64);
    }

    #[test]
    fn enrichment_and_hashing() {
        let w = website_event(
            beacon(r#","user_data":{"em":" Jane@Example.com ","ph":"+1 (650) 555-1212"}"#),
            &facts(),
            &HASHED,
        )
        .expect("event");
        let u = &w.event.user_data;
        assert_eq!(
            u.em.as_deref(),
            Some(crate::hash::sha256_hex("jane@example.com").as_str())
        );
        assert_eq!(
            u.ph.as_deref(),
            Some(crate::hash::sha256_hex("16505551212").as_str())
        );
        assert_eq!(u.client_ip_address.as_deref(), Some("2001:db8::1"));
        assert_eq!(u.fbc.as_deref(), Some(format!("fb.1.{NOW}.AbC-1").as_str()));
        assert_eq!(w.set_fbc, u.fbc);
        assert_eq!(w.event.action_source, "website");
    }

    #[test]
    fn metas_unhashed_ids_pass_through_and_client_supplied_network_facts_do_not() {
        let w = website_event(
            beacon(r#","user_data":{"lead_id":"L-1","client_ip_address":"6.6.6.6","em":"nope"}"#),
            &facts(),
            &HASHED,
        )
        .expect("event");
        let u = &w.event.user_data;
        assert_eq!(
            u.unhashed_ids.get("lead_id").map(String::as_str),
            Some("L-1")
        );
        assert_eq!(
            u.client_ip_address.as_deref(),
            Some("2001:db8::1"),
            "IP comes from the edge only"
        );
        assert_eq!(u.em, None);
        let reasons: Vec<_> = w
            .dropped
            .iter()
            .map(|d| (d.field.as_str(), d.reason))
            .collect();
        assert!(reasons.contains(&("client_ip_address", "unknown_user_data_field")));
        assert!(reasons.contains(&("em", "invalid_email")));
    }

    #[test]
    fn a_missing_user_agent_is_refused() {
        let f = RequestFacts {
            user_agent: None,
            ..facts()
        };
        assert_eq!(
            website_event(beacon(""), &f, &HASHED).map(|_| ()),
            Err(crate::Error::MissingField("User-Agent header"))
        );
    }

    #[test]
    fn invalid_cookies_are_dropped_with_a_reason() {
        let f = RequestFacts {
            cookie_fbp: Some("garbage"),
            ..facts()
        };
        let w = website_event(beacon(""), &f, &HASHED).expect("event");
        assert_eq!(w.event.user_data.fbp, None);
        assert!(w.dropped.iter().any(|d| d.reason == "invalid_fbp"));
    }
}
