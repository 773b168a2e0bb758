//! `capi-edge quality`: what Meta says of a pixel's events, from its Dataset Quality API
//! (`GET /{version}/dataset_quality`, developers.facebook.com/docs/marketing-api/conversions-api/
//! dataset-quality-api), per event name: Event Match Quality (`composite_score`, the share of
//! events carrying each match key, Meta's diagnostics), event coverage, deduplication keys and
//! data freshness — as a table, or Meta's answer unchanged with `--json`.
//!
//! ```sh
//! META_ACCESS_TOKEN=… capi-edge quality --pixel 1234567890 [--json]
//! ```
//! The token is read from the environment (`--token-env NAME`, default `META_ACCESS_TOKEN`),
//! never from the command line, and sent in the `Authorization` header, never in the URL.

use crate::flag;
use capi_core::event::DEFAULT_API_VERSION;
use capi_core::quality::rating;
use serde_json::Value;
use std::fmt::Write as _;

const DEFAULT_GRAPH_URL: &str = "https://graph.facebook.com";

/// The fields read, as Meta's documentation names them (`dedupe_key_feedback`, not
/// `dedup_key_feedback`, which Graph refuses as a nonexisting field).
const FIELDS: &str = "web{event_name,\
event_match_quality{composite_score,match_key_feedback{identifier,coverage{percentage}},\
diagnostics{name,description,solution,percentage,affected_event_count,total_event_count}},\
event_coverage{percentage,goal_percentage,description},\
dedupe_key_feedback{dedupe_key,browser_events_with_dedupe_key{percentage},\
server_events_with_dedupe_key{percentage},overall_browser_coverage_from_dedupe_key{percentage}},\
data_freshness{upload_frequency,description}}";

const VALUE_FLAGS: &[&str] = &[
    "--pixel",
    "--url",
    "--api-version",
    "--token-env",
    "--agent-name",
];

/// RFC 3986 unreserved characters kept, everything else percent-encoded.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub fn run(args: &[String]) -> Result<(), String> {
    crate::check_args(args, VALUE_FLAGS, &["--json"], "META_ACCESS_TOKEN")?;
    let pixel = flag(args, "--pixel").ok_or("--pixel is required (the pixel or dataset id)")?;
    if pixel.is_empty() || pixel.len() > 32 || !pixel.bytes().all(|b| b.is_ascii_digit()) {
        return Err("--pixel must be the pixel (dataset) id: digits only".into());
    }
    let base = flag(args, "--url")
        .unwrap_or(DEFAULT_GRAPH_URL)
        .trim_end_matches('/');
    if !crate::token_may_go_to(base) {
        return Err(crate::URL_RULE.into());
    }
    let version = flag(args, "--api-version").unwrap_or(DEFAULT_API_VERSION);
    let version_ok = capi_core::event::is_api_version(version);
    if !version_ok {
        return Err(format!(
            "--api-version must look like {DEFAULT_API_VERSION}"
        ));
    }
    let token_env = flag(args, "--token-env").unwrap_or("META_ACCESS_TOKEN");
    let token = std::env::var(token_env)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| {
            format!("set {token_env} to an access token that may read the pixel (ads_read)")
        })?;
    let encode = |v: &str| percent_encoding::utf8_percent_encode(v, QUERY_VALUE).to_string();
    let mut url = format!(
        "{base}/{version}/dataset_quality?dataset_id={pixel}&fields={}",
        encode(FIELDS)
    );
    if let Some(agent) = flag(args, "--agent-name") {
        let _ = write!(url, "&agent_name={}", encode(agent));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into();
    let mut resp = agent
        .get(&url)
        .header("authorization", &format!("Bearer {}", token.trim()))
        .call()
        // The transport's message names the host, never the token (it is not in the URL).
        .map_err(|e| format!("could not reach {base}: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|_| format!("{base} answered {status} without a readable body"))?;
    let body: Value = serde_json::from_str(&text)
        .map_err(|_| format!("{base} answered {status} without a JSON body"))?;
    if status != 200 || body.get("error").is_some() {
        return Err(refusal(status, &body["error"]));
    }
    if args.iter().any(|a| a == "--json") {
        println!("{}", text.trim_end());
        return Ok(());
    }
    print!("{}", table(&body, pixel, base, version)?);
    Ok(())
}

/// Meta's error object, for people: message, code, subcode, trace id.
fn refusal(status: u16, e: &Value) -> String {
    let mut out = format!(
        "Meta refused ({status}): {}",
        clean(e["message"].as_str().unwrap_or("no error message"))
    );
    if let Some(msg) = e["error_user_msg"].as_str() {
        let _ = write!(out, " — {}", clean(msg));
    }
    if let Some(code) = e["code"].as_i64() {
        let _ = write!(out, " (code {code}");
        if let Some(sub) = e["error_subcode"].as_i64() {
            let _ = write!(out, "/{sub}");
        }
        out.push(')');
    }
    if let Some(trace) = e["fbtrace_id"].as_str() {
        let _ = write!(out, ", fbtrace_id {}", clean(trace));
    }
    if e["code"].as_i64() == Some(190) {
        out.push_str(": check the token (expired, or not for this pixel)");
    }
    out
}

/// Text from the answer with control characters replaced, so it cannot drive the terminal.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A percentage as Meta gives it: `100%`, `14.8%`, `15.96%`.
fn percent(v: &Value) -> Option<String> {
    let x = v.as_f64()?;
    let text = format!("{x:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    Some(format!("{text}%"))
}

fn or_dash(s: Option<String>) -> String {
    s.unwrap_or_else(|| "—".into())
}

/// One cell per column of the table, and the lines under it.
struct Line {
    cells: [String; 5],
    details: Vec<(&'static str, String)>,
}

fn line(event: &Value) -> Line {
    let emq = &event["event_match_quality"];
    let score = emq["composite_score"]
        .as_f64()
        .map(|s| format!("{s:.1} {}", rating(s)));
    let coverage = &event["event_coverage"];
    let coverage =
        percent(&coverage["percentage"]).map(|p| match percent(&coverage["goal_percentage"]) {
            Some(goal) => format!("{p} (goal {goal})"),
            None => p,
        });
    let dedupe: Vec<&Value> = event["dedupe_key_feedback"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let dedupe_text = |d: &Value| {
        format!(
            "{} / {} → {}",
            or_dash(percent(&d["browser_events_with_dedupe_key"]["percentage"])),
            or_dash(percent(&d["server_events_with_dedupe_key"]["percentage"])),
            or_dash(percent(
                &d["overall_browser_coverage_from_dedupe_key"]["percentage"]
            ))
        )
    };
    let main_key = dedupe
        .iter()
        .find(|d| d["dedupe_key"] == "event_id")
        .or(dedupe.first());
    let freshness = &event["data_freshness"];
    let mut details = Vec::new();
    let keys: Vec<String> = emq["match_key_feedback"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| {
            format!(
                "{} {}",
                clean(k["identifier"].as_str().unwrap_or("?")),
                or_dash(percent(&k["coverage"]["percentage"]))
            )
        })
        .collect();
    if !keys.is_empty() {
        details.push(("match keys", keys.join(", ")));
    }
    if let Some(text) = event["event_coverage"]["description"].as_str() {
        details.push(("coverage", clean(text)));
    }
    if dedupe.len() > 1 {
        let all: Vec<String> = dedupe
            .iter()
            .map(|d| {
                format!(
                    "{} {}",
                    clean(d["dedupe_key"].as_str().unwrap_or("?")),
                    dedupe_text(d)
                )
            })
            .collect();
        details.push(("dedup keys", all.join(", ")));
    }
    for d in emq["diagnostics"].as_array().into_iter().flatten() {
        let mut text = clean(d["name"].as_str().unwrap_or("?"));
        if let Some(p) = percent(&d["percentage"]) {
            let _ = write!(text, ": {p} of events");
            if let (Some(a), Some(t)) = (
                d["affected_event_count"].as_i64(),
                d["total_event_count"].as_i64(),
            ) {
                let _ = write!(text, " ({a} of {t})");
            }
        }
        if let Some(s) = d["solution"].as_str() {
            let _ = write!(text, ". {}", clean(s));
        }
        details.push(("diagnostic", text));
    }
    if let Some(text) = freshness["description"].as_str() {
        details.push(("freshness", clean(text)));
    }
    Line {
        cells: [
            clean(event["event_name"].as_str().unwrap_or("?")),
            or_dash(score),
            or_dash(coverage),
            or_dash(main_key.map(|d| dedupe_text(d))),
            or_dash(freshness["upload_frequency"].as_str().map(clean)),
        ],
        details,
    }
}

/// Meta's answer as aligned text: one row per event name, the match keys and Meta's notes under it.
fn table(body: &Value, pixel: &str, base: &str, version: &str) -> Result<String, String> {
    let web = body["web"]
        .as_array()
        .ok_or("the answer has no `web` list: is --url the Graph API?")?;
    let mut out = String::new();
    let _ = writeln!(out, "Dataset quality of pixel {pixel} — {base} ({version})");
    if let Some(note) = body["sandbox_note"].as_str() {
        let _ = writeln!(out, "note: {}", clean(note));
    }
    if web.is_empty() {
        let _ = writeln!(
            out,
            "no events: Meta reports the web events of the last 7 days (a new pixel's first ones take up to 48 hours)"
        );
        return Ok(out);
    }
    let header = [
        "EVENT".to_string(),
        "EMQ".into(),
        "EVENT COVERAGE".into(),
        "DEDUP (browser / server → deduplicated)".into(),
        "FRESHNESS".into(),
    ];
    let lines: Vec<Line> = web.iter().map(line).collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for l in &lines {
        for (w, c) in widths.iter_mut().zip(&l.cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let row = |out: &mut String, cells: &[String; 5]| {
        let mut text = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(c);
            } else {
                let pad = w.saturating_sub(c.chars().count());
                let _ = write!(text, "{c}{}  ", " ".repeat(pad));
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    out.push('\n');
    row(&mut out, &header);
    for l in &lines {
        row(&mut out, &l.cells);
        for (name, text) in &l.details {
            let _ = writeln!(out, "    {name:<11} {text}");
        }
    }
    let _ = writeln!(
        out,
        "\nEMQ: Meta's Event Match Quality (0-10) with Events Manager's band; DEDUP: the share of browser and of server events carrying the key, and of browser events deduplicated with a server event by it."
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn meta_documented_answer_becomes_a_table() {
        // The shapes of Meta's documentation examples (Dataset Quality API page).
        let body = json!({"web": [
            {"event_name": "AddToCart",
             "event_match_quality": {"composite_score": 6.2, "match_key_feedback": [
                 {"identifier": "user_agent", "coverage": {"percentage": 100}},
                 {"identifier": "ip_address", "coverage": {"percentage": 99.9}}],
                 "diagnostics": [{"name": "Server sending mismatched IP addresses", "solution": "Send the client IP.", "percentage": 61.5, "affected_event_count": 19567, "total_event_count": 31830}]},
             "event_coverage": {"percentage": 34.1, "goal_percentage": 75},
             "dedupe_key_feedback": [
                 {"dedupe_key": "event_id", "browser_events_with_dedupe_key": {"percentage": 100}, "server_events_with_dedupe_key": {"percentage": 100}, "overall_browser_coverage_from_dedupe_key": {"percentage": 14.8}},
                 {"dedupe_key": "external_id", "browser_events_with_dedupe_key": {"percentage": 100}, "server_events_with_dedupe_key": {"percentage": 100}, "overall_browser_coverage_from_dedupe_key": {"percentage": 15.96}}],
             "data_freshness": {"upload_frequency": "real_time"}},
            {"event_name": "Lead\u{1b}[31m"}
        ]});
        let t = table(&body, "1", "https://graph.facebook.com", "v26.0").unwrap_or_default();
        let add = t.lines().find(|l| l.starts_with("AddToCart")).unwrap_or("");
        assert!(add.contains("6.2 good"), "{t}");
        assert!(add.contains("34.1% (goal 75%)"), "{t}");
        assert!(add.contains("100% / 100% → 14.8%"), "{t}");
        assert!(add.ends_with("real_time"), "{t}");
        assert!(
            t.contains("match keys  user_agent 100%, ip_address 99.9%"),
            "{t}"
        );
        assert!(t.contains("external_id 100% / 100% → 15.96%"), "{t}");
        assert!(t.contains("(19567 of 31830)"), "{t}");
        assert!(!t.contains('\u{1b}'), "no terminal escapes from the answer");
        assert!(t.lines().any(|l| l.starts_with("Lead?[31m")), "{t}");
    }

    #[test]
    fn refusals_say_what_meta_said() {
        let e = json!({"message": "Invalid OAuth access token", "code": 190, "error_subcode": 463, "fbtrace_id": "Ab1"});
        let text = refusal(400, &e);
        assert!(
            text.contains("(code 190/463), fbtrace_id Ab1: check the token"),
            "{text}"
        );
    }
}
