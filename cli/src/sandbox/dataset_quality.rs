//! `GET /{version}/dataset_quality`: an emulation of Meta's Dataset Quality API from what the
//! sandbox received, so that `capi-edge quality` can be tried and tested offline. Meta's shape
//! (developers.facebook.com/docs/marketing-api/conversions-api/dataset-quality-api), the
//! sandbox's numbers, per event name of the pixel (`dataset_id`):
//! - `event_match_quality`: `composite_score` is the mean of `capi_core::quality`'s estimate over
//!   the server copies; `match_key_feedback` the share of them carrying each key usable;
//!   `diagnostics` the keys present but unusable;
//! - `event_coverage`: server copies per browser copy (Meta: "events received from your
//!   Conversions API compared to unique browser events from the Meta Pixel"), at most 100 %;
//! - `dedupe_key_feedback`, for `event_id` only: the share of browser and of server copies that
//!   carry one, and of browser copies a server copy deduplicates;
//! - `data_freshness`: `real_time` when server copies arrived a median of under an hour after
//!   their `event_time`, `hourly` under a day, else `daily`; its description says how long ago
//!   the last one arrived.
//!
//! Meta computes its own numbers over 7 days (EMQ over 48 hours); these are not them.

use super::inspect::{identifier_of, pixel_copies, query_value};
use super::{graph_error, State};
use capi_core::meta_rules::Violation;
use capi_core::quality::{estimate_event, Estimate, POINTS};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashSet};

const NOTE: &str = "An emulation by the capi-edge sandbox from the events it received, in the shape of Meta's Dataset Quality API: the match quality is capi-edge's estimate (capi_core::quality), coverage and deduplication are counted from the sandbox's copies. Meta computes its own numbers, over 7 days.";

/// Events Manager's goal for event coverage.
const COVERAGE_GOAL: f64 = 75.0;

/// The answer to `GET /{version}/dataset_quality?dataset_id=…[&fields=web{…}][&agent_name=…]`,
/// with the token in `Authorization: Bearer …` or `access_token`.
pub(super) fn answer(
    s: &State,
    query: &str,
    authorization: Option<&str>,
    trace: &str,
    now_ms: u64,
) -> (u16, Value) {
    let from_header = authorization
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("OAuth "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    if from_header
        .or_else(|| query_value(query, "access_token"))
        .is_none()
    {
        let v = Violation {
            code: 190,
            subcode: None,
            rule: "access_token_missing",
            message: "An access token is required to request this resource.".into(),
        };
        return (400, graph_error(&v, trace));
    }
    let Some(pixel) = query_value(query, "dataset_id")
        .filter(|p| !p.is_empty() && p.len() <= 32 && p.bytes().all(|b| b.is_ascii_digit()))
    else {
        let v = Violation {
            code: 100,
            subcode: None,
            rule: "dataset_id_missing",
            message: "(#100) The parameter dataset_id is required and must be a dataset (pixel) id"
                .into(),
        };
        return (400, graph_error(&v, trace));
    };
    let agent = query_value(query, "agent_name").map(|a| a.to_lowercase());
    let copies = pixel_copies(s, &pixel);
    // Meta: agent_name keeps the events whose partner_agent, normalized, is that name.
    let server: Vec<&Value> = copies
        .server
        .into_iter()
        .filter(|e| {
            agent.as_deref().is_none_or(|a| {
                let sent = e["_sandbox"]["partner_agent"].as_str().unwrap_or("");
                sent.split('_').next().unwrap_or("").to_lowercase() == a
            })
        })
        .collect();
    let text = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let server_ids: HashSet<(String, String)> = server
        .iter()
        .map(|e| (text(e, "event_name"), text(e, "event_id")))
        .filter(|(_, id)| !id.is_empty())
        .collect();
    let browser_ids: HashSet<(&str, &str)> = copies
        .browser
        .iter()
        .filter(|(_, id)| !id.is_empty())
        .copied()
        .collect();
    let mut names: BTreeMap<String, Tally> = BTreeMap::new();
    for e in &server {
        let name = text(e, "event_name");
        let id = text(e, "event_id");
        let t = names.entry(name.clone()).or_default();
        let empty = Map::new();
        t.estimates.push(estimate_event(
            e.get("user_data")
                .and_then(Value::as_object)
                .unwrap_or(&empty),
        ));
        t.server_with_id += usize::from(!id.is_empty());
        t.server_with_browser += usize::from(browser_ids.contains(&(name.as_str(), id.as_str())));
        let received_secs = e["_sandbox"]["received_at_ms"].as_u64().unwrap_or(0) / 1000;
        if let Some(time) = e.get("event_time").and_then(Value::as_i64) {
            t.delays.push(received_secs as i64 - time);
        }
        t.last_received_ms = t
            .last_received_ms
            .max(e["_sandbox"]["received_at_ms"].as_u64().unwrap_or(0));
    }
    for (name, id) in &copies.browser {
        let t = names.entry(name.to_string()).or_default();
        t.browser += 1;
        t.browser_with_id += usize::from(!id.is_empty());
        t.browser_deduped +=
            usize::from(!id.is_empty() && server_ids.contains(&(name.to_string(), id.to_string())));
    }
    let web: Vec<Value> = names
        .iter()
        .map(|(name, t)| {
            let mut entry = Map::new();
            entry.insert("event_name".into(), json!(name));
            for (field, value) in t.fields(name, now_ms) {
                entry.insert(field.into(), value);
            }
            Value::Object(entry)
        })
        .collect();
    // As Graph does, only the fields asked for (all of them without `fields`).
    let web = match query_value(query, "fields") {
        Some(fields) => {
            let selection = Selection::parse(&fields);
            let inner = selection.0.get("web").unwrap_or(&selection);
            prune(Value::Array(web), inner)
        }
        None => Value::Array(web),
    };
    (200, json!({"web": web, "sandbox_note": NOTE}))
}

/// What the sandbox counted for one event name of the pixel.
#[derive(Default)]
struct Tally {
    estimates: Vec<Estimate>,
    server_with_id: usize,
    server_with_browser: usize,
    /// Seconds between an event's `event_time` and its arrival.
    delays: Vec<i64>,
    last_received_ms: u64,
    browser: usize,
    browser_with_id: usize,
    browser_deduped: usize,
}

/// `part` of `whole` in percent, one decimal.
fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    ((part as f64 / whole as f64 * 100.0).min(100.0) * 10.0).round() / 10.0
}

/// A duration for people: `4 s`, `3 min`, `2 h`, `5 d`.
fn duration(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7_200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3_600),
        s => format!("{} d", s / 86_400),
    }
}

impl Tally {
    /// Meta's fields for this event name, each only where the sandbox has something to say.
    fn fields(&self, name: &str, now_ms: u64) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        let n = self.estimates.len();
        if n > 0 {
            let mean = self.estimates.iter().map(|e| e.score).sum::<f64>() / n as f64;
            let share = |key: &str, list: fn(&Estimate) -> &Vec<&'static str>| {
                self.estimates
                    .iter()
                    .filter(|e| list(e).contains(&key))
                    .count()
            };
            let feedback: Vec<Value> = POINTS
                .iter()
                .map(|(key, _)| (*key, share(key, |e| &e.keys)))
                .filter(|(_, c)| *c > 0)
                .map(|(key, c)| json!({"identifier": identifier_of(key), "coverage": {"percentage": percent(c, n)}}))
                .collect();
            let diagnostics: Vec<Value> = POINTS
                .iter()
                .map(|(key, _)| (*key, share(key, |e| &e.invalid)))
                .filter(|(_, c)| *c > 0)
                .map(|(key, c)| {
                    json!({
                        "name": format!("Server sending unusable {} values", identifier_of(key)),
                        "description": format!("Sandbox emulation: {c} of {n} {name} server events carry user_data.{key} in a form that cannot match."),
                        "solution": solution(key),
                        "percentage": percent(c, n),
                        "affected_event_count": c,
                        "total_event_count": n,
                    })
                })
                .collect();
            out.push((
                "event_match_quality",
                json!({"composite_score": (mean * 10.0).round() / 10.0, "match_key_feedback": feedback, "diagnostics": diagnostics}),
            ));
        }
        if self.browser > 0 {
            out.push((
                "event_coverage",
                json!({
                    "percentage": percent(n, self.browser),
                    "goal_percentage": COVERAGE_GOAL,
                    "description": format!("Sandbox emulation: {n} server copies of {name} for {} browser copies; {} of the {n} server copies have a browser copy with their event_id.", self.browser, self.server_with_browser),
                }),
            ));
        }
        let mut dedupe = Map::new();
        dedupe.insert("dedupe_key".into(), json!("event_id"));
        if self.browser > 0 {
            dedupe.insert(
                "browser_events_with_dedupe_key".into(),
                json!({"percentage": percent(self.browser_with_id, self.browser), "description": format!("Sandbox emulation: {} of {} browser copies carry an event_id.", self.browser_with_id, self.browser)}),
            );
        }
        if n > 0 {
            dedupe.insert(
                "server_events_with_dedupe_key".into(),
                json!({"percentage": percent(self.server_with_id, n), "description": format!("Sandbox emulation: {} of {n} server copies carry an event_id; {} have a browser copy with it.", self.server_with_id, self.server_with_browser)}),
            );
        }
        if self.browser > 0 {
            dedupe.insert(
                "overall_browser_coverage_from_dedupe_key".into(),
                json!({"percentage": percent(self.browser_deduped, self.browser), "description": format!("Sandbox emulation: {} of {} browser copies are deduplicated with a server copy by event_id.", self.browser_deduped, self.browser)}),
            );
        }
        out.push(("dedupe_key_feedback", json!([dedupe])));
        if n > 0 {
            let mut delays = self.delays.clone();
            delays.sort_unstable();
            let median = delays.get(delays.len() / 2).copied().unwrap_or(0);
            let frequency = match median {
                d if d < 3_600 => "real_time",
                d if d < 86_400 => "hourly",
                _ => "daily",
            };
            let ago = (now_ms.saturating_sub(self.last_received_ms) / 1000) as i64;
            out.push((
                "data_freshness",
                json!({
                    "upload_frequency": frequency,
                    "description": format!("Sandbox emulation: the last {name} arrived {} ago; server copies arrived a median {} after their event_time.", duration(ago), duration(median)),
                }),
            ));
        }
        out
    }
}

/// What makes a key usable again.
fn solution(key: &str) -> &'static str {
    match key {
        "fbc" => "Send the _fbc cookie unchanged, or build it from fbclid as fb.1.<ms>.<fbclid>.",
        "fbp" => "Send the _fbp cookie unchanged (fb.<index>.<ms>.<random>).",
        "client_ip_address" => {
            "Send the shopper's public IP address, not one of the shop's own network."
        }
        "client_user_agent" => "Send the browser's User-Agent header as it came.",
        "external_id" => "Send a non-empty id that is the same for the pixel and the server.",
        _ => {
            "Normalize and SHA-256 hash the value as Meta documents it (capi-edge hash shows how)."
        }
    }
}

/// A Graph `fields` selection: each name with the selection inside its braces (empty: all).
#[derive(Default)]
struct Selection(BTreeMap<String, Selection>);

/// Deeper selections are taken whole: no query can make the parser recurse without end.
const MAX_SELECTION_DEPTH: usize = 8;

impl Selection {
    fn parse(text: &str) -> Selection {
        Selection::parse_from(&mut text.chars(), 0)
    }

    fn parse_from(chars: &mut std::str::Chars<'_>, depth: usize) -> Selection {
        let mut names = BTreeMap::new();
        let mut name = String::new();
        let mut add = |name: &mut String, inner: Selection| {
            let n = name.trim();
            if !n.is_empty() {
                names.insert(n.to_string(), inner);
            }
            name.clear();
        };
        while let Some(c) = chars.next() {
            match c {
                '{' if depth < MAX_SELECTION_DEPTH => {
                    let inner = Selection::parse_from(chars, depth + 1);
                    add(&mut name, inner);
                }
                '{' => {
                    // Too deep: skip this selection to its closing brace, take the field whole.
                    let mut open = 1;
                    for c in chars.by_ref() {
                        open += i32::from(c == '{') - i32::from(c == '}');
                        if open == 0 {
                            break;
                        }
                    }
                    add(&mut name, Selection::default());
                }
                '}' => break,
                ',' => add(&mut name, Selection::default()),
                c => name.push(c),
            }
        }
        add(&mut name, Selection::default());
        Selection(names)
    }
}

/// `value` with only the selected fields of its objects (lists: of each item).
fn prune(value: Value, selection: &Selection) -> Value {
    if selection.0.is_empty() {
        return value;
    }
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .filter_map(|(k, v)| selection.0.get(&k).map(|inner| (k, prune(v, inner))))
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| prune(v, selection)).collect())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        let mut s = State::default();
        let now = 1_800_000_000u64;
        let full = json!({"em": "a".repeat(64), "ph": "b".repeat(64), "client_user_agent": "UA", "client_ip_address": "203.0.113.9"});
        let thin = json!({"client_user_agent": "UA", "client_ip_address": "10.0.0.1", "external_id": "c1"});
        for (id, user_data) in [("a1", full), ("a2", thin)] {
            s.server.push(json!({"event_name": "AddToCart", "event_id": id, "event_time": now - 2, "user_data": user_data,
                "_sandbox": {"pixel_id": "1", "received_at_ms": now * 1000, "partner_agent": "capi-edge"}}));
        }
        for id in ["a1", "other"] {
            s.browser
                .push(json!({"event_name": "AddToCart", "event_id": id, "pixel_ids": ["1"]}));
        }
        s
    }

    #[test]
    fn emulates_meta_fields_from_the_copies() {
        let s = state();
        let now_ms = 1_800_000_030_000;
        let (status, body) = answer(&s, "dataset_id=1", Some("Bearer t"), "T", now_ms);
        assert_eq!(status, 200);
        let add = &body["web"][0];
        assert_eq!(add["event_name"], "AddToCart");
        // 6 (em, ph, ip, ua) and 1.5 (external_id, ua: a private IP does not count).
        assert_eq!(add["event_match_quality"]["composite_score"], 3.8);
        assert_eq!(
            add["event_match_quality"]["match_key_feedback"][0],
            json!({"identifier": "email", "coverage": {"percentage": 50.0}})
        );
        assert_eq!(
            add["event_match_quality"]["diagnostics"][0]["affected_event_count"],
            1
        );
        assert_eq!(add["event_coverage"]["percentage"], 100.0);
        let dedupe = &add["dedupe_key_feedback"][0];
        assert_eq!(
            dedupe["overall_browser_coverage_from_dedupe_key"]["percentage"],
            50.0
        );
        assert_eq!(add["data_freshness"]["upload_frequency"], "real_time");
        assert!(add["data_freshness"]["description"]
            .as_str()
            .unwrap_or("")
            .contains("30 s ago"));
    }

    #[test]
    fn fields_agent_and_errors() {
        let s = state();
        let (_, body) = answer(
            &s,
            "dataset_id=1&fields=web%7Bevent_name%2Cdata_freshness%7Bupload_frequency%7D%7D",
            None,
            "T",
            0,
        );
        assert_eq!(body["error"]["code"], 190, "no token");
        let q =
            "dataset_id=1&access_token=t&fields=web{event_name,data_freshness{upload_frequency}}";
        let (_, body) = answer(&s, q, None, "T", 0);
        assert_eq!(
            body["web"][0],
            json!({"event_name": "AddToCart", "data_freshness": {"upload_frequency": "real_time"}})
        );
        let deep = format!("dataset_id=1&access_token=t&fields={}", "web{".repeat(5000));
        assert_eq!(
            answer(&s, &deep, None, "T", 0).0,
            200,
            "no recursion without end"
        );
        let (_, body) = answer(
            &s,
            "dataset_id=1&agent_name=other",
            Some("Bearer t"),
            "T",
            0,
        );
        assert!(body["web"][0].get("event_match_quality").is_none());
        let (status, body) = answer(&s, "dataset_id=x1", Some("Bearer t"), "T", 0);
        assert_eq!((status, body["error"]["code"].as_u64()), (400, Some(100)));
        let (_, body) = answer(&s, "dataset_id=2", Some("Bearer t"), "T", 0);
        assert_eq!(body["web"], json!([]));
    }
}
