//! Parity with Meta's Parameter Builder (github.com/facebook/capi-param-builder): the known
//! answers of `data/param_builder_fbc.json` (cookies, click ids) and `data/param_builder_ip.json`
//! (the client address), each case naming the Parameter Builder test or rule it comes from.

use capi_core::beacon::Beacon;
use capi_core::fbc::{fbc_click_id, fbclid_in_page_or_referrer, is_valid_fbp};
use capi_core::privacy::{CustomerData, Modes};
use capi_core::website::{
    browser_website_event, client_ip_address, cloudflare_client_ip, website_event, BrowserId,
    BrowserIdCookie, RequestFacts, BROWSER_ID_COOKIE,
};
use serde_json::Value;

fn cases(file: &str, group: &str) -> Vec<Value> {
    let all: Value = serde_json::from_str(file).expect("valid JSON");
    let cases = all[group].as_array().expect("group present").clone();
    assert!(!cases.is_empty(), "{group} has cases");
    for c in &cases {
        assert!(
            c["source"].as_str().is_some_and(|s| !s.is_empty()),
            "{group}: every case names its source"
        );
    }
    cases
}

const FBC: &str = include_str!("data/param_builder_fbc.json");
const IP: &str = include_str!("data/param_builder_ip.json");

fn s(v: &Value) -> &str {
    v.as_str().expect("string")
}

#[test]
fn cookies_are_read_with_parameter_builders_grammar() {
    for c in cases(FBC, "cookies") {
        let value = s(&c["value"]);
        let expected = c["expected"].as_str();
        match s(&c["cookie"]) {
            "_fbc" => assert_eq!(fbc_click_id(value), expected, "{c}"),
            "_fbp" => {
                assert_eq!(is_valid_fbp(value), expected.is_some(), "{c}");
                if let Some(random) = expected {
                    assert_eq!(value.split('.').nth(3), Some(random), "{c}");
                }
            }
            other => panic!("unknown cookie {other}"),
        }
    }
}

#[test]
fn fbclid_comes_from_the_page_else_the_referrer() {
    for c in cases(FBC, "fbclid") {
        assert_eq!(
            fbclid_in_page_or_referrer(s(&c["page_url"]), c["referrer"].as_str()),
            c["expected"].as_str(),
            "{c}"
        );
    }
}

#[test]
fn fbc_is_kept_or_rewritten_as_parameter_builder_does_without_its_appendix() {
    for c in cases(FBC, "requests") {
        let mut beacon = serde_json::json!({
            "event_name": "PageView",
            "event_id": "e1",
            "event_source_url": s(&c["page_url"]),
        });
        if let Some(r) = c["referrer"].as_str() {
            beacon["referrer_url"] = r.into();
        }
        let beacon = Beacon::parse(beacon.to_string().as_bytes()).expect("beacon");
        let facts = RequestFacts {
            user_agent: Some("Mozilla/5.0"),
            cookie_fbc: c["cookie_fbc"].as_str(),
            subdomain_index: u32::try_from(c["subdomain_index"].as_u64().expect("index"))
                .expect("u32"),
            now_ms: c["now_ms"].as_u64().expect("now"),
            ..Default::default()
        };
        let w = website_event(beacon, &facts, &Modes::default()).expect("event");
        assert_eq!(
            w.event.user_data.fbc.as_deref(),
            c["expected_fbc"].as_str(),
            "sent: {c}"
        );
        assert_eq!(
            w.set_fbc.as_deref(),
            c["expected_set_fbc"].as_str(),
            "set: {c}"
        );
        // What differs from Parameter Builder is its appendix only.
        let without_appendix = c["parameter_builder"].as_str().map(|pb| {
            let parts: Vec<&str> = pb.split('.').collect();
            match c["cookie_fbc"].as_str() {
                Some(cookie) if cookie == pb => pb.to_string(),
                _ => parts[..4].join("."),
            }
        });
        assert_eq!(
            without_appendix.as_deref(),
            c["expected_fbc"].as_str(),
            "{c}"
        );
    }
}

#[test]
fn the_client_address_is_chosen_as_parameter_builder_chooses() {
    for c in cases(IP, "choice") {
        let candidates: Vec<&str> = c["candidates"]
            .as_array()
            .expect("candidates")
            .iter()
            .map(s)
            .collect();
        assert_eq!(
            client_ip_address(&candidates),
            c["expected"].as_str().map(str::to_string),
            "{c}"
        );
    }
}

#[test]
fn the_client_address_from_cloudflares_headers() {
    for c in cases(IP, "cloudflare") {
        assert_eq!(
            cloudflare_client_ip(
                c["cf_connecting_ip"].as_str(),
                c["cf_connecting_ipv6"].as_str()
            ),
            c["expected"].as_str().map(str::to_string),
            "{c}"
        );
    }
}

#[test]
fn a_private_address_is_never_sent_as_the_clients() {
    let beacon = Beacon::parse(
        br#"{"event_name":"PageView","event_id":"e1","event_source_url":"https://s.example/"}"#,
    )
    .expect("beacon");
    let facts = RequestFacts {
        client_ip: Some("10.1.2.3"),
        user_agent: Some("Mozilla/5.0"),
        now_ms: 1_763_000_000_000,
        ..Default::default()
    };
    let w = website_event(beacon, &facts, &Modes::default()).expect("event");
    assert_eq!(w.event.user_data.client_ip_address, None);
}

const ID: &str = "0123456789abcdef0123456789abcdef";

fn with_browser_id(
    customer_data: CustomerData,
    body: &str,
    cookie: Option<&str>,
) -> (capi_core::website::WebsiteEvent, u32) {
    let beacon = Beacon::parse(body.as_bytes()).expect("beacon");
    let facts = RequestFacts {
        client_ip: Some("203.0.113.9"),
        user_agent: Some("Mozilla/5.0"),
        subdomain_index: 1,
        now_ms: 1_763_000_000_000,
        ..Default::default()
    };
    let modes = Modes {
        customer_data,
        ..Modes::default()
    };
    let mut draws = 0;
    let mut random = || {
        draws += 1;
        [0xab; 16]
    };
    let browser = BrowserId {
        cookie,
        random: &mut random,
    };
    let w = browser_website_event(beacon, &facts, &modes, &[], Some(browser)).expect("event");
    (w, draws)
}

const VIEW: &str =
    r#"{"event_name":"PageView","event_id":"e1","event_source_url":"https://s.example/"}"#;

#[test]
fn with_data_controls_on_the_browser_id_is_sent_hashed_and_set_once() {
    let sha = capi_core::hash::sha256_hex;
    let (w, draws) = with_browser_id(CustomerData::Hashed, VIEW, Some(ID));
    assert_eq!(w.event.user_data.external_id, Some(sha(ID)));
    assert_eq!(
        (w.browser_id, draws),
        (None, 0),
        "an id the browser has is not re-set"
    );

    let (w, draws) = with_browser_id(CustomerData::Hashed, VIEW, None);
    let new = "ab".repeat(16);
    assert_eq!(w.event.user_data.external_id, Some(sha(&new)));
    assert_eq!(
        (w.browser_id, draws),
        (Some(BrowserIdCookie::Set(new.clone())), 1)
    );

    // Not one of ours: replaced, never echoed.
    let (w, _) = with_browser_id(CustomerData::Hashed, VIEW, Some("x; Domain=evil"));
    assert_eq!(w.browser_id, Some(BrowserIdCookie::Set(new)));

    // The shop's own customer id wins, as on its orders.
    let (w, _) = with_browser_id(
        CustomerData::Hashed,
        r#"{"event_name":"PageView","event_id":"e1","event_source_url":"https://s.example/","user_data":{"external_id":"Customer-42"}}"#,
        Some(ID),
    );
    assert_eq!(w.event.user_data.external_id, Some(sha("customer-42")));
    assert_eq!(BROWSER_ID_COOKIE, "_capi_eid");
}

#[test]
fn with_data_controls_off_or_no_consent_nothing_of_the_browser_id() {
    let (w, draws) = with_browser_id(CustomerData::Off, VIEW, None);
    assert_eq!(
        (w.event.user_data.external_id, w.browser_id, draws),
        (None, None, 0)
    );
    let (w, _) = with_browser_id(CustomerData::Off, VIEW, Some(ID));
    assert_eq!(w.event.user_data.external_id, None);
    assert_eq!(
        w.browser_id,
        Some(BrowserIdCookie::Clear),
        "an id from before is deleted"
    );
    let refused = r#"{"event_name":"PageView","event_id":"e1","event_source_url":"https://s.example/","consent":"denied"}"#;
    let (w, draws) = with_browser_id(CustomerData::Hashed, refused, None);
    assert_eq!(w.ignored, Some("consent_refused"));
    assert_eq!(
        (w.event.user_data.external_id, w.browser_id, draws),
        (None, None, 0)
    );
}
