//! Arbitrary text through every field normalizer and the fbp/fbc parsers.
#![no_main]

use capi_core::fbc::{fbc_click_id, fbc_for_click, fbclid_in_url, is_valid_fbp};
use capi_core::hash::is_sha256_hex;
use capi_core::normalize::{hashed, Field};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let (country, value) = s.split_once('|').unwrap_or(("", s));
    for field in Field::ALL {
        if let Ok(h) = hashed(field, value, Some(country).filter(|c| !c.is_empty())) {
            assert!(is_sha256_hex(h.split('.').next().unwrap_or("")));
        }
    }
    let _ = is_valid_fbp(value);
    let _ = fbc_click_id(value);
    let _ = fbclid_in_url(value);
    let _ = fbc_for_click(value, 1, Some(value));
});
