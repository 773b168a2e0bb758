//! `capi-edge sandbox`: a local stand-in for Meta's Graph API `/{version}/{pixel}/events`.
//!
//! Validates like Meta (the same `capi_core::meta_rules` the Worker checks before sending),
//! answers with Meta-shaped bodies, records everything, takes the demo page's browser pixel
//! events (its stand-in `fbevents.js` forwards `fbq` calls), and shows per
//! `(event_name, event_id)` the browser and server copies and whether they deduplicate.
//! Faults (error rate, 429s, timeouts, latency) can be injected for delivery tests.
//!
//! Long on purpose: the whole stand-in for Meta's Graph endpoint, its views and its fault injection.
//! The inspector (each copy as received, `inspect.rs`) and the Dataset Quality emulation
//! (`dataset_quality.rs`) read what this file records.

mod dataset_quality;
mod inspect;

use crate::flag;
use capi_core::meta_rules::{check_request, Violation};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tiny_http::{Header, Method, Request, Response, Server};

const PAGE_HTML: &str = include_str!("../assets/sandbox.html");
const FBEVENTS_JS: &str = include_str!("../assets/fbevents.js");
const INSPECTOR_HTML: &str = include_str!("../assets/inspector.html");
const MAX_BODY: usize = 8 * 1024 * 1024;

/// Injected failures: each Graph request fails with probability `error_rate`, as one of `kinds`.
#[derive(Debug, Clone, Default)]
struct Faults {
    error_rate: f64,
    kinds: Vec<String>,
    latency_ms: u64,
    /// While true every Graph request gets a 503, as if Meta were down.
    down: bool,
    /// Event ids Meta "rejects": a request holding one fails whole (code 100), as at Meta.
    reject_event_ids: Vec<String>,
    /// Pixels whose requests get a 503 (one destination down while others are up).
    down_pixels: Vec<String>,
    /// The next this many Graph requests fail (as one of `kinds`) before `error_rate` applies:
    /// a test of retries that must see a failure whatever the dice say.
    fail_next: u64,
}

#[derive(Default)]
struct State {
    server: Vec<Value>,
    browser: Vec<Value>,
    rejected: Vec<Value>,
    /// What the request of `rejected[i]` carried, for the inspector: its events as received (or
    /// its body's text when that was not JSON) and the sandbox's answer; never the access token.
    rejected_payloads: Vec<Value>,
    /// The last id given to a recorded copy (`s…` server, `b…` browser, `r…` rejected request).
    seq: u64,
    faults: Faults,
    injected: u64,
    rng: u64,
    trace: u64,
}

impl State {
    fn random(&mut self) -> f64 {
        // xorshift64*: good enough to spread injected faults.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn fbtrace_id(&mut self) -> String {
        self.trace += 1;
        format!("SbX{:08}", self.trace)
    }

    /// A new id for a recorded copy, unique for the sandbox's lifetime (a reset keeps counting).
    fn next_id(&mut self, kind: char) -> String {
        self.seq += 1;
        format!("{kind}{}", self.seq)
    }
}

pub fn run(args: &[String]) -> Result<(), String> {
    let listen = flag(args, "--listen").unwrap_or("127.0.0.1:8790");
    let server = Server::http(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let seed = now_ms() | 1;
    let state = Arc::new(Mutex::new(State {
        rng: seed,
        ..State::default()
    }));
    let addr = server
        .server_addr()
        .to_ip()
        .map_or_else(|| listen.to_string(), |a| a.to_string());
    eprintln!("capi-edge sandbox listening on http://{addr}/ (Graph API stand-in: POST /{{version}}/{{pixel}}/events)");
    for request in server.incoming_requests() {
        let state = Arc::clone(&state);
        std::thread::spawn(move || handle(request, &state));
    }
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .unwrap_or_else(|_| Header::from_bytes("x-invalid", "1").expect("static header"))
}

fn respond(request: Request, status: u16, content_type: &str, body: String) {
    let response = Response::from_string(body)
        .with_status_code(status)
        .with_header(header("content-type", content_type))
        .with_header(header("cache-control", "no-store"));
    let _ = request.respond(response);
}

fn respond_json(request: Request, status: u16, body: &Value) {
    respond(request, status, "application/json", body.to_string());
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn handle(mut request: Request, state: &Mutex<State>) {
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let path = path.to_string();
    let query = query.to_string();
    let mut body = Vec::new();
    if request
        .as_reader()
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut body)
        .is_err()
        || body.len() > MAX_BODY
    {
        return respond_json(
            request,
            413,
            &json!({"error": {"message": "body too large"}}),
        );
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (request.method().clone(), segments.as_slice()) {
        (Method::Get, [""]) => respond(
            request,
            200,
            "text/html; charset=utf-8",
            PAGE_HTML.to_string(),
        ),
        (Method::Get, ["fbevents.js"]) => respond(
            request,
            200,
            "text/javascript; charset=utf-8",
            FBEVENTS_JS.to_string(),
        ),
        (Method::Get, ["_sandbox"] | ["_sandbox", "inspector"]) => {
            // A fresh nonce per page: only the page's own script runs, even if an event's text
            // ever reached the markup.
            let nonce = format!("{:016x}", (lock(state).random() * u64::MAX as f64) as u64);
            let response = Response::from_string(INSPECTOR_HTML.replace("__NONCE__", &nonce))
                .with_header(header("content-type", "text/html; charset=utf-8"))
                .with_header(header("cache-control", "no-store"))
                .with_header(header(
                    "content-security-policy",
                    &format!("default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'"),
                ));
            let _ = request.respond(response);
        }
        (Method::Get, ["_sandbox", "inspect"]) => {
            let body = inspect::list(&lock(state), &query);
            respond_json(request, 200, &body)
        }
        (Method::Get, ["_sandbox", "event", id]) => {
            let id = percent_encoding::percent_decode_str(id)
                .decode_utf8_lossy()
                .into_owned();
            let found = inspect::detail(&lock(state), &id);
            match found {
                Some(body) => respond_json(request, 200, &body),
                None => respond_json(
                    request,
                    404,
                    &json!({"error": {"message": "no event with this id (the sandbox keeps events until it is reset or stopped)"}}),
                ),
            }
        }
        (Method::Get, [version, "dataset_quality"]) if version.starts_with('v') => {
            let authorization = request
                .headers()
                .iter()
                .find(|h| h.field.equiv("authorization"))
                .map(|h| h.value.as_str().to_string());
            let (status, body) = {
                let mut s = lock(state);
                let trace = s.fbtrace_id();
                dataset_quality::answer(&s, &query, authorization.as_deref(), &trace, now_ms())
            };
            respond_json(request, status, &body)
        }
        (Method::Get, ["_sandbox", "events"]) => {
            let view = view(&lock(state));
            respond_json(request, 200, &view)
        }
        // Counts only, for load tests: the full `events` view of tens of thousands of events
        // holds the lock (and the Graph endpoint) while it is built.
        (Method::Get, ["_sandbox", "count"]) => {
            let prefix = query_param(&query, "event_id_prefix")
                .map(|v| {
                    percent_encoding::percent_decode_str(v)
                        .decode_utf8_lossy()
                        .into_owned()
                })
                .unwrap_or_default();
            let body = {
                let s = lock(state);
                let ids: Vec<&str> = s
                    .server
                    .iter()
                    .filter_map(|e| e.get("event_id").and_then(Value::as_str))
                    .filter(|id| id.starts_with(prefix.as_str()))
                    .collect();
                let distinct: std::collections::HashSet<&str> = ids.iter().copied().collect();
                json!({"server_events": s.server.len(), "matching": ids.len(),
                    "distinct": distinct.len(), "rejected_requests": s.rejected.len()})
            };
            respond_json(request, 200, &body)
        }
        (Method::Post, ["_sandbox", "browser"]) => {
            let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if event.get("event_name").and_then(Value::as_str).is_none() {
                return respond_json(
                    request,
                    400,
                    &json!({"error": {"message": "event_name is required"}}),
                );
            }
            let mut event = event;
            event["received_at_ms"] = json!(now_ms());
            let mut s = lock(state);
            event["_sandbox"] = json!({"id": s.next_id('b')});
            s.browser.push(event);
            drop(s);
            respond_json(request, 200, &json!({"ok": true}))
        }
        (Method::Post, ["_sandbox", "faults"]) => {
            let f: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let faults = Faults {
                error_rate: f
                    .get("error_rate")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0)
                    .clamp(0.0, 1.0),
                kinds: strings(f.get("kinds")).unwrap_or_else(|| vec!["500".into()]),
                latency_ms: f
                    .get("latency_ms")
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
                    .min(30_000),
                down: f.get("down").and_then(Value::as_bool).unwrap_or(false),
                reject_event_ids: strings(f.get("reject_event_ids")).unwrap_or_default(),
                down_pixels: strings(f.get("down_pixels")).unwrap_or_default(),
                fail_next: f.get("fail_next").and_then(Value::as_u64).unwrap_or(0),
            };
            lock(state).faults = faults;
            respond_json(request, 200, &json!({"ok": true}))
        }
        (Method::Post, ["_sandbox", "reset"]) => {
            let mut s = lock(state);
            let (rng, seq) = (s.rng, s.seq);
            // Ids keep counting: an inspector page still open never shows a new event under an
            // id it had for another.
            *s = State {
                rng,
                seq,
                ..State::default()
            };
            drop(s);
            respond_json(request, 200, &json!({"ok": true}))
        }
        (Method::Post, [version, pixel, "events"]) if version.starts_with('v') => {
            let (version, pixel) = (version.to_string(), pixel.to_string());
            graph_events(request, state, &version, &pixel, &query, &body)
        }
        // No CORS: only the sandbox's own pages read what it keeps (no web page the developer
        // opens elsewhere may read the requests the Worker made).
        (Method::Options, _) => {
            let _ = request.respond(Response::empty(204));
        }
        _ => respond_json(
            request,
            404,
            &json!({"error": {"message": "Unknown path components", "type": "OAuthException", "code": 2500}}),
        ),
    }
}

/// A JSON array of strings (other items skipped).
fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    Some(
        v?.as_array()?
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
    )
}

/// Meta's error envelope (D-ERR).
fn graph_error(v: &Violation, fbtrace_id: &str) -> Value {
    // Graph reports both token and parameter errors as OAuthException.
    let message = if v.code == 190 {
        "Invalid OAuth access token - Cannot parse access token"
    } else {
        "Invalid parameter"
    };
    let mut e = json!({"message": message, "type": "OAuthException", "code": v.code, "error_user_title": v.rule, "error_user_msg": v.message, "is_transient": false, "fbtrace_id": fbtrace_id});
    if let Some(sub) = v.subcode {
        e["error_subcode"] = json!(sub);
    }
    json!({ "error": e })
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `POST /{version}/{pixel}/events`.
fn graph_events(
    request: Request,
    state: &Mutex<State>,
    version: &str,
    pixel: &str,
    query: &str,
    body: &[u8],
) {
    let (latency, fault) = {
        let mut s = lock(state);
        let faults = s.faults.clone();
        let fault = if faults.down || faults.down_pixels.iter().any(|p| p == pixel) {
            Some("down".to_string())
        } else if faults.fail_next > 0 && !faults.kinds.is_empty() {
            s.faults.fail_next -= 1;
            let i = (s.random() * faults.kinds.len() as f64) as usize;
            faults.kinds.get(i.min(faults.kinds.len() - 1)).cloned()
        } else if faults.error_rate > 0.0
            && s.random() < faults.error_rate
            && !faults.kinds.is_empty()
        {
            let i = (s.random() * faults.kinds.len() as f64) as usize;
            faults.kinds.get(i.min(faults.kinds.len() - 1)).cloned()
        } else {
            None
        };
        if fault.is_some() {
            s.injected += 1;
        }
        (faults.latency_ms, fault)
    };
    if latency > 0 {
        std::thread::sleep(Duration::from_millis(latency));
    }
    let trace = lock(state).fbtrace_id();
    match fault.as_deref() {
        Some("429") => {
            return respond_json(
                request,
                429,
                &json!({"error": {"message": "(#4) Application request limit reached", "type": "OAuthException", "code": 4, "is_transient": true, "fbtrace_id": trace}}),
            )
        }
        Some("timeout") => {
            // Longer than any sane client timeout; the event is not recorded.
            std::thread::sleep(Duration::from_secs(5));
            return respond_json(
                request,
                504,
                &json!({"error": {"message": "timeout", "code": 2, "is_transient": true, "fbtrace_id": trace}}),
            );
        }
        Some("down") => {
            return respond_json(
                request,
                503,
                &json!({"error": {"message": "Service temporarily unavailable", "code": 2, "is_transient": true, "fbtrace_id": trace}}),
            )
        }
        // Causes that will not fix themselves (the Worker holds the events and raises an
        // incident), as Meta answers them.
        Some("token_expired") => {
            return respond_json(
                request,
                400,
                &json!({"error": {"message": "Error validating access token: Session has expired.", "type": "OAuthException", "code": 190, "error_subcode": 463, "fbtrace_id": trace}}),
            )
        }
        Some("permission") => {
            return respond_json(
                request,
                403,
                &json!({"error": {"message": "(#200) Permissions error", "type": "OAuthException", "code": 200, "fbtrace_id": trace}}),
            )
        }
        Some("pixel_deleted") => {
            return respond_json(
                request,
                400,
                &json!({"error": {"message": format!("Unsupported post request. Object with ID '{pixel}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."), "type": "GraphMethodException", "code": 100, "error_subcode": 33, "fbtrace_id": trace}}),
            )
        }
        Some("version_retired") => {
            return respond_json(
                request,
                400,
                &json!({"error": {"message": "(#2635) You are calling a deprecated version of the Ads API. Please update to the latest version.", "type": "OAuthException", "code": 2635, "fbtrace_id": trace}}),
            )
        }
        Some(_) => {
            return respond_json(
                request,
                500,
                &json!({"error": {"message": "An unknown error occurred", "type": "OAuthException", "code": 1, "is_transient": true, "fbtrace_id": trace}}),
            )
        }
        None => {}
    }
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => {
            let v = Violation {
                code: 100,
                subcode: None,
                rule: "body_not_json",
                message: "The request body is not JSON".into(),
            };
            let payload = json!({"body_text": inspect::kept_body_text(body)});
            return reject(request, state, (version, pixel), &v, &trace, payload);
        }
    };
    // Meta takes the token from the query or the body; the sandbox records which, so tests can
    // hold the relay to keeping it out of URLs (which end up in logs and traces).
    let token_in_url = query_param(query, "access_token").is_some();
    let token = query_param(query, "access_token")
        .or_else(|| parsed.get("access_token").and_then(Value::as_str));
    let now = (now_ms() / 1000) as i64;
    let refused = lock(state).faults.reject_event_ids.clone();
    let events = parsed
        .get("data")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let refused_at = events.iter().position(|e| {
        e.get("event_id")
            .and_then(Value::as_str)
            .is_some_and(|id| refused.iter().any(|r| r == id))
    });
    if let Some(i) = refused_at {
        let v = Violation {
            code: 100,
            subcode: None,
            rule: "injected_rejection",
            message: format!("data[{i}]: rejected by the sandbox's reject_event_ids fault"),
        };
        return reject(request, state, (version, pixel), &v, &trace, parsed);
    }
    match check_request(&parsed, token, now) {
        Ok(n) => {
            let test_event_code = parsed
                .get("test_event_code")
                .cloned()
                .unwrap_or(Value::Null);
            let mut s = lock(state);
            for event in parsed
                .get("data")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let mut e = event.clone();
                e["_sandbox"] = json!({"pixel_id": pixel, "api_version": version, "fbtrace_id": trace, "test_event_code": test_event_code, "received_at_ms": now_ms(), "partner_agent": parsed.get("partner_agent"), "token_in_url": token_in_url,
                    "id": s.next_id('s'), "answer": {"status": 200, "body": {"events_received": n, "messages": [], "fbtrace_id": trace}}});
                s.server.push(e);
            }
            drop(s);
            respond_json(
                request,
                200,
                &json!({"events_received": n, "messages": [], "fbtrace_id": trace}),
            )
        }
        Err(v) => reject(request, state, (version, pixel), &v, &trace, parsed),
    }
}

/// Answers a request Meta would refuse, and records it with what it carried (`parsed`: the
/// body as received, or its text) for the inspector.
fn reject(
    request: Request,
    state: &Mutex<State>,
    (version, pixel): (&str, &str),
    v: &Violation,
    trace: &str,
    parsed: Value,
) {
    let answer = graph_error(v, trace);
    let mut s = lock(state);
    let id = s.next_id('r');
    let test_event_code = parsed
        .get("test_event_code")
        .cloned()
        .unwrap_or(Value::Null);
    s.rejected.push(json!({"pixel_id": pixel, "code": v.code, "rule": v.rule, "message": v.message, "fbtrace_id": trace, "received_at_ms": now_ms(),
        "id": id, "api_version": version, "test_event_code": test_event_code}));
    s.rejected_payloads.push(inspect::rejected_payload(
        parsed,
        json!({"status": 400, "body": answer}),
    ));
    drop(s);
    respond_json(request, 400, &answer);
}

/// What the page and tests read: every copy, and per `(event_name, event_id)` the pairing.
fn view(s: &State) -> Value {
    let mut pairs: BTreeMap<(String, String), (u64, u64, Value)> = BTreeMap::new();
    let key = |e: &Value| {
        let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        (s("event_name"), s("event_id"))
    };
    for e in &s.server {
        let entry = pairs.entry(key(e)).or_insert((0, 0, Value::Null));
        entry.1 += 1;
        entry.2 = e
            .get("_sandbox")
            .and_then(|x| x.get("received_at_ms"))
            .cloned()
            .unwrap_or(Value::Null);
    }
    for e in &s.browser {
        pairs.entry(key(e)).or_insert((0, 0, Value::Null)).0 += 1;
    }
    let pairs: Vec<Value> = pairs
        .into_iter()
        .map(|((name, id), (browser, server, _))| {
            let status = match (browser, server) {
                (_, _) if id.is_empty() => "no_event_id",
                (b, s) if b > 1 || s > 1 => "duplicate",
                (1, 1) => "deduplicated",
                (1, 0) => "browser_only",
                _ => "server_only",
            };
            json!({"event_name": name, "event_id": id, "browser": browser, "server": server, "status": status})
        })
        .collect();
    let mut summary = Map::new();
    summary.insert("server_events".into(), json!(s.server.len()));
    summary.insert("browser_events".into(), json!(s.browser.len()));
    summary.insert("rejected_requests".into(), json!(s.rejected.len()));
    summary.insert("injected_faults".into(), json!(s.injected));
    json!({"summary": summary, "pairs": pairs, "server": s.server, "browser": s.browser, "rejected": s.rejected})
}
