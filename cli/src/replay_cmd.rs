//! `capi-edge replay`: re-drives the Worker's dead letters once their cause is fixed (a new
//! token, Meta back), through `POST /t/replay` — the Worker's normal delivery path, exactly once.
//!
//! ```sh
//! ADMIN_TOKEN=… capi-edge replay --url https://shop.example.com/t [--event-id ID] [--tenant T]
//! ```
//! The token is read from the environment (`--token-env NAME`, default `ADMIN_TOKEN`), never from
//! the command line, where other users of the machine could read it.

use crate::flag;
use serde_json::Value;

pub fn run(args: &[String]) -> Result<(), String> {
    let base = flag(args, "--url").ok_or("--url is required (e.g. https://shop.example.com/t)")?;
    let token_env = flag(args, "--token-env").unwrap_or("ADMIN_TOKEN");
    let token = std::env::var(token_env)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| format!("set {token_env} to the Worker's admin token"))?;
    let mut url = format!("{}/replay", base.trim_end_matches('/'));
    let mut sep = '?';
    for (name, param) in [
        ("--event-id", "event_id"),
        ("--tenant", "tenant"),
        ("--pixel", "pixel"),
    ] {
        if let Some(v) = flag(args, name) {
            url.push(sep);
            url.push_str(param);
            url.push('=');
            url.extend(percent_encoding::utf8_percent_encode(v, QUERY_VALUE));
            sep = '&';
        }
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into();
    let mut resp = agent
        .post(&url)
        .header("authorization", &format!("Bearer {token}"))
        .send_empty()
        // The transport's message names the host, never the token.
        .map_err(|e| format!("could not reach {base}: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|_| format!("the Worker answered {status} without a readable body"))?;
    let body: Value = serde_json::from_str(&text)
        .map_err(|_| format!("the Worker answered {status} without a JSON body"))?;
    if status != 200 {
        return Err(format!(
            "the Worker refused ({status}): {}",
            body["error"]["code"].as_str().unwrap_or("error")
        ));
    }
    println!(
        "replayed {} dead letter(s){}",
        body["replayed"].as_i64().unwrap_or(0),
        match body["failed"].as_i64().unwrap_or(0) {
            0 => String::new(),
            n => format!(", {n} could not be queued and stay parked"),
        }
    );
    for id in body["event_ids"].as_array().into_iter().flatten() {
        println!("  {}", id.as_str().unwrap_or(""));
    }
    Ok(())
}

/// RFC 3986 unreserved characters kept, everything else percent-encoded.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
