//! `capi-edge report`: the Worker's `/t/report` JSON (on stdin) as a table in the terminal.
//!
//! ```sh
//! curl -sH "Authorization: Bearer $ADMIN_TOKEN" "https://shop.example.com/t/report?from=2026-11-01" | capi-edge report
//! ```

use serde_json::Value;
use std::fmt::Write as _;
use std::io::Read;

pub fn run(args: &[String]) -> Result<(), String> {
    // It takes nothing but stdin: `report --help` or a URL must not wait on a terminal.
    if let Some(arg) = args.first() {
        let name = arg.split_once('=').map_or(arg.as_str(), |(name, _)| name);
        return Err(format!(
            "unknown argument {name:?}: pipe /t/report's JSON into capi-edge report (see capi-edge --help)"
        ));
    }
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| e.to_string())?;
    let r: Value =
        serde_json::from_str(&input).map_err(|_| "stdin is not the /t/report JSON".to_string())?;
    if let Some(e) = r.get("error") {
        return Err(format!(
            "the Worker refused: {}",
            e["code"].as_str().unwrap_or("error")
        ));
    }
    print!("{}", table(&r)?);
    Ok(())
}

/// The report as aligned text: one line per day, then coverage per event name.
pub fn table(r: &Value) -> Result<String, String> {
    let days = r["days"]
        .as_array()
        .ok_or("stdin is not the /t/report JSON")?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "orders reaching Meta — pixel {} — {} to {}",
        r["pixel_id"].as_str().unwrap_or("?"),
        r["from"].as_str().unwrap_or("?"),
        r["to"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        out,
        "{:<10} {:>7} {:>6} {:>8} {:>8} {:>7} {:>6} {:>8} {:>9}  ignored reasons",
        "day", "orders", "sent", "ignored", "rejected", "expired", "dead", "retrying", "accuracy"
    );
    for d in days {
        let ignored = d["ignored"].as_object();
        let n_ignored: i64 = ignored
            .map(|m| m.values().filter_map(Value::as_i64).sum())
            .unwrap_or(0);
        let reasons = ignored
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let acc = d["accuracy"]
            .as_f64()
            .map_or("-".to_string(), |a| format!("{:.1} %", a * 100.0));
        let n = |k: &str| d[k].as_i64().unwrap_or(0);
        let _ = writeln!(
            out,
            "{:<10} {:>7} {:>6} {:>8} {:>8} {:>7} {:>6} {:>8} {:>9}  {}",
            d["date"].as_str().unwrap_or("?"),
            n("orders"),
            n("sent"),
            n_ignored,
            n("rejected"),
            n("expired"),
            n("dead_lettered"),
            n("retrying"),
            acc,
            reasons
        );
    }
    if let Some(c) = r["coverage"].as_object().filter(|c| !c.is_empty()) {
        let _ = writeln!(
            out,
            "\nmatch coverage of events sent (share carrying each key)"
        );
        let _ = writeln!(
            out,
            "{:<22} {:>7} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5}",
            "event", "events", "fbp", "fbc", "em", "ph", "ip", "ua", "ext"
        );
        for (name, keys) in c {
            let events = keys["events"].as_i64().unwrap_or(0);
            let pct = |k: &str| {
                let v = keys[k].as_i64().unwrap_or(0);
                format!("{}%", (v * 100).checked_div(events).unwrap_or(0))
            };
            let _ = writeln!(
                out,
                "{:<22} {:>7} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5}",
                name,
                events,
                pct("fbp"),
                pct("fbc"),
                pct("em"),
                pct("ph"),
                pct("client_ip_address"),
                pct("client_user_agent"),
                pct("external_id")
            );
        }
    }
    if let Some(q) = r["quality"].as_object().filter(|q| !q.is_empty()) {
        let _ = writeln!(
            out,
            "\nEstimated match quality (an estimate from the keys present, not Meta's score)"
        );
        let _ = writeln!(
            out,
            "{:<22} {:<10} {:<26} what would add it",
            "event", "estimate", "missing (share of events)"
        );
        for (name, e) in q {
            let score = format!(
                "{:.1} {}",
                e["estimated_score"].as_f64().unwrap_or(0.0),
                e["rating"].as_str().unwrap_or("")
            );
            let missing = e["missing"].as_array().cloned().unwrap_or_default();
            if missing.is_empty() {
                let _ = writeln!(out, "{name:<22} {score:<10} -");
            }
            for (i, m) in missing.iter().enumerate() {
                let key = format!(
                    "{} ({:.0} %)",
                    m["key"].as_str().unwrap_or(""),
                    m["share"].as_f64().unwrap_or(0.0) * 100.0
                );
                let (n, s) = if i == 0 {
                    (name.as_str(), score.as_str())
                } else {
                    ("", "")
                };
                let _ = writeln!(
                    out,
                    "{n:<22} {s:<10} {key:<26} {}",
                    m["advice"].as_str().unwrap_or("")
                );
            }
        }
    }
    if let Some(incidents) = r["incidents"].as_array().filter(|i| !i.is_empty()) {
        let _ = writeln!(out, "\nincidents (delivery stopped until someone acts)");
        for i in incidents {
            let _ = writeln!(
                out,
                "{:<22} code {:<5} {} events held, {}",
                i["cause"].as_str().unwrap_or("?"),
                i["code"],
                i["held"],
                if i["closed_ms"].is_null() {
                    "open"
                } else {
                    "ended"
                }
            );
        }
    }
    Ok(out)
}
