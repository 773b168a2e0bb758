//! Names that may become rows in `/t/stats`: a bounded set, so no input can add rows.
//!
//! Field names come from untrusted beacons (`user_data` keys): only the ones capi-edge knows
//! get a row of their own, anything else counts as `other`. Reasons are written by our code;
//! they are still held to a short snake_case shape.

use crate::custom_data::COUNTED_FIELDS;
use crate::event::UNHASHED_IDS;
use crate::normalize::Field;

/// The row name for everything not known.
pub const OTHER: &str = "other";

/// Fields the edge itself reads or drops besides Meta's hashed keys.
const EDGE_FIELDS: &[&str] = &[
    "fbp",
    "fbc",
    "client_ip_address",
    "client_user_agent",
    "value",
    "currency",
    "contents",
    "content_ids",
    "num_items",
    "order_id",
    "test_event_code",
    "event_source_url",
];

/// The stats row name of a dropped field: its own name when known, else `other`.
pub fn counted_field(key: &str) -> &'static str {
    Field::ALL
        .iter()
        .map(|f| f.key())
        .chain(UNHASHED_IDS.iter().copied())
        .chain(EDGE_FIELDS.iter().copied())
        .chain(COUNTED_FIELDS.iter().copied())
        .find(|k| *k == key)
        .unwrap_or(OTHER)
}

/// A reason as a stats row: snake_case, at most 64 characters, else `other`.
pub fn counted_reason(reason: &str) -> &str {
    let ok = !reason.is_empty()
        && reason.len() <= 64
        && reason
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        reason
    } else {
        OTHER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_names_get_a_row() {
        assert_eq!(counted_field("em"), "em");
        assert_eq!(counted_field("lead_id"), "lead_id");
        assert_eq!(counted_field("email"), "email");
        assert_eq!(counted_field("event_source_url"), "event_source_url");
        assert_eq!(counted_field("x-42"), OTHER);
        assert_eq!(counted_field(&"a".repeat(5000)), OTHER);
        assert_eq!(counted_reason("invalid_email"), "invalid_email");
        assert_eq!(counted_reason("Robert'); DROP TABLE"), OTHER);
        assert_eq!(counted_reason(&"a".repeat(65)), OTHER);
    }
}
