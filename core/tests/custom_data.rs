//! Known answers for scrubbing contact data out of `custom_data`, read from
//! `tests/data/custom_data_scrub.json`. Each case names why it is there (a leak seen in shops'
//! data layers, or a value that must survive).

use capi_core::beacon::Beacon;
use capi_core::counters::counted_field;
use capi_core::custom_data::{sanitized, Dropped, HASHED_INTO_USER_DATA, NOT_ALLOWED};
use capi_core::event::UserData;
use capi_core::hash::sha256_hex;
use capi_core::normalize::Field;
use capi_core::privacy::{CustomerData, Modes};
use capi_core::website::{website_event, RequestFacts};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Stands for a value `user_data` already had before `custom_data` was read.
const ALREADY_SET: &str = "already-set";

#[test]
fn every_vector_scrubs_as_expected() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/custom_data_scrub.json"
    ))
    .expect("vectors file");
    let cases: Vec<Value> = serde_json::from_str(&text).expect("vectors are JSON");
    assert!(cases.len() >= 40, "{} cases", cases.len());
    for case in &cases {
        let name = case["name"].as_str().expect("name");
        assert!(case["source"].is_string(), "{name}: source");
        let mode = match case["mode"].as_str() {
            Some("off") => CustomerData::Off,
            Some("hashed") => CustomerData::Hashed,
            other => panic!("{name}: mode {other:?}"),
        };
        let mut user_data = UserData::default();
        for key in case["user_data"].as_array().into_iter().flatten() {
            let field = key
                .as_str()
                .and_then(Field::from_key)
                .expect("user_data key");
            *user_data.hashed_mut(field) = Some(ALREADY_SET.into());
        }
        let input = case["custom_data"]
            .as_object()
            .expect("custom_data")
            .clone();
        let mut dropped = Vec::new();
        let out = sanitized(
            input.clone(),
            mode,
            &mut user_data,
            case["country"].as_str(),
            &mut dropped,
        );

        assert_eq!(
            Value::Object(out),
            case["expect_custom_data"],
            "{name}: custom_data"
        );
        let want_dropped = case["expect_dropped"].as_u64().expect("expect_dropped");
        assert_eq!(dropped.len() as u64, want_dropped, "{name}: {dropped:?}");

        let mut filled: Vec<&str> = Field::ALL
            .into_iter()
            .filter(|f| {
                user_data
                    .hashed_mut(*f)
                    .as_deref()
                    .is_some_and(|v| v != ALREADY_SET)
            })
            .map(Field::key)
            .collect();
        filled.sort_unstable();
        let mut want: Vec<&str> = case["expect_user_data_keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        want.sort_unstable();
        if mode == CustomerData::Off {
            assert!(want.is_empty(), "{name}: off never fills user_data");
        }
        assert_eq!(filled, want, "{name}: user_data keys");
        let moved = dropped
            .iter()
            .filter(|d| d.reason == HASHED_INTO_USER_DATA)
            .count();
        assert_eq!(moved, want.len(), "{name}: one count per moved value");

        for (key, plain) in case["expect_normalized"].as_object().into_iter().flatten() {
            let field = Field::from_key(key).expect("field");
            let plain = plain.as_str().expect("normalized text");
            assert_eq!(
                user_data.hashed_mut(field).as_deref(),
                Some(sha256_hex(plain).as_str()),
                "{name}: {key} is the hash of {plain:?}"
            );
        }

        // Counted under bounded names, never with a value.
        for d in &dropped {
            if d.reason == NOT_ALLOWED || d.reason == HASHED_INTO_USER_DATA {
                assert_eq!(counted_field(&d.field), d.field, "{name}: {d:?}");
            }
        }
        let report = format!("{dropped:?}");
        for leaf in string_leaves(&Value::Object(input)) {
            if leaf.len() >= 4 && !case["expect_custom_data"].to_string().contains(&leaf) {
                assert!(
                    !report.contains(&leaf),
                    "{name}: a dropped value reached the count"
                );
            }
        }
    }
}

/// Every string value in a JSON tree, and keys that hold an `@`.
fn string_leaves(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(string_leaves).collect(),
        Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| {
                let key = k.contains('@').then(|| k.clone());
                key.into_iter().chain(string_leaves(v))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A beacon's event under `customer_data`: what Meta would receive, and what was counted.
fn beacon_event(customer_data: CustomerData, body: &str) -> (Value, Vec<Dropped>) {
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
    let beacon = Beacon::parse(body.as_bytes()).expect("beacon");
    let built = website_event(beacon, &facts, &modes).expect("event");
    let event = serde_json::to_value(&built.event).expect("event JSON");
    (event, built.dropped)
}

const LEAKY_BEACON: &str = r#"{"event_name":"Purchase","event_id":"e1",
    "event_source_url":"https://shop.example/thanks",
    "user_data":{"em":"buyer@example.com"},
    "custom_data":{"value":12.5,"currency":"EUR","customer_email":"other@example.com",
        "billing":{"city":"Berlin","phone":"030 1234567","country":"DE"},
        "contents":[{"id":"mug-1","quantity":1,"name":"Blue Mug","recipient_name":"Jane Doe"}]}}"#;

#[test]
fn a_beacon_never_carries_contact_data_in_custom_data_plain() {
    for mode in [CustomerData::Off, CustomerData::Hashed] {
        let (event, dropped) = beacon_event(mode, LEAKY_BEACON);
        let sent = event.to_string();
        for plain in ["other@example.com", "Berlin", "1234567", "Jane Doe"] {
            assert!(!sent.contains(plain), "{mode:?}: {plain} reached Meta");
        }
        assert_eq!(
            event["custom_data"],
            json!({"value": 12.5, "currency": "EUR",
                   "contents": [{"id": "mug-1", "quantity": 1, "name": "Blue Mug"}]}),
            "{mode:?}"
        );
        let scrubbed = dropped
            .iter()
            .filter(|d| d.reason == NOT_ALLOWED || d.reason == HASHED_INTO_USER_DATA)
            .count();
        assert_eq!(scrubbed, 5, "{mode:?}: {dropped:?}");
    }
}

#[test]
fn hashed_fills_only_what_user_data_lacks() {
    let (event, dropped) = beacon_event(CustomerData::Hashed, LEAKY_BEACON);
    let u = &event["user_data"];
    // The page's own user_data.em wins over the email found in custom_data.
    assert_eq!(u["em"], sha256_hex("buyer@example.com"));
    assert_eq!(u["ct"], sha256_hex("berlin"));
    assert_eq!(u["ph"], sha256_hex("49301234567"));
    assert_eq!(u["country"], sha256_hex("de"));
    assert!(dropped.contains(&Dropped {
        field: "email".into(),
        reason: NOT_ALLOWED
    }));
    assert!(dropped.contains(&Dropped {
        field: "city".into(),
        reason: HASHED_INTO_USER_DATA
    }));

    let (event, _) = beacon_event(CustomerData::Off, LEAKY_BEACON);
    for key in ["em", "ct", "ph", "country", "fn", "ln"] {
        assert!(event["user_data"].get(key).is_none(), "off: {key}");
    }
}

/// JSON trees shaped like shops' data layers: contact keys, product keys and free text.
fn tree() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        proptest::sample::select(vec![
            "email",
            "customer_email",
            "billingCity",
            "Shipping-Zip",
            "phone",
            "name",
            "content_name",
            "contents",
            "customer",
            "billing_address",
            "note",
            "id",
            "quantity",
            "item_price",
            "value",
            "currency",
            "order_id",
            "country",
            "state",
            "tags",
            "recipient",
            "dob",
            "gender",
            "user_data",
            "external_id",
        ])
        .prop_map(str::to_string),
        "[a-zA-Z_-]{1,12}",
    ];
    let leaf = prop_oneof![
        "[a-z0-9._+-]{1,10}@[a-z0-9-]{1,8}\\.[a-z]{2,4}".prop_map(Value::from),
        "[+]?[0-9 ()./-]{5,18}".prop_map(Value::from),
        "\\PC{0,24}".prop_map(Value::from),
        any::<u32>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ];
    leaf.prop_recursive(5, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(key.clone(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(m) => m,
        other => Map::from_iter([("extra".to_string(), other)]),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// What survives a scrub survives the next one unchanged: nothing left looks like contact
    /// data, whatever the mode, and every count has a bounded name.
    #[test]
    fn scrubbing_is_idempotent_and_bounded(value in tree(), hashed in any::<bool>()) {
        let mode = if hashed { CustomerData::Hashed } else { CustomerData::Off };
        let mut user_data = UserData::default();
        let mut dropped = Vec::new();
        let once = sanitized(object(value), mode, &mut user_data, None, &mut dropped);
        for d in &dropped {
            prop_assert!(counted_field(&d.field) == d.field || d.reason == "invalid_custom_data_value");
        }
        let mut again = Vec::new();
        let twice = sanitized(once.clone(), mode, &mut UserData::default(), None, &mut again);
        prop_assert_eq!(&twice, &once);
        prop_assert!(again.is_empty(), "{:?}", again);
    }

    /// An email address put anywhere — any key, any depth, in a contents item — never leaves.
    #[test]
    fn an_email_never_survives(
        value in tree(),
        key in "[a-zA-Z_-]{1,12}",
        email in "[a-z][a-z0-9._+-]{0,8}@[a-z][a-z0-9-]{0,7}\\.[a-z]{2,4}",
        hashed in any::<bool>(),
    ) {
        let mode = if hashed { CustomerData::Hashed } else { CustomerData::Off };
        let mut cd = object(value);
        cd.insert("contents".into(), json!([{"id": "sku-1", key.clone(): format!("see {email}")}]));
        cd.insert(key, Value::from(email.clone()));
        let out = sanitized(cd, mode, &mut UserData::default(), None, &mut Vec::new());
        prop_assert!(!Value::Object(out).to_string().contains(&email));
    }
}
