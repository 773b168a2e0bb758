//! Arbitrary bytes as a beacon body, then through the whole website-event path.
#![no_main]

use capi_core::beacon::Beacon;
use capi_core::website::{website_event, RequestFacts};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(beacon) = Beacon::parse(data) {
        let facts = RequestFacts { client_ip: Some("192.0.2.1"), user_agent: Some("fuzz"), now_ms: 1_763_000_000_000, ..Default::default() };
        if let Ok(w) = website_event(beacon, &facts) {
            let v = serde_json::to_value(&w.event).expect("events serialize");
            let _ = capi_core::meta_rules::check_event(&v, 1_763_000_000);
        }
    }
});
