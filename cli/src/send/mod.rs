//! `capi-edge send FILE`: offline and CRM conversions — store sales, phone orders, lead stages —
//! from a CSV or JSON Lines file to the Conversions API (or the sandbox).
//!
//! Each row becomes one event by `capi_core::offline` (header spellings, local hashing, Meta's
//! rules and windows, derived event ids); this module only moves bytes: `options` reads the
//! command line, `input` the file, `state` keeps what Meta acknowledged, `graph` posts batches
//! of up to 1,000 events with retries, `summary` counts and shows what happened.
//!
//! ```sh
//! META_ACCESS_TOKEN=… capi-edge send sales.csv --pixel 123456789012345
//! ```
//!
//! Exactly once across runs: after each batch Meta acknowledged, its event ids are appended to the
//! state file (`FILE.capi-state`) and synced to disk; a later run — after a crash, a kill, or on
//! the same file again — sends nothing the state file holds. A batch Meta refuses because of one
//! event loses that event (named by Meta's answer, else found by halving) and is sent again.

mod graph;
mod input;
mod options;
mod state;
mod summary;

use capi_core::event::{request_body, ServerEvent};
use capi_core::offline::{offline_event, Defaults, Skip};
use graph::Graph;
use input::{printable_names, CsvRows, JsonlRows, Rows};
use options::{Format, Options};
use serde_json::Value;
use state::SentLog;
use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};
use summary::{Progress, Summary};

/// Sends the file. `Ok(false)`: the whole file was gone through but none of its rows was sent
/// (or would be, in a dry run) or had been before: every one skipped or rejected by Meta.
pub fn run(args: &[String]) -> Result<bool, String> {
    let opts = Options::parse(args)?;
    let name = opts.input.display().to_string();
    let total_bytes = std::fs::metadata(&opts.input)
        .map_err(|e| format!("{name}: {e}"))?
        .len();
    let same = |a: &std::path::Path, b: &std::path::Path| {
        a.exists() && std::fs::canonicalize(a).ok() == std::fs::canonicalize(b).ok()
    };
    if same(&opts.state, &opts.input) {
        return Err("--state must not be the input file".into());
    }
    // A dry run's output file is created empty: never over the input or the state it resumes.
    if let Some(out) = &opts.out {
        if same(out, &opts.input) || same(out, &opts.state) {
            return Err("--out must not be the input file or the --state file".into());
        }
    }
    let mut rows = match opts.format {
        Format::Csv => Rows::Csv(CsvRows::open(&opts)?),
        Format::Jsonl => Rows::Jsonl(JsonlRows::open(&opts.input)?),
    };
    let mut sink = if opts.dry_run {
        let out: Box<dyn Write> = match &opts.out {
            Some(path) => Box::new(std::io::BufWriter::new(
                File::create(path).map_err(|e| format!("{}: {e}", path.display()))?,
            )),
            None => Box::new(std::io::stdout().lock()),
        };
        Sink::DryRun(out)
    } else {
        Sink::Graph(Graph::new(&opts)?)
    };
    let mut log = SentLog::open(
        &opts.state,
        &opts.pixel,
        opts.test_event_code.as_deref(),
        !opts.dry_run,
    )?;
    let defaults = Defaults {
        action_source: &opts.action_source,
        event_name: opts.event_name.as_deref(),
        country: opts.country.as_deref(),
    };
    let mut summary = Summary::default();
    let mut progress = Progress::new(total_bytes);
    let mut seen: HashSet<String> = HashSet::new();
    let mut batch: Vec<Pending> = Vec::with_capacity(opts.batch_size);
    let mut unknown: BTreeSet<String> = BTreeSet::new();
    let result = (|| -> Result<(), String> {
        while let Some(row) = rows.next_row(&mut unknown)? {
            summary.rows += 1;
            progress.show(rows.bytes_read(), &summary);
            let record = match row.record {
                Ok(r) => r,
                Err(skip) => {
                    summary.skip(&skip, row.line);
                    continue;
                }
            };
            let event = match offline_event(&record, &defaults, now_secs()) {
                Ok(e) => e,
                Err(skip) => {
                    summary.skip(&skip, row.line);
                    continue;
                }
            };
            let id = &event.event.event_id;
            if log.contains(id) {
                summary.already_sent += 1;
                continue;
            }
            if !seen.insert(id.clone()) {
                summary.skip(
                    &Skip {
                        reason: "duplicate_event_id",
                        message: "an earlier row of the file has the same event_id".into(),
                    },
                    row.line,
                );
                continue;
            }
            summary.dropped(&event.dropped);
            batch.push(Pending {
                line: row.line,
                event: event.event,
            });
            if batch.len() >= opts.batch_size {
                sink.deliver(std::mem::take(&mut batch), &opts, &mut log, &mut summary)?;
            }
        }
        if !batch.is_empty() {
            sink.deliver(std::mem::take(&mut batch), &opts, &mut log, &mut summary)?;
        }
        sink.finish()
    })();
    progress.clear();
    if !unknown.is_empty() {
        eprintln!(
            "capi-edge send: keys not read (no such field): {}",
            printable_names(&unknown)
        );
    }
    eprint!(
        "{}",
        summary.render(&name, &opts, &log.path.display().to_string())
    );
    result?;
    let nothing = summary.rows > 0 && summary.sent == 0 && summary.already_sent == 0;
    if nothing {
        eprintln!("capi-edge send: no row of {name} was sent: each was skipped or rejected (the reasons are above)");
    }
    Ok(!nothing)
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// An event on its way, with the line it came from (for the summary).
struct Pending {
    line: u64,
    event: ServerEvent,
}

enum Sink {
    Graph(Graph),
    /// `--dry-run`: each request body, one JSON line per batch, without the credentials.
    DryRun(Box<dyn Write>),
}

impl Sink {
    fn deliver(
        &mut self,
        batch: Vec<Pending>,
        opts: &Options,
        log: &mut SentLog,
        summary: &mut Summary,
    ) -> Result<(), String> {
        match self {
            Sink::Graph(graph) => graph.deliver(batch, opts, log, summary),
            Sink::DryRun(out) => {
                let events: Vec<ServerEvent> = batch.into_iter().map(|p| p.event).collect();
                let mut body: Value = serde_json::from_str(&request_body(
                    &events,
                    "",
                    None,
                    opts.test_event_code.as_deref(),
                ))
                .map_err(|e| e.to_string())?;
                if let Some(o) = body.as_object_mut() {
                    o.remove("access_token");
                }
                writeln!(out, "{body}").map_err(|e| format!("writing the payloads: {e}"))?;
                summary.requests += 1;
                summary.sent += events.len() as u64;
                Ok(())
            }
        }
    }

    fn finish(&mut self) -> Result<(), String> {
        match self {
            Sink::Graph(_) => Ok(()),
            Sink::DryRun(out) => out
                .flush()
                .map_err(|e| format!("writing the payloads: {e}")),
        }
    }
}
