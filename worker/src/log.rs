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

pub fn info(msg: &str, fields: &[Field<'_>]) {
    worker::console_log!("{}", line(msg, fields));
}

pub fn warn(msg: &str, fields: &[Field<'_>]) {
    worker::console_warn!("{}", line(msg, fields));
}

pub fn error(msg: &str, fields: &[Field<'_>]) {
    worker::console_error!("{}", line(msg, fields));
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
