//! A browser beacon plus what the edge knows of the request → one `website` server event.

use crate::beacon::Beacon;
use crate::custom_data::{self, Dropped};
use crate::event::{ServerEvent, UserData, UNHASHED_IDS};
use crate::fbc::{fbc_click_id, fbc_for_click, fbclid_in_url, is_valid_fbp};
use crate::normalize::{self, Field};
use crate::MAX_EVENT_AGE_SECS;
use serde_json::Value;

/// What the edge saw of the HTTP request; all optional except the clock.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts<'a> {
    /// `CF-Connecting-IP`, set by Cloudflare and not spoofable by the client.
    pub client_ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub cookie_fbp: Option<&'a str>,
    pub cookie_fbc: Option<&'a str>,
    pub now_ms: u64,
}

/// The event to send, what was dropped on the way, and the cookies to (re)set.
#[derive(Debug, Clone)]
pub struct WebsiteEvent {
    pub event: ServerEvent,
    pub dropped: Vec<Dropped>,
    /// `_fbp` / `_fbc` values to set as server cookies (90 days; Safari caps script cookies).
    pub set_fbp: Option<String>,
    pub set_fbc: Option<String>,
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

/// Builds the `website` event Meta receives for a beacon.
pub fn website_event(beacon: Beacon, facts: &RequestFacts<'_>) -> crate::Result<WebsiteEvent> {
    let mut dropped = Vec::new();
    let ua = facts.user_agent.map(str::trim).filter(|u| !u.is_empty());
    // Meta: website events require client_user_agent.
    let ua = ua.ok_or(crate::Error::MissingField("User-Agent header"))?;
    let mut user_data = UserData {
        client_user_agent: Some(ua.chars().take(512).collect()),
        client_ip_address: facts
            .client_ip
            .and_then(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
            .map(|ip| ip.to_string()),
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
    let new_fbc = fbclid_in_url(&beacon.event_source_url)
        .and_then(|click| fbc_for_click(click, facts.now_ms, existing_fbc));
    user_data.fbc = new_fbc.clone().or(existing_fbc.map(str::to_string));

    let country = beacon
        .user_data
        .get("country")
        .and_then(Value::as_str)
        .map(str::to_string);
    for (key, value) in &beacon.user_data {
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

    let custom_data = custom_data::sanitized(beacon.custom_data, &mut dropped);
    let event = ServerEvent {
        event_name: beacon.event_name,
        event_time: beacon_event_time(beacon.event_time_ms, facts.now_ms),
        event_id: beacon.event_id,
        action_source: "website".into(),
        event_source_url: Some(beacon.event_source_url),
        referrer_url: beacon.referrer_url,
        user_data,
        custom_data,
    };
    let set_fbp = event.user_data.fbp.clone();
    Ok(WebsiteEvent {
        event,
        dropped,
        set_fbp,
        set_fbc: new_fbc.or(existing_fbc.map(str::to_string)),
    })
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
            now_ms: NOW,
            ..Default::default()
        }
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
            website_event(beacon(""), &f).map(|_| ()),
            Err(crate::Error::MissingField("User-Agent header"))
        );
    }

    #[test]
    fn invalid_cookies_are_dropped_with_a_reason() {
        let f = RequestFacts {
            cookie_fbp: Some("garbage"),
            ..facts()
        };
        let w = website_event(beacon(""), &f).expect("event");
        assert_eq!(w.event.user_data.fbp, None);
        assert!(w.dropped.iter().any(|d| d.reason == "invalid_fbp"));
    }
}
