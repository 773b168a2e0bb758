//! `capi-edge hash`: streaming normalization + hashing of JSON lines (customer lists).

use capi_core::hash::sha256_hex;
use capi_core::normalize::{normalized, Field, Normalized};
use serde_json::{json, Value};
use std::io::{BufRead, BufWriter, Write};

pub fn run() -> Result<(), String> {
    let stdin = std::io::stdin().lock();
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    for line in stdin.lines() {
        let line = line.map_err(|e| format!("reading stdin: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let answer = hash_line(&line);
        serde_json::to_writer(&mut out, &answer).map_err(|e| e.to_string())?;
        out.write_all(b"\n").map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())
}

/// One output line for one input line; never echoes the raw value.
pub fn hash_line(line: &str) -> Value {
    let Ok(input) = serde_json::from_str::<Value>(line) else {
        return json!({"field": null, "error": "line is not a JSON object"});
    };
    let key = input
        .get("field")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(field) = Field::from_key(key) else {
        return json!({"field": key, "error": "unknown field (use em, ph, fn, ln, ct, st, zp, country, ge, db, external_id)"});
    };
    let Some(value) = input.get("value").and_then(Value::as_str) else {
        return json!({"field": key, "error": "value must be a string"});
    };
    let country = input.get("country").and_then(Value::as_str);
    match normalized(field, value, country) {
        Ok(Normalized::Plain(n)) => {
            let h = sha256_hex(&n);
            json!({"field": key, "normalized": n, "sha256": h})
        }
        Ok(Normalized::PreHashed(h)) => json!({"field": key, "normalized": null, "sha256": h}),
        Err(reason) => json!({"field": key, "error": reason.as_str()}),
    }
}
