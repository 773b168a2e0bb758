//! The one writer of the Worker's log lines: one JSON object per line, `msg` plus fields.
//!
//! Callers pass ids, names, outcomes, reasons and counts — never customer data, a secret or
//! a library's error text (serde's and the runtime's messages may quote input): errors are
//! logged by their kind only ([`kind_of`]).

use serde_json::{Map, Value};

/// A log field's value.
pub type Field<'a> = (&'a str, Value);

fn line(msg: &str, fields: &[Field<'_>]) -> String {
    let mut obj = Map::with_capacity(fields.len() + 1);
    obj.insert("msg".into(), Value::from(msg));
    for (k, v) in fields {
        obj.insert((*k).to_string(), v.clone());
    }
    Value::Object(obj).to_string()
}

// The line goes to the console as one string: no second formatting pass (measured: a log line
// per dropped field was the largest single CPU cost of ingest, see BENCHMARKS.md).
pub fn info(msg: &str, fields: &[Field<'_>]) {
    worker::web_sys::console::log_1(&line(msg, fields).into());
}

pub fn warn(msg: &str, fields: &[Field<'_>]) {
    worker::web_sys::console::warn_1(&line(msg, fields).into());
}

pub fn error(msg: &str, fields: &[Field<'_>]) {
    worker::web_sys::console::error_1(&line(msg, fields).into());
}

/// The kind of a runtime error, without its text.
pub fn kind_of(e: &worker::Error) -> &'static str {
    match e {
        worker::Error::BadEncoding => "bad_encoding",
        worker::Error::BodyUsed => "body_used",
        worker::Error::Json(_) | worker::Error::SerdeJsonError(_) => "json",
        worker::Error::JsError(_) | worker::Error::Internal(_) => "js",
        worker::Error::BindingError(_) => "binding",
        worker::Error::RustError(_) => "rust",
        worker::Error::SerdeWasmBindgenError(_) => "serde_wasm_bindgen",
        worker::Error::Io(_) => "io",
        _ => "other",
    }
}

/// One line per event for what was dropped on the way (bounded field names and reasons, never
/// a value); nothing when nothing unexpected was dropped: contact fields dropped by data
/// controls are policy, not news (they are counted in `/t/stats`, like everything here).
pub fn dropped(event_id: &str, dropped: &[capi_core::custom_data::Dropped]) {
    if dropped
        .iter()
        .all(|d| d.reason == capi_core::privacy::DATA_CONTROLS_OFF)
    {
        return;
    }
    // Each `field:reason` once (field names are bounded: an unknown key counts as `other`), so
    // a beacon of thousands of made-up keys makes a line of a few names, not of thousands.
    let mut fields: Vec<String> = dropped
        .iter()
        .map(|d| {
            format!(
                "{}:{}",
                capi_core::counters::counted_field(&d.field),
                d.reason
            )
        })
        .collect();
    fields.sort_unstable();
    fields.dedup();
    info(
        "dropped",
        &[
            ("event_id", event_id.into()),
            ("fields", fields.into()),
            ("count", dropped.len().into()),
        ],
    );
}
