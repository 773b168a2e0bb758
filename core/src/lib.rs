//! capi-core: every rule capi-edge knows about Meta's Conversions API, as pure functions.
//!
//! No I/O here: the Worker, the CLI and the sandbox are shells around these functions, so
//! each rule is written once and tested natively with `cargo test`.

pub mod beacon;
pub mod claim;
pub mod counters;
pub mod custom_data;
pub mod delivery;
pub mod error;
pub mod event;
pub mod fbc;
pub mod hash;
pub mod meta_answer;
pub mod meta_rules;
pub mod normalize;
pub mod offline;
pub mod origin;
pub mod privacy;
pub mod quality;
pub mod report;
pub mod webhook;
pub mod website;

pub use error::{Error, Result};

/// Seconds Meta accepts an event after it happened (D-SE: max 7 days in the past).
pub const MAX_EVENT_AGE_SECS: i64 = 7 * 24 * 3600;
/// Meta's batch limit: at most this many events in one `data` array (D-USE).
pub const MAX_EVENTS_PER_REQUEST: usize = 1000;
