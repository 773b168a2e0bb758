//! `capi-edge replay`: re-drives the Worker's dead letters once their cause is fixed (a new
//! token, Meta back), through `POST /t/replay` — the Worker's normal delivery path, exactly once.
//!
//! ```sh
//! ADMIN_TOKEN=… capi-edge replay --url https://shop.example.com/t [--event-id ID] [--tenant T]
//!     [--pixel P] [--page-size N]
//! ```
//! The token is read from the environment (`--token-env NAME`, default `ADMIN_TOKEN`), never from
//! the command line, where other users of the machine could read it. The Worker replays a
//! page of letters per call (`--page-size`, 1–500, default 200); the command calls until every
//! page is replayed.

use crate::flag;
use serde_json::Value;

/// The flags `replay` takes, each with a value.
const VALUE_FLAGS: &[&str] = &[
    "--url",
    "--token-env",
    "--event-id",
    "--tenant",
    "--pixel",
    "--page-size",
];

pub fn run(args: &[String]) -> Result<(), String> {
    // A misspelled `--event_id` or `--tennant` would replay every letter of the host's tenant.
    crate::check_args(args, VALUE_FLAGS, &[], "ADMIN_TOKEN")?;
    let base = flag(args, "--url").ok_or("--url is required (e.g. https://shop.example.com/t)")?;
    // The admin token reads every tenant's receipts: never in clear over a network.
    if !crate::token_may_go_to(base) {
        return Err(crate::URL_RULE.into());
    }
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
        ("--page-size", "limit"),
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
    // The Worker replays a page per call: call again from its `next` until none is left, or
    // the queue refused part of a page (those letters stay parked for the next replay).
    let (mut ids, mut failed, mut unreadable) = (Vec::new(), 0, 0);
    let mut after: Option<String> = None;
    let stopped = loop {
        let page_url = match &after {
            Some(next) => format!(
                "{url}{sep}after={}",
                percent_encoding::utf8_percent_encode(next, QUERY_VALUE)
            ),
            None => url.clone(),
        };
        let body = match post(&agent, &page_url, &token, base) {
            Ok(body) => body,
            Err(e) => break Some(e),
        };
        ids.extend(
            body["event_ids"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|id| id.as_str().unwrap_or("").to_string()),
        );
        failed += body["failed"].as_i64().unwrap_or(0);
        unreadable += body["unreadable"].as_i64().unwrap_or(0);
        match body["next"].as_str() {
            _ if failed > 0 => {
                break Some(format!(
                    "the queue refused {failed} dead letter(s): they stay parked, and later pages \
                     were not tried; run the replay again once the queue takes messages"
                ))
            }
            Some(next) if after.as_deref() != Some(next) => after = Some(next.to_string()),
            _ => break None,
        }
    };
    // What was replayed is said even when the replay stopped part way.
    println!("replayed {} dead letter(s)", ids.len());
    for id in ids {
        println!("  {id}");
    }
    if unreadable > 0 {
        println!(
            "{unreadable} dead letter(s) could not be read back as events and were not replayed \
             (the Worker logs dead_letters_unreadable)"
        );
    }
    match stopped {
        None => Ok(()),
        Some(why) => Err(why),
    }
}

/// One `POST /t/replay`: the Worker's answer, or why there is none.
fn post(agent: &ureq::Agent, url: &str, token: &str, base: &str) -> Result<Value, String> {
    let mut resp = agent
        .post(url)
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
    Ok(body)
}

/// RFC 3986 unreserved characters kept, everything else percent-encoded.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
