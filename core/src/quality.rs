//! An **estimate** of Meta's Event Match Quality (0–10) from the match keys an event carries,
//! for one event (the sandbox's inspector) and for an event name from coverage counts
//! (`/t/report`). Meta computes the real score in Events Manager, over 48 hours, with a formula
//! it does not publish; this one follows what Meta does publish:
//! - the keys and their priority ("Best practices for Conversions API", customer information
//!   parameters): email and phone first, then `external_id`, the click id (`fbc`) and browser id
//!   (`fbp`), IP address with user agent, names, location, date of birth;
//! - an event whose keys are all weak ones (Meta's baseline since v13.0: only a subset of
//!   `ct, st, zp, country, ge, client_user_agent`, or `db`/`fn`/`ln` with them) is refused, so
//!   it scores 0;
//! - Events Manager's bands: 0–3.9 poor, 4–5.9 ok, 6–7.9 good, 8–10 great.
//!
//! The points per key (they sum to 10, so the estimate of many events is the sum of each key's
//! points times the share of events carrying it) are this module's own judgement of those
//! priorities, not Meta's numbers. Known answers: `tests/data/match_quality.json`.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Each key's points, in Meta's order of priority. Sum: 10.
pub const POINTS: &[(&str, f64)] = &[
    ("em", 3.0),
    ("ph", 2.0),
    ("external_id", 1.0),
    ("fbc", 1.0),
    ("fbp", 0.75),
    ("client_ip_address", 0.5),
    ("client_user_agent", 0.5),
    ("fn", 0.25),
    ("ln", 0.25),
    ("db", 0.25),
    ("ct", 0.125),
    ("st", 0.125),
    ("zp", 0.125),
    ("country", 0.125),
];

/// Events Manager's bands.
pub fn rating(score: f64) -> &'static str {
    match score {
        s if s >= 8.0 => "great",
        s if s >= 6.0 => "good",
        s if s >= 4.0 => "ok",
        _ => "poor",
    }
}

/// One event's estimate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Estimate {
    /// 0–10, one decimal.
    pub score: f64,
    pub rating: &'static str,
    /// The keys that count, in [`POINTS`] order.
    pub keys: Vec<&'static str>,
    /// Keys present but not usable (not a SHA-256 where one is needed, a malformed `fbc`, a
    /// private IP address).
    pub invalid: Vec<&'static str>,
    /// The missing keys worth the most, best first.
    pub missing: Vec<&'static str>,
}

/// Whether a `user_data` value is usable for its key.
fn usable(key: &str, v: &Value) -> bool {
    let one = |s: &str| match key {
        "fbc" => crate::fbc::fbc_click_id(s).is_some(),
        "fbp" => crate::fbc::is_valid_fbp(s),
        "client_ip_address" => s.parse::<std::net::IpAddr>().is_ok_and(is_public),
        "client_user_agent" => !s.trim().is_empty(),
        // Hashed keys: a SHA-256 in lowercase hex (Meta's `external_id` may also be plain).
        "external_id" => !s.trim().is_empty(),
        _ => s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
    };
    match v {
        Value::String(s) => one(s),
        Value::Array(a) => !a.is_empty() && a.iter().all(|x| x.as_str().is_some_and(one)),
        _ => false,
    }
}

/// An address a client can be seen from on the internet: never loopback, private, link-local,
/// carrier-grade NAT, unique-local, multicast or reserved. Such an address is the shop's own
/// network, not the shopper's, and is never sent as `client_ip_address`.
pub fn is_public(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || a >= 240)
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(std::net::IpAddr::V4(v4));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80)
        }
    }
}

/// The estimate for one event's `user_data` as Meta receives it.
pub fn estimate_event(user_data: &Map<String, Value>) -> Estimate {
    let mut keys = Vec::new();
    let mut invalid = Vec::new();
    for (key, _) in POINTS {
        match user_data.get(*key) {
            Some(v) if usable(key, v) => keys.push(*key),
            Some(_) => invalid.push(*key),
            None => {}
        }
    }
    let refused = keys.is_empty() || crate::meta_rules::only_weak_keys(keys.iter().copied());
    let score = if refused {
        0.0
    } else {
        keys.iter().map(|k| points(k)).sum()
    };
    estimate(score, keys, invalid, |k| !user_data.contains_key(k))
}

/// The estimate for many events of one name from how many carried each key (`events` is the
/// total; other entries are keys): each key's points times its share.
pub fn estimate_shares(counts: &BTreeMap<String, i64>) -> Estimate {
    let events = counts.get("events").copied().unwrap_or(0);
    let share = |k: &str| {
        if events <= 0 {
            0.0
        } else {
            (counts.get(k).copied().unwrap_or(0) as f64 / events as f64).clamp(0.0, 1.0)
        }
    };
    let score = POINTS.iter().map(|(k, p)| p * share(k)).sum();
    let keys = POINTS
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| share(k) > 0.0)
        .collect();
    // Missing: what most events lack, weighted by what it is worth.
    let mut gaps: Vec<(&'static str, f64)> = POINTS
        .iter()
        .map(|(k, p)| (*k, p * (1.0 - share(k))))
        .filter(|(_, gap)| *gap > 0.0)
        .collect();
    gaps.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut e = estimate(score, keys, Vec::new(), |_| false);
    e.missing = gaps.into_iter().map(|(k, _)| k).take(3).collect();
    e
}

fn points(key: &str) -> f64 {
    POINTS
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(0.0, |(_, p)| *p)
}

fn estimate(
    score: f64,
    keys: Vec<&'static str>,
    invalid: Vec<&'static str>,
    absent: impl Fn(&str) -> bool,
) -> Estimate {
    let score = (score.clamp(0.0, 10.0) * 10.0).round() / 10.0;
    Estimate {
        score,
        rating: rating(score),
        missing: POINTS
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| absent(k))
            .take(3)
            .collect(),
        keys,
        invalid,
    }
}

/// What would add a missing key, for an event name (`Purchase` comes from orders) and whether
/// data controls are on.
pub fn advice(key: &str, event_name: &str, data_controls_on: bool) -> &'static str {
    let order = event_name == "Purchase";
    match key {
        "em" | "ph" | "fn" | "ln" | "ct" | "st" | "zp" | "country" | "db" if !data_controls_on => {
            "turn on data controls (CUSTOMER_DATA = hashed) after your privacy review"
        }
        "em" | "ph" | "fn" | "ln" | "ct" | "st" | "zp" | "country" | "db" if order => {
            "orders without it: collect it at checkout, or pass it in the order webhook's customer"
        }
        "em" | "ph" | "fn" | "ln" | "ct" | "st" | "zp" | "country" | "db" => {
            "browser events have none from the shim (keep emails out of capi() params: Meta's pixel gets those in plain); orders carry the customer's"
        }
        "external_id" if !data_controls_on => {
            "turn on data controls: a first-party id per browser is sent as external_id"
        }
        "external_id" => "send the customer id with orders and logged-in events",
        "fbp" if order => {
            "carry `_fbp` to the order (data-shopify-cart=\"on\", Stripe metadata, WooCommerce order meta)"
        }
        "fbp" => "load /t/p.js on every page, before Meta's pixel",
        "fbc" if order => "carry `_fbc` to the order, or Shopify's landing_site with fbclid",
        "fbc" => "keep fbclid on landing pages and set COOKIE_DOMAIN to the shop's registrable domain",
        "client_ip_address" | "client_user_agent" if order => {
            "send the buyer's IP address and user agent with the order (Stripe metadata)"
        }
        "client_ip_address" | "client_user_agent" => {
            "serve the Worker on the shop's own domain, so it sees the browser"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_sum_to_ten_and_bands_follow_events_manager() {
        let sum: f64 = POINTS.iter().map(|(_, p)| p).sum();
        assert!((sum - 10.0).abs() < 1e-9);
        assert_eq!(
            [rating(3.9), rating(4.0), rating(6.0), rating(8.0)],
            ["poor", "ok", "good", "great"]
        );
    }

    #[test]
    fn an_event_name_scores_each_keys_points_times_its_share() {
        // The week docs/operating.md shows.
        let counts = |pairs: &[(&str, i64)]| {
            pairs
                .iter()
                .map(|(k, n)| (k.to_string(), *n))
                .collect::<BTreeMap<String, i64>>()
        };
        let page_view = estimate_shares(&counts(&[
            ("events", 5210),
            ("fbp", 5102),
            ("fbc", 611),
            ("client_ip_address", 5210),
            ("client_user_agent", 5210),
        ]));
        assert_eq!((page_view.score, page_view.rating), (1.9, "poor"));
        assert_eq!(page_view.missing, ["em", "ph", "external_id"]);
        let purchase = estimate_shares(&counts(&[
            ("events", 55),
            ("fbp", 49),
            ("fbc", 9),
            ("em", 55),
            ("ph", 31),
            ("client_ip_address", 52),
            ("client_user_agent", 52),
            ("external_id", 22),
            ("fn", 55),
            ("ln", 55),
            ("ct", 54),
            ("st", 40),
            ("zp", 54),
            ("country", 55),
        ]));
        assert_eq!((purchase.score, purchase.rating), (7.3, "good"));
        assert_eq!(purchase.missing, ["ph", "fbc", "external_id"]);
    }

    #[test]
    fn only_public_addresses_count() {
        for ip in [
            "10.0.0.1",
            "127.0.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!is_public(ip.parse().expect("ip")), "{ip}");
        }
        for ip in [
            "203.0.114.1",
            "8.8.8.8",
            "2a00:1450:4001::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip.parse().expect("ip")), "{ip}");
        }
    }
}
