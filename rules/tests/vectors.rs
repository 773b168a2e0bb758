//! Every known answer in `data/browser_rules.json` (the browser tests read the same file).

use serde_json::Value;

fn vectors(group: &str) -> Vec<Value> {
    let all: Value =
        serde_json::from_str(include_str!("data/browser_rules.json")).expect("valid JSON");
    let cases = all[group].as_array().expect("group present").clone();
    assert!(!cases.is_empty(), "{group} has cases");
    for case in &cases {
        assert!(
            case["source"].as_str().is_some_and(|s| !s.is_empty()),
            "{group}: every case names its source"
        );
    }
    cases
}

fn s(v: &Value) -> &str {
    v.as_str().expect("string")
}

fn n(v: &Value) -> u64 {
    v.as_u64().expect("number")
}

fn opt(v: &Value) -> Option<&str> {
    v.as_str()
}

#[test]
fn event_id_for_order() {
    for c in vectors("event_id_for_order") {
        assert_eq!(
            capi_rules::event_id_for_order(s(&c["order_id"])),
            s(&c["expected"]),
            "{c}"
        );
    }
}

#[test]
fn fbp_and_fbc_values() {
    for c in vectors("fbp") {
        let index = u32::try_from(n(&c["subdomain_index"])).expect("u32");
        let random = u32::try_from(n(&c["random"])).expect("u32");
        let value = capi_rules::fbp(index, n(&c["ms"]), random);
        assert_eq!(value, s(&c["expected"]), "{c}");
        assert!(
            capi_rules::is_valid_fbp(&value),
            "{c}: a minted _fbp is valid"
        );
    }
    for c in vectors("fbc") {
        let index = u32::try_from(n(&c["subdomain_index"])).expect("u32");
        let value = capi_rules::fbc(index, n(&c["ms"]), s(&c["fbclid"]));
        assert_eq!(value, s(&c["expected"]), "{c}");
        assert_eq!(
            capi_rules::fbc_click_id(&value),
            Some(s(&c["fbclid"])),
            "{c}: reads back"
        );
    }
}

#[test]
fn is_valid_fbp() {
    for c in vectors("is_valid_fbp") {
        assert_eq!(
            capi_rules::is_valid_fbp(s(&c["value"])),
            c["expected"].as_bool().expect("bool"),
            "{c}"
        );
    }
}

#[test]
fn fbc_click_id() {
    for c in vectors("fbc_click_id") {
        assert_eq!(
            capi_rules::fbc_click_id(s(&c["value"])),
            opt(&c["expected"]),
            "{c}"
        );
    }
}

#[test]
fn is_valid_fbclid() {
    for c in vectors("is_valid_fbclid") {
        assert_eq!(
            capi_rules::is_valid_fbclid(s(&c["value"])),
            c["expected"].as_bool().expect("bool"),
            "{c}"
        );
    }
}

#[test]
fn fbclid_in_url() {
    for c in vectors("fbclid_in_url") {
        assert_eq!(
            capi_rules::fbclid_in_url(s(&c["url"])),
            opt(&c["expected"]),
            "{c}"
        );
    }
    for c in vectors("fbclid_in_page_or_referrer") {
        assert_eq!(
            capi_rules::fbclid_in_page_or_referrer(s(&c["url"]), opt(&c["referrer"])),
            opt(&c["expected"]),
            "{c}"
        );
    }
}

#[test]
fn cookie_value() {
    for c in vectors("cookie_value") {
        assert_eq!(
            capi_rules::cookie_value(s(&c["header"]), s(&c["name"])),
            opt(&c["expected"]),
            "{c}"
        );
    }
}

#[test]
fn subdomain_index() {
    for c in vectors("subdomain_index") {
        assert_eq!(
            u64::from(capi_rules::subdomain_index(s(&c["domain"]))),
            n(&c["expected"]),
            "{c}"
        );
    }
}
