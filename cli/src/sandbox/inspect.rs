//! The inspector's data: every copy the sandbox received — browser copies (the demo page's pixel
//! stand-in), server copies (`POST /{version}/{pixel}/events`) and the events of requests it
//! refused — newest first, each with its pairing status, why it stayed unpaired when the sandbox
//! can tell, and `capi_core::quality`'s estimate of its match quality; and one copy in full,
//! exactly as received, with the request it came in and the sandbox's answer.
//!
//! Copies pair as at Meta: same pixel, same `event_name`, same `event_id` (D-DEDUP). A browser
//! copy the stand-in sent for several pixels is one copy per pixel, as Meta's pixel sends one
//! request per pixel.

use super::State;
use capi_core::normalize::Field;
use capi_core::quality::estimate_event;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Each status a copy can have, in the inspector's order.
pub(super) const STATUSES: [&str; 6] = [
    "deduplicated",
    "browser_only",
    "server_only",
    "duplicate",
    "no_event_id",
    "rejected",
];

/// Two unpaired copies of one event name this close in time (seconds) are taken for one event
/// whose ids differ. Meta's own window for "arrived together" is 5 minutes (D-SE).
const CLOSE_SECS: i64 = 300;
const DEFAULT_LIMIT: usize = 500;
const MAX_LIMIT: usize = 5_000;
/// The most of a body that was not JSON the sandbox keeps, in bytes.
const MAX_TEXT: usize = 64 * 1024;

pub(super) const ESTIMATE_NOTE: &str = "An estimate by capi-edge (capi_core::quality) from the match keys each server copy carries, not Meta's Event Match Quality: Meta computes that in Events Manager, over 48 hours, with a formula it does not publish.";

/// The `user_data` keys (Meta's customer information parameters, D-CIP): the field each one
/// holds, and its name in the Dataset Quality API's `match_key_feedback` (Meta's documented
/// names: email, phone, external_id, ip_address, user_agent; the rest follow them).
pub(super) const KEYS: &[(&str, &str, &str)] = &[
    ("em", "email", "email"),
    ("ph", "phone", "phone"),
    ("external_id", "external id", "external_id"),
    ("fbc", "click id (_fbc cookie)", "fbc"),
    ("fbp", "browser id (_fbp cookie)", "fbp"),
    ("client_ip_address", "IP address", "ip_address"),
    ("client_user_agent", "user agent", "user_agent"),
    ("fn", "first name", "first_name"),
    ("ln", "last name", "last_name"),
    ("db", "date of birth", "date_of_birth"),
    ("ge", "gender", "gender"),
    ("ct", "city", "city"),
    ("st", "state", "state"),
    ("zp", "zip code", "zip"),
    ("country", "country", "country"),
    ("subscription_id", "subscription id", "subscription_id"),
    ("fb_login_id", "Facebook login id", "fb_login_id"),
    ("lead_id", "lead id", "lead_id"),
    ("anon_id", "app install id", "anon_id"),
    ("madid", "mobile advertiser id", "madid"),
    ("page_id", "page id", "page_id"),
    (
        "page_scoped_user_id",
        "page-scoped user id",
        "page_scoped_user_id",
    ),
    ("ctwa_clid", "click-to-WhatsApp click id", "ctwa_clid"),
    ("ig_account_id", "Instagram account id", "ig_account_id"),
    ("ig_sid", "Instagram scoped user id", "ig_sid"),
];

/// The field a `user_data` key holds.
fn field_of(key: &str) -> &'static str {
    KEYS.iter()
        .find(|(k, _, _)| *k == key)
        .map_or("not a Meta key", |(_, field, _)| field)
}

/// A key's name in the Dataset Quality API.
pub(super) fn identifier_of(key: &str) -> &str {
    KEYS.iter()
        .find(|(k, _, _)| *k == key)
        .map_or(key, |(_, _, id)| id)
}

/// Where a key comes in [`KEYS`] (unknown keys last), to list keys in one order everywhere.
fn key_rank(key: &str) -> usize {
    KEYS.iter()
        .position(|(k, _, _)| *k == key)
        .unwrap_or(KEYS.len())
}

/// A value as Meta wants a hashed key: 64 lowercase hex, or a Parameter Builder
/// `<hex>.<appendix>` (D-PBL); a list of them.
fn looks_hashed(v: &Value) -> bool {
    let one = |s: &str| {
        let hex = s.split_once('.').map_or(s, |(h, _)| h);
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    match v {
        Value::String(s) => one(s),
        Value::Array(a) => !a.is_empty() && a.iter().all(|x| x.as_str().is_some_and(one)),
        _ => false,
    }
}

/// What the sandbox keeps of a body that is not JSON: its text, cut to [`MAX_TEXT`] bytes,
/// unless it may carry the access token or the proof made from it (Graph also takes form-encoded
/// bodies, `access_token=…&data=…`): the token itself is never kept.
pub(super) fn kept_body_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let lower = text.to_ascii_lowercase();
    if lower.contains("access_token") || lower.contains("appsecret_proof") {
        "(not kept: the body carries an access token)".into()
    } else {
        truncated(&text)
    }
}

/// `text` cut to [`MAX_TEXT`] bytes on a character boundary.
pub(super) fn truncated(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_string();
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

/// What the sandbox keeps of a refused request: its events as received, the rest of its body
/// without the access token (nor the proof made from it), and the answer.
pub(super) fn rejected_payload(parsed: Value, answer: Value) -> Value {
    let mut request = parsed;
    let mut events = Value::Null;
    if let Some(body) = request.as_object_mut() {
        body.remove("access_token");
        body.remove("appsecret_proof");
        match body.remove("data") {
            Some(Value::Array(list)) => events = Value::Array(list),
            Some(other) => {
                body.insert("data".into(), other);
            }
            None => {}
        }
    }
    json!({"events": events, "request": request, "answer": answer})
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Copy {
    Browser,
    Server,
    Rejected,
}

impl Copy {
    fn as_str(self) -> &'static str {
        match self {
            Copy::Browser => "browser",
            Copy::Server => "server",
            Copy::Rejected => "rejected",
        }
    }
}

/// One copy of an event as the inspector lists it.
struct Row<'a> {
    id: String,
    /// The order copies were recorded in, and the place of an event in its request.
    seq: u64,
    index: usize,
    copy: Copy,
    pixel: &'a str,
    name: &'a str,
    event_id: &'a str,
    received_at_ms: u64,
    /// When the event happened (server: `event_time`; browser: when it arrived), in seconds.
    time_secs: i64,
    /// The event as received (a browser copy: the pixel call; a refused request without
    /// events: what it carried).
    event: &'a Value,
    /// Server copies: their `_sandbox` record; refused ones: their `rejected` entry.
    record: Option<&'a Value>,
    /// Refused ones: what their request carried.
    payload: Option<&'a Value>,
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The number in an id such as `s12` or `b7.1`.
fn seq_of(id: &str) -> u64 {
    id.get(1..)
        .unwrap_or("")
        .split('.')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The id of the `k`-th copy recorded under `base` (a browser copy's pixel, a refused request's
/// event): `base` itself for the first.
fn sub_id(base: &str, k: usize) -> String {
    if k == 0 {
        base.to_string()
    } else {
        format!("{base}.{k}")
    }
}

/// Every copy, newest first.
fn rows(s: &State) -> Vec<Row<'_>> {
    let mut rows = Vec::with_capacity(s.server.len() + s.browser.len() + s.rejected.len());
    for e in &s.server {
        let meta = e.get("_sandbox");
        let id = meta.map_or("s0", |m| text(m, "id")).to_string();
        let received_at_ms = meta
            .and_then(|m| m.get("received_at_ms"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        rows.push(Row {
            seq: seq_of(&id),
            id,
            index: 0,
            copy: Copy::Server,
            pixel: meta.map_or("", |m| text(m, "pixel_id")),
            name: text(e, "event_name"),
            event_id: text(e, "event_id"),
            received_at_ms,
            time_secs: e
                .get("event_time")
                .and_then(Value::as_i64)
                .unwrap_or((received_at_ms / 1000) as i64),
            event: e,
            record: meta,
            payload: None,
        });
    }
    for e in &s.browser {
        let base = e.get("_sandbox").map_or("b0", |m| text(m, "id"));
        let received_at_ms = e.get("received_at_ms").and_then(Value::as_u64).unwrap_or(0);
        let mut pixels: Vec<&str> = e
            .get("pixel_ids")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if pixels.is_empty() {
            pixels.push("");
        }
        for (k, pixel) in pixels.into_iter().enumerate() {
            rows.push(Row {
                seq: seq_of(base),
                id: sub_id(base, k),
                index: k,
                copy: Copy::Browser,
                pixel,
                name: text(e, "event_name"),
                event_id: text(e, "event_id"),
                received_at_ms,
                time_secs: (received_at_ms / 1000) as i64,
                event: e,
                record: None,
                payload: None,
            });
        }
    }
    for (i, r) in s.rejected.iter().enumerate() {
        let base = text(r, "id");
        let payload = s.rejected_payloads.get(i);
        let received_at_ms = r.get("received_at_ms").and_then(Value::as_u64).unwrap_or(0);
        let events: Vec<&Value> = match payload
            .and_then(|p| p.get("events"))
            .and_then(Value::as_array)
            .filter(|list| !list.is_empty())
        {
            Some(list) => list.iter().collect(),
            None => vec![payload
                .and_then(|p| p.get("request"))
                .unwrap_or(&Value::Null)],
        };
        for (index, event) in events.into_iter().enumerate() {
            rows.push(Row {
                seq: seq_of(base),
                id: sub_id(base, index),
                index,
                copy: Copy::Rejected,
                pixel: text(r, "pixel_id"),
                name: text(event, "event_name"),
                event_id: text(event, "event_id"),
                received_at_ms,
                time_secs: event
                    .get("event_time")
                    .and_then(Value::as_i64)
                    .unwrap_or((received_at_ms / 1000) as i64),
                event,
                record: Some(r),
                payload,
            });
        }
    }
    rows.sort_by(|a, b| {
        b.received_at_ms
            .cmp(&a.received_at_ms)
            .then(b.seq.cmp(&a.seq))
            .then(a.index.cmp(&b.index))
    });
    rows
}

/// The copies, looked up the ways pairing needs.
struct Index<'r, 'a> {
    rows: &'r [Row<'a>],
    /// Accepted copies (browser and server) per `(pixel, event_name, event_id)`.
    by_key: HashMap<(&'a str, &'a str, &'a str), Vec<usize>>,
    /// Accepted copies per `(pixel, event_id)`.
    by_id: HashMap<(&'a str, &'a str), Vec<usize>>,
    /// Accepted copies per `(pixel, event_name)`.
    by_name: HashMap<(&'a str, &'a str), Vec<usize>>,
    /// Every copy, refused ones too, of any pixel, per `(event_name, event_id)`.
    by_name_id: HashMap<(&'a str, &'a str), Vec<usize>>,
    /// Each row's status, worked out once.
    statuses: Vec<&'static str>,
}

impl<'r, 'a> Index<'r, 'a> {
    fn new(rows: &'r [Row<'a>]) -> Self {
        let mut index = Index {
            rows,
            by_key: HashMap::new(),
            by_id: HashMap::new(),
            by_name: HashMap::new(),
            by_name_id: HashMap::new(),
            statuses: Vec::new(),
        };
        for (i, r) in rows.iter().enumerate() {
            if !r.event_id.is_empty() {
                index
                    .by_name_id
                    .entry((r.name, r.event_id))
                    .or_default()
                    .push(i);
            }
            if r.copy == Copy::Rejected {
                continue;
            }
            index.by_name.entry((r.pixel, r.name)).or_default().push(i);
            if !r.event_id.is_empty() {
                index
                    .by_key
                    .entry((r.pixel, r.name, r.event_id))
                    .or_default()
                    .push(i);
                index
                    .by_id
                    .entry((r.pixel, r.event_id))
                    .or_default()
                    .push(i);
            }
        }
        index.statuses = (0..rows.len()).map(|i| index.status_of(i)).collect();
        index
    }

    /// Browser and server copies with the row's pixel, name and id.
    fn counts(&self, i: usize) -> (usize, usize) {
        let r = &self.rows[i];
        let same = self
            .by_key
            .get(&(r.pixel, r.name, r.event_id))
            .map_or(&[][..], Vec::as_slice);
        let browser = same
            .iter()
            .filter(|&&j| self.rows[j].copy == Copy::Browser)
            .count();
        (browser, same.len() - browser)
    }

    fn status(&self, i: usize) -> &'static str {
        self.statuses.get(i).copied().unwrap_or("rejected")
    }

    fn status_of(&self, i: usize) -> &'static str {
        let r = &self.rows[i];
        if r.copy == Copy::Rejected {
            return "rejected";
        }
        if r.event_id.is_empty() {
            return "no_event_id";
        }
        match self.counts(i) {
            (b, s) if b > 1 || s > 1 => "duplicate",
            (1, 1) => "deduplicated",
            (1, 0) => "browser_only",
            _ => "server_only",
        }
    }

    /// The other side's copies this one pairs with.
    fn paired_with(&self, i: usize) -> Vec<&str> {
        let r = &self.rows[i];
        if r.copy == Copy::Rejected || r.event_id.is_empty() {
            return Vec::new();
        }
        self.by_key
            .get(&(r.pixel, r.name, r.event_id))
            .into_iter()
            .flatten()
            .map(|&j| &self.rows[j])
            .filter(|o| o.copy != r.copy)
            .map(|o| o.id.as_str())
            .collect()
    }

    /// Why a copy has its status, when the sandbox can tell.
    fn why(&self, i: usize) -> Option<String> {
        let r = &self.rows[i];
        match self.status(i) {
            "rejected" => {
                let rec = r.record?;
                Some(format!(
                    "Meta would refuse the whole request: {} ({}, code {})",
                    text(rec, "message"),
                    text(rec, "rule"),
                    rec.get("code").and_then(Value::as_u64).unwrap_or(0)
                ))
            }
            "no_event_id" => Some(
                "no event_id: Meta cannot tell this copy's other copy from another event".into(),
            ),
            "duplicate" => {
                let (b, s) = self.counts(i);
                Some(format!(
                    "{b} browser and {s} server copies share this pixel, event_name and event_id: Meta deduplicates a browser copy against a server copy, and does not promise to drop a second copy from the same side"
                ))
            }
            "browser_only" | "server_only" => Some(self.why_unpaired(i)),
            _ => None,
        }
    }

    fn why_unpaired(&self, i: usize) -> String {
        let r = &self.rows[i];
        let (other, other_name) = match r.copy {
            Copy::Browser => (Copy::Server, "server"),
            _ => (Copy::Browser, "browser"),
        };
        if r.copy == Copy::Browser && r.pixel.is_empty() {
            return "the pixel named no pixel id (no fbq('init') before this event): Meta would not know which dataset it is for".into();
        }
        let source = text(r.event, "action_source");
        if r.copy == Copy::Server && !source.is_empty() && source != "website" {
            return format!("expected: action_source is \"{source}\", and only website events have a browser copy");
        }
        let same_name_id = self
            .by_name_id
            .get(&(r.name, r.event_id))
            .map_or(&[][..], Vec::as_slice);
        if r.copy == Copy::Browser {
            if let Some(rec) = same_name_id
                .iter()
                .map(|&j| &self.rows[j])
                .find(|o| o.copy == Copy::Rejected && o.pixel == r.pixel)
                .and_then(|o| o.record)
            {
                return format!(
                    "its server copy was refused: {} ({})",
                    text(rec, "message"),
                    text(rec, "rule")
                );
            }
        }
        if let Some(o) = self
            .by_id
            .get(&(r.pixel, r.event_id))
            .into_iter()
            .flatten()
            .map(|&j| &self.rows[j])
            .find(|o| o.copy == other && o.name != r.name)
        {
            return format!(
                "names differ: the {other_name} copy with this event_id is named \"{}\"; Meta pairs copies only when event_name and event_id are both equal",
                o.name
            );
        }
        let close = self
            .by_name
            .get(&(r.pixel, r.name))
            .into_iter()
            .flatten()
            .filter(|&&j| {
                self.rows[j].copy == other
                    && self.rows[j].event_id != r.event_id
                    && matches!(
                        self.status(j),
                        "browser_only" | "server_only" | "no_event_id"
                    )
            })
            .map(|&j| (&self.rows[j], (self.rows[j].time_secs - r.time_secs).abs()))
            .filter(|(_, apart)| *apart <= CLOSE_SECS)
            .min_by_key(|(_, apart)| *apart);
        if let Some((o, apart)) = close {
            let theirs = if o.event_id.is_empty() {
                "no event_id".to_string()
            } else {
                format!("event_id \"{}\"", o.event_id)
            };
            return format!(
                "ids differ: an unpaired {other_name} copy of {} {apart} s apart has {theirs}; the pixel's eventID must equal the server's event_id",
                r.name
            );
        }
        if let Some(o) = same_name_id
            .iter()
            .map(|&j| &self.rows[j])
            .find(|o| o.copy == other && o.pixel != r.pixel)
        {
            return format!(
                "pixels differ: the {other_name} copy went to pixel {}",
                if o.pixel.is_empty() {
                    "(none)"
                } else {
                    o.pixel
                }
            );
        }
        match r.copy {
            Copy::Browser => "no server copy with this event_name and event_id has arrived: the Worker has not sent it yet (queue, retries) or did not send it (consent, privacy settings, origin, a signed order's Purchase) — its receipt (/t/receipts/{event_id}) says which".into(),
            _ => "no browser copy with this event_id has arrived: the page did not call fbq with eventID equal to event_id (not fired, blocked, consent revoked), or it is late".into(),
        }
    }

    /// The row as listed: what it is, its status and why, its match keys and their estimate.
    fn summary(&self, i: usize) -> Value {
        let r = &self.rows[i];
        let user_data = r.event.get("user_data").and_then(Value::as_object);
        let mut keys: Vec<&str> = user_data
            .into_iter()
            .flat_map(|u| u.keys())
            .map(String::as_str)
            .collect();
        keys.sort_by_key(|k| key_rank(k));
        let estimate = match (r.copy, user_data) {
            (Copy::Browser, _) | (_, None) => Value::Null,
            (_, Some(u)) => serde_json::to_value(estimate_event(u)).unwrap_or(Value::Null),
        };
        let from_record = |key: &str| r.record.and_then(|m| m.get(key)).cloned();
        let or_null = |s: &str| {
            if s.is_empty() {
                Value::Null
            } else {
                json!(s)
            }
        };
        json!({
            "id": r.id,
            "copy": r.copy.as_str(),
            "event_name": or_null(r.name),
            "event_id": or_null(r.event_id),
            "pixel_id": or_null(r.pixel),
            "api_version": from_record("api_version"),
            "test_event_code": from_record("test_event_code"),
            "received_at_ms": r.received_at_ms,
            "status": self.status(i),
            "why": self.why(i),
            "paired_with": self.paired_with(i),
            "match_keys": keys,
            "estimate": estimate,
        })
    }

    /// The row in full: the copy exactly as received, each `user_data` key with its field, the
    /// request it came in and the sandbox's answer.
    fn detail(&self, i: usize) -> Value {
        let r = &self.rows[i];
        let mut out = self.summary(i);
        let mut payload = r.event.clone();
        if let Some(p) = payload.as_object_mut() {
            p.remove("_sandbox");
        }
        let estimate = &out["estimate"];
        let listed = |k: &str, list: &str| {
            estimate[list]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == k))
        };
        let user_data: Vec<Value> = r
            .event
            .get("user_data")
            .and_then(Value::as_object)
            .map(|u| {
                let mut entries: Vec<(&String, &Value)> = u.iter().collect();
                entries.sort_by_key(|(k, _)| key_rank(k));
                entries
                    .into_iter()
                    .map(|(k, v)| {
                        json!({"key": k, "field": field_of(k), "value": v, "hashed": looks_hashed(v),
                            "meta_wants_hashed": Field::from_key(k).is_some(),
                            "counts": listed(k, "keys"), "invalid": listed(k, "invalid")})
                    })
                    .collect()
            })
            .unwrap_or_default();
        let field = |k: &str| r.event.get(k).cloned().unwrap_or(Value::Null);
        let (request, answer, custom_data) = match r.copy {
            Copy::Server => {
                let m = r.record.cloned().unwrap_or(Value::Null);
                (
                    json!({"pixel_id": m["pixel_id"], "api_version": m["api_version"], "test_event_code": m["test_event_code"],
                        "partner_agent": m["partner_agent"], "token_in_url": m["token_in_url"], "fbtrace_id": m["fbtrace_id"]}),
                    m["answer"].clone(),
                    field("custom_data"),
                )
            }
            Copy::Browser => (
                json!({"pixel_id": r.pixel, "pixel_ids": field("pixel_ids"), "method": field("method"), "page_url": field("url")}),
                json!({"status": 200, "body": {"ok": true}}),
                field("params"),
            ),
            Copy::Rejected => {
                let m = r.record.cloned().unwrap_or(Value::Null);
                let p = r.payload.cloned().unwrap_or(Value::Null);
                let events = p["events"].as_array().map_or(0, Vec::len);
                (
                    json!({"pixel_id": m["pixel_id"], "api_version": m["api_version"], "test_event_code": m["test_event_code"],
                        "partner_agent": p["request"]["partner_agent"], "fbtrace_id": m["fbtrace_id"], "events_in_request": events}),
                    p["answer"].clone(),
                    field("custom_data"),
                )
            }
        };
        let extra = json!({
            "payload": payload,
            "user_data": user_data,
            "custom_data": custom_data,
            "action_source": field("action_source"),
            "event_time": field("event_time"),
            "event_source_url": field("event_source_url"),
            "data_processing_options": field("data_processing_options"),
            "data_processing_options_country": field("data_processing_options_country"),
            "data_processing_options_state": field("data_processing_options_state"),
            "request": request,
            "answer": answer,
            "estimate_note": ESTIMATE_NOTE,
        });
        if let (Some(o), Value::Object(e)) = (out.as_object_mut(), extra) {
            o.extend(e);
        }
        out
    }
}

/// A query parameter, percent-decoded (`+` is a space, as in forms).
pub(super) fn query_value(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
        .filter(|v| !v.is_empty())
}

/// `GET /_sandbox/inspect[?name=&status=&pixel=&limit=]`: the copies, newest first, filtered.
pub(super) fn list(s: &State, query: &str) -> Value {
    let rows = rows(s);
    let index = Index::new(&rows);
    let name = query_value(query, "name");
    let status = query_value(query, "status");
    let pixel = query_value(query, "pixel");
    let limit = query_value(query, "limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(DEFAULT_LIMIT)
        .clamp(1, MAX_LIMIT);
    let mut statuses: BTreeMap<&str, usize> = STATUSES.iter().map(|s| (*s, 0)).collect();
    let mut names = BTreeSet::new();
    let mut pixels = BTreeSet::new();
    let mut matching = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let st = index.status(i);
        *statuses.entry(st).or_default() += 1;
        if !r.name.is_empty() {
            names.insert(r.name);
        }
        if !r.pixel.is_empty() {
            pixels.insert(r.pixel);
        }
        if name.as_deref().is_none_or(|n| n == r.name)
            && status.as_deref().is_none_or(|x| x == st)
            && pixel.as_deref().is_none_or(|p| p == r.pixel)
        {
            matching.push(i);
        }
    }
    let events: Vec<Value> = matching
        .iter()
        .take(limit)
        .map(|&i| index.summary(i))
        .collect();
    json!({
        "summary": {
            "copies": rows.len(),
            "server_events": s.server.len(),
            "browser_events": s.browser.len(),
            "rejected_requests": s.rejected.len(),
            "injected_faults": s.injected,
        },
        "statuses": statuses,
        "names": names,
        "pixels": pixels,
        "filters": {"name": name, "status": status, "pixel": pixel},
        "matching": matching.len(),
        "shown": events.len(),
        "events": events,
        "estimate_note": ESTIMATE_NOTE,
    })
}

/// `GET /_sandbox/event/{id}`: one copy in full.
pub(super) fn detail(s: &State, id: &str) -> Option<Value> {
    let rows = rows(s);
    let i = rows.iter().position(|r| r.id == id)?;
    Some(Index::new(&rows).detail(i))
}

/// The `user_data` of the server copies a pixel received, with their name, id, times and
/// partner agent, for the Dataset Quality emulation; and its browser copies' names and ids.
pub(super) struct PixelCopies<'a> {
    pub server: Vec<&'a Value>,
    pub browser: Vec<(&'a str, &'a str)>,
}

pub(super) fn pixel_copies<'a>(s: &'a State, pixel: &str) -> PixelCopies<'a> {
    let server = s
        .server
        .iter()
        .filter(|e| {
            e.get("_sandbox")
                .is_some_and(|m| text(m, "pixel_id") == pixel)
        })
        .collect();
    let browser = s
        .browser
        .iter()
        .filter(|e| {
            e.get("pixel_ids")
                .and_then(Value::as_array)
                .is_some_and(|ids| ids.iter().any(|p| p.as_str() == Some(pixel)))
        })
        .map(|e| (text(e, "event_name"), text(e, "event_id")))
        .collect();
    PixelCopies { server, browser }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State::default()
    }

    fn server(s: &mut State, pixel: &str, name: &str, id: &str, time: i64, user_data: Value) {
        let sid = s.next_id('s');
        s.server.push(json!({"event_name": name, "event_id": id, "event_time": time, "action_source": "website",
            "user_data": user_data, "_sandbox": {"id": sid, "pixel_id": pixel, "api_version": "v26.0", "received_at_ms": time as u64 * 1000}}));
    }

    fn browser(s: &mut State, pixels: &[&str], name: &str, id: &str, time: i64) {
        let bid = s.next_id('b');
        s.browser.push(json!({"event_name": name, "event_id": id, "pixel_ids": pixels, "received_at_ms": time as u64 * 1000, "_sandbox": {"id": bid}}));
    }

    fn row<'v>(list: &'v Value, id: &str) -> &'v Value {
        list["events"]
            .as_array()
            .and_then(|e| e.iter().find(|r| r["id"] == id))
            .unwrap_or(&Value::Null)
    }

    #[test]
    fn a_body_that_is_not_json_is_kept_without_its_token() {
        for body in [
            "access_token=EAAB-sandbox-secret&data=%5B%5D",
            "data=%5B%5D&appsecret_proof=abc123&ACCESS_TOKEN=EAAB-sandbox-secret",
            "{\"access_token\": \"EAAB-sandbox-secret\", \"data\": [",
        ] {
            let kept = kept_body_text(body.as_bytes());
            assert!(!kept.contains("EAAB-sandbox-secret"), "{kept}");
            assert!(!kept.contains("abc123"), "{kept}");
        }
        assert_eq!(kept_body_text(b"data=%5B%5D"), "data=%5B%5D");
    }

    #[test]
    fn pairs_per_pixel_and_says_why_copies_stay_alone() {
        let mut s = state();
        let ua = json!({"client_user_agent": "UA", "client_ip_address": "203.0.113.9"});
        browser(&mut s, &["1"], "AddToCart", "a", 1000); // b1
        server(&mut s, "1", "AddToCart", "a", 1000, ua.clone()); // s2
        browser(&mut s, &["1"], "Lead", "lead-b", 2000); // b3
        server(&mut s, "1", "Lead", "lead-s", 2010, ua.clone()); // s4
        browser(&mut s, &["1"], "ViewContent", "vc", 3000); // b5
        server(&mut s, "1", "ViewItem", "vc", 3000, ua.clone()); // s6
        server(&mut s, "2", "Search", "x", 4000, ua.clone()); // s7
        browser(&mut s, &["1"], "Search", "x", 4000); // b8
        browser(&mut s, &[], "Contact", "c", 5000); // b9
        let list = list(&s, "");
        assert_eq!(row(&list, "s2")["status"], "deduplicated");
        assert_eq!(row(&list, "s2")["paired_with"], json!(["b1"]));
        let why = |id: &str| row(&list, id)["why"].as_str().unwrap_or("").to_string();
        assert!(why("b3").starts_with("ids differ"), "{}", why("b3"));
        assert!(why("s4").contains("\"lead-b\""), "{}", why("s4"));
        assert!(why("b5").starts_with("names differ"), "{}", why("b5"));
        assert!(why("s6").contains("\"ViewContent\""), "{}", why("s6"));
        assert!(why("b8").starts_with("pixels differ"), "{}", why("b8"));
        assert!(why("b9").contains("no pixel id"), "{}", why("b9"));
        // Newest first.
        assert_eq!(list["events"][0]["id"], "b9");
        assert_eq!(list["statuses"]["deduplicated"], 2);
    }

    #[test]
    fn a_browser_copy_for_two_pixels_is_one_copy_per_pixel() {
        let mut s = state();
        let ua = json!({"client_user_agent": "UA", "em": "a".repeat(64)});
        browser(&mut s, &["1", "2"], "PageView", "p", 1000);
        server(&mut s, "1", "PageView", "p", 1000, ua.clone());
        server(&mut s, "2", "PageView", "p", 1000, ua);
        let list = list(&s, "");
        assert_eq!(list["statuses"]["deduplicated"], 4);
        assert_eq!(list["statuses"]["duplicate"], 0);
        assert_eq!(row(&list, "b1.1")["pixel_id"], "2");
    }

    #[test]
    fn filters_and_estimates() {
        let mut s = state();
        server(
            &mut s,
            "1",
            "Lead",
            "l",
            1000,
            json!({"em": "a".repeat(64), "client_user_agent": "UA"}),
        );
        browser(&mut s, &["1"], "Lead", "l2", 5000);
        let only = list(&s, "status=server_only&name=Lead");
        assert_eq!(only["matching"], 1);
        assert_eq!(only["events"][0]["estimate"]["score"], 3.5);
        assert_eq!(
            only["events"][0]["match_keys"],
            json!(["em", "client_user_agent"])
        );
        assert_eq!(list(&s, "pixel=2")["matching"], 0);
        assert_eq!(list(&s, "name=Le%61d")["matching"], 2);
        let d = detail(&s, "s1").unwrap_or_default();
        assert_eq!(d["user_data"][0]["field"], "email");
        assert_eq!(d["user_data"][0]["hashed"], true);
        assert!(d["payload"].get("_sandbox").is_none());
        assert!(detail(&s, "s99").is_none());
    }

    #[test]
    fn refused_requests_keep_their_events_but_never_the_token() {
        let p = rejected_payload(
            json!({"access_token": "secret", "data": [{"event_name": "Purchase"}], "test_event_code": "T1"}),
            json!({"status": 400}),
        );
        assert!(!p.to_string().contains("secret"));
        assert_eq!(p["events"][0]["event_name"], "Purchase");
        assert_eq!(p["request"]["test_event_code"], "T1");
        let cut = truncated(&"é".repeat(MAX_TEXT));
        assert!(
            cut.len() <= MAX_TEXT + 40 && cut.contains("bytes in all"),
            "{}",
            cut.len()
        );
    }
}
