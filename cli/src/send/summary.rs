//! What a run of `capi-edge send` did: counts, reasons, Meta's messages and line numbers —
//! never a value from the file — and the progress bar while it runs.

use super::options::Options;
use capi_core::custom_data::Dropped;
use capi_core::offline::Skip;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How many, why, and the first lines each reason was seen on.
#[derive(Debug, Default)]
struct Tally {
    count: u64,
    message: String,
    lines: Vec<u64>,
}

impl Tally {
    fn add(&mut self, message: &str, line: u64) {
        if self.count == 0 {
            self.message = message.to_string();
        }
        self.count += 1;
        if self.lines.len() < 5 {
            self.lines.push(line);
        }
    }

    fn lines(&self) -> String {
        let mut s: Vec<String> = self.lines.iter().map(u64::to_string).collect();
        if self.count > self.lines.len() as u64 {
            s.push("…".into());
        }
        let word = if self.count == 1 { "line" } else { "lines" };
        format!("{word} {}", s.join(", "))
    }
}

/// What a run did, shown at its end. Holds reasons, Meta's messages and line numbers only.
#[derive(Debug, Default)]
pub(super) struct Summary {
    pub(super) rows: u64,
    pub(super) sent: u64,
    pub(super) requests: u64,
    pub(super) retries: u64,
    pub(super) already_sent: u64,
    skipped: BTreeMap<&'static str, Tally>,
    rejected: BTreeMap<String, Tally>,
    dropped: BTreeMap<String, u64>,
    /// Events not sent because the run stopped (Meta unavailable, the token refused).
    pub(super) unsent: u64,
}

impl Summary {
    pub(super) fn skip(&mut self, skip: &Skip, line: u64) {
        self.skipped
            .entry(skip.reason)
            .or_default()
            .add(&skip.message, line);
    }

    pub(super) fn reject(&mut self, text: &str, detail: &str, line: u64) {
        self.rejected
            .entry(text.to_string())
            .or_default()
            .add(detail, line);
    }

    pub(super) fn dropped(&mut self, dropped: &[Dropped]) {
        for d in dropped {
            *self
                .dropped
                .entry(format!("{}: {}", d.field, d.reason))
                .or_default() += 1;
        }
    }

    fn total<K>(map: &BTreeMap<K, Tally>) -> u64 {
        map.values().map(|t| t.count).sum()
    }

    /// The table printed at the end of a run.
    pub(super) fn render(&self, input: &str, opts: &Options, state: &str) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(format!(
            "capi-edge send: {} rows in {input} → pixel {}{}{}",
            self.rows,
            opts.pixel,
            opts.test_event_code
                .as_deref()
                .map(|c| format!(" (test events, {c})"))
                .unwrap_or_default(),
            if opts.dry_run {
                " — dry run, nothing sent"
            } else {
                ""
            }
        ));
        let verb = if opts.dry_run { "would send" } else { "sent" };
        line(format!(
            "  {:<26}{:>7}   in {} request(s){}",
            verb,
            self.sent,
            self.requests,
            match self.retries {
                0 => String::new(),
                n => format!(", {n} of them retries"),
            }
        ));
        line(format!(
            "  {:<26}{:>7}   (state file {state})",
            "already sent", self.already_sent
        ));
        line(format!(
            "  {:<26}{:>7}",
            "skipped",
            Self::total(&self.skipped)
        ));
        for (reason, t) in &self.skipped {
            line(format!(
                "    {reason:<24}{:>7}   {} ({})",
                t.count,
                t.message,
                t.lines()
            ));
        }
        line(format!(
            "  {:<26}{:>7}",
            "rejected by Meta",
            Self::total(&self.rejected)
        ));
        for (text, t) in &self.rejected {
            line(format!(
                "    {:>7}  {text} ({}; {})",
                t.count,
                t.message,
                t.lines()
            ));
        }
        if !self.dropped.is_empty() {
            line(format!(
                "  {:<26}{:>7}",
                "fields dropped (row kept)",
                self.dropped.values().sum::<u64>()
            ));
            for (what, n) in &self.dropped {
                line(format!("    {what:<24}{n:>7}"));
            }
        }
        if self.unsent > 0 {
            line(format!(
                "  {:<26}{:>7}   (the run stopped; run it again to resume)",
                "not sent", self.unsent
            ));
        }
        out
    }
}

/// A progress bar on stderr, only when stderr is a terminal.
pub(super) struct Progress {
    on: bool,
    total: u64,
    last: Option<Instant>,
}

impl Progress {
    pub(super) fn new(total: u64) -> Progress {
        Progress {
            on: std::io::stderr().is_terminal(),
            total: total.max(1),
            last: None,
        }
    }

    pub(super) fn show(&mut self, done: u64, summary: &Summary) {
        if !self.on
            || self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(Instant::now());
        let pct = (done.min(self.total) * 100 / self.total) as usize;
        let filled = pct * 30 / 100;
        eprint!(
            "\r[{}{}] {pct:>3}%  {} rows  {} sent  {} skipped",
            "#".repeat(filled),
            " ".repeat(30 - filled),
            summary.rows,
            summary.sent,
            Summary::total(&summary.skipped)
        );
    }

    pub(super) fn clear(&mut self) {
        if self.on && self.last.is_some() {
            eprint!("\r\x1b[2K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn the_summary_names_reasons_and_lines_never_values() {
        let mut s = Summary {
            rows: 7,
            sent: 3,
            requests: 1,
            ..Summary::default()
        };
        for line in [2, 5] {
            s.skip(
                &Skip {
                    reason: "user_data_missing",
                    message: "user_data must have at least one parameter".into(),
                },
                line,
            );
        }
        s.reject("Invalid parameter: bad", "code 100", 8);
        s.dropped(&[Dropped {
            field: "em".into(),
            reason: "invalid_email",
        }]);
        let opts = Options::parse(&args("in.csv --pixel 42")).expect("options");
        let text = s.render("in.csv", &opts, "in.csv.capi-state");
        assert!(text.contains("7 rows in in.csv → pixel 42"), "{text}");
        assert!(
            text.contains("\n  sent                            3   in 1 request(s)\n"),
            "{text}"
        );
        assert!(text.contains("    user_data_missing             2   user_data must have at least one parameter (lines 2, 5)"), "{text}");
        assert!(
            text.contains("\n  rejected by Meta                1\n"),
            "{text}"
        );
        assert!(
            text.contains("Invalid parameter: bad (code 100; line 8)"),
            "{text}"
        );
        assert!(
            text.contains("    em: invalid_email             1"),
            "{text}"
        );
    }
}
