//! Properties of normalization that must hold for any input: no panics on arbitrary Unicode or
//! huge input, outputs are 64 lowercase hex, and normalizing a normalized value changes nothing.

use capi_core::beacon::Beacon;
use capi_core::hash::is_sha256_hex;
use capi_core::normalize::{hashed, normalized, Field, Normalized};
use proptest::prelude::*;

fn any_field() -> impl Strategy<Value = Field> {
    proptest::sample::select(Field::ALL.to_vec())
}

fn country() -> impl Strategy<Value = Option<&'static str>> {
    proptest::sample::select(vec![
        None,
        Some("US"),
        Some("GB"),
        Some("DE"),
        Some("CA"),
        Some("FR"),
        Some("JP"),
        Some("zz"),
    ])
}

/// Strings that look like real field values, plus arbitrary Unicode.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,40}",
        "[A-Za-z0-9._%+-]{1,20}@[a-z0-9-]{1,12}\\.[a-z]{2,6}",
        "[+]?[0-9 ()./-]{5,20}",
        "[0-9]{1,2}/[0-9]{1,2}/[0-9]{4}",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}",
        "[A-Za-z' .-]{1,25}",
        "[0-9]{5}(-[0-9]{4})?",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn hashes_are_64_lowercase_hex_and_normalization_is_idempotent(field in any_field(), v in value(), c in country()) {
        if let Ok(n) = normalized(field, &v, c) {
            match n {
                Normalized::Plain(plain) => {
                    // A normalized phone is E.164 without its `+`: read it again as E.164.
                    let again = if field == Field::Ph { format!("+{plain}") } else { plain.clone() };
                    prop_assert_eq!(normalized(field, &again, c), Ok(Normalized::Plain(plain.clone())), "{:?} {:?}", field, v);
                    prop_assert!(is_sha256_hex(&hashed(field, &v, c).unwrap_or_default()));
                }
                Normalized::PreHashed(h) => prop_assert!(is_sha256_hex(h.split('.').next().unwrap_or(""))),
            }
        }
    }

    #[test]
    fn beacon_parsing_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Beacon::parse(&body);
    }
}

#[test]
fn huge_input_is_handled() {
    let big = "ä".repeat(1 << 20);
    for field in Field::ALL {
        let _ = hashed(field, &big, Some("US"));
    }
    assert!(Beacon::parse(big.as_bytes()).is_err());
}
