//! `capi-edge send FILE`: offline and CRM conversions — store sales, phone orders, lead stages —
//! from a CSV or JSON Lines file to the Conversions API (or the sandbox).
//!
//! Each row becomes one event by `capi_core::offline` (header spellings, local hashing, Meta's
//! rules and windows, derived event ids); this file only moves bytes: it reads the file, keeps
//! the state file, posts batches of up to 1,000 events with retries, and prints the summary.
//!
//! ```sh
//! META_ACCESS_TOKEN=… capi-edge send sales.csv --pixel 123456789012345
//! ```
//!
//! Exactly once across runs: after each batch Meta acknowledged, its event ids are appended to the
//! state file (`FILE.capi-state`) and synced to disk; a later run — after a crash, a kill, or on
//! the same file again — sends nothing the state file holds. A batch Meta refuses because of one
//! event loses that event (named by Meta's answer, else found by halving) and is sent again.
//!
//! Long on purpose: the command's whole I/O — options, the two readers, the state file, the
//! Graph client with its retries, the progress bar and the summary — in one place.

use capi_core::custom_data::Dropped;
use capi_core::delivery::retry_delay_secs;
use capi_core::event::{
    events_url, is_test_event_code, request_body, ServerEvent, DEFAULT_API_VERSION,
};
use capi_core::meta_answer::{meta_answer, rejected_event_index, rejection_text, MetaAnswer};
use capi_core::meta_rules::ACTION_SOURCES;
use capi_core::normalize::country_code;
use capi_core::offline::{header_columns, offline_event, Column, Defaults, Record, Skip};
use capi_core::MAX_EVENTS_PER_REQUEST;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DEFAULT_GRAPH_URL: &str = "https://graph.facebook.com";
/// How many times one request is tried before the run stops (5xx, 429, network errors).
const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Longest wait between two tries of one request.
const MAX_RETRY_DELAY_SECS: u32 = 30;
/// Meta rejections that name no event, in a row, after which the request itself is taken to be
/// wrong (pixel, API version): the run stops instead of halving every batch down to single events.
const MAX_UNEXPLAINED_REJECTIONS: u32 = 3;

/// Options that take a value; `--dry-run` is the one switch.
const VALUE_FLAGS: &[&str] = &[
    "--format",
    "--delimiter",
    "--pixel",
    "--url",
    "--api-version",
    "--action-source",
    "--event-name",
    "--default-country",
    "--test-event-code",
    "--token-env",
    "--app-secret-env",
    "--state",
    "--out",
    "--batch-size",
    "--max-attempts",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Jsonl,
}

#[derive(Debug)]
struct Options {
    input: PathBuf,
    format: Format,
    delimiter: Option<u8>,
    pixel: String,
    url: String,
    api_version: String,
    action_source: String,
    event_name: Option<String>,
    country: Option<String>,
    test_event_code: Option<String>,
    token_env: String,
    app_secret_env: String,
    state: PathBuf,
    dry_run: bool,
    out: Option<PathBuf>,
    batch_size: usize,
    max_attempts: u32,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut values: BTreeMap<&str, &str> = BTreeMap::new();
        let mut input = None;
        let mut dry_run = false;
        let mut i = 0;
        while i < args.len() {
            let arg = args[i].as_str();
            if arg == "--dry-run" {
                dry_run = true;
            } else if let Some(name) = VALUE_FLAGS.iter().find(|f| **f == arg) {
                let value = args
                    .get(i + 1)
                    .ok_or_else(|| format!("{name} needs a value"))?;
                values.insert(name, value);
                i += 1;
            } else if matches!(arg, "--token" | "--access-token" | "--app-secret") {
                return Err(format!(
                    "{arg}: secrets come from the environment only (--token-env, --app-secret-env), \
                     never from the command line, where other users of the machine can read them"
                ));
            } else if arg.starts_with("--") {
                return Err(format!("unknown option {arg} (see capi-edge --help)"));
            } else if input.replace(PathBuf::from(arg)).is_some() {
                return Err("send takes one input file".into());
            }
            i += 1;
        }
        let input = input.ok_or("send needs an input file (CSV or JSON Lines)")?;
        let format = match values.get("--format") {
            Some(&"csv") => Format::Csv,
            Some(&"jsonl") => Format::Jsonl,
            Some(other) => return Err(format!("--format must be csv or jsonl, not {other}")),
            None => format_of(&input)?,
        };
        let delimiter = match values.get("--delimiter") {
            None => None,
            Some(&"\\t" | &"tab") => Some(b'\t'),
            Some(d) if d.len() == 1 && d.is_ascii() => Some(d.as_bytes()[0]),
            Some(_) => return Err("--delimiter must be one character (or tab)".into()),
        };
        let pixel = values
            .get("--pixel")
            .ok_or("--pixel is required (the pixel or dataset id)")?
            .to_string();
        if pixel.is_empty() || pixel.len() > 32 || !pixel.bytes().all(|b| b.is_ascii_digit()) {
            return Err("--pixel must be the pixel (dataset) id: digits only".into());
        }
        let url = values
            .get("--url")
            .unwrap_or(&DEFAULT_GRAPH_URL)
            .trim_end_matches('/')
            .to_string();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err("--url must start with https:// (or http:// for the sandbox)".into());
        }
        let api_version = values
            .get("--api-version")
            .unwrap_or(&DEFAULT_API_VERSION)
            .to_string();
        let version_ok = api_version
            .strip_prefix('v')
            .and_then(|v| v.split_once('.'))
            .is_some_and(|(major, minor)| {
                [major, minor]
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            });
        if !version_ok {
            return Err(format!(
                "--api-version must look like {DEFAULT_API_VERSION}"
            ));
        }
        let action_source = values
            .get("--action-source")
            .unwrap_or(&"physical_store")
            .to_string();
        if !ACTION_SOURCES.contains(&action_source.as_str()) {
            return Err(format!(
                "--action-source must be one of Meta's values: {}",
                ACTION_SOURCES.join(", ")
            ));
        }
        let country = match values.get("--default-country") {
            None => None,
            Some(c) => Some(
                country_code(c)
                    .map_err(|_| "--default-country is not a country (e.g. US, DE, FR)")?
                    .to_string(),
            ),
        };
        let test_event_code = values.get("--test-event-code").map(|c| c.to_string());
        if test_event_code
            .as_deref()
            .is_some_and(|c| !is_test_event_code(c))
        {
            return Err(
                "--test-event-code must be the code Events Manager shows (e.g. TEST12345)".into(),
            );
        }
        let batch_size = match values.get("--batch-size") {
            None => MAX_EVENTS_PER_REQUEST,
            Some(n) => n
                .parse()
                .ok()
                .filter(|n| (1..=MAX_EVENTS_PER_REQUEST).contains(n))
                .ok_or(format!(
                    "--batch-size must be 1 to {MAX_EVENTS_PER_REQUEST} (Meta's limit)"
                ))?,
        };
        let max_attempts = match values.get("--max-attempts") {
            None => DEFAULT_MAX_ATTEMPTS,
            Some(n) => n
                .parse()
                .ok()
                .filter(|n| (1..=20).contains(n))
                .ok_or("--max-attempts must be 1 to 20")?,
        };
        let state = values.get("--state").map_or_else(
            || {
                let mut s = input.clone().into_os_string();
                s.push(".capi-state");
                PathBuf::from(s)
            },
            PathBuf::from,
        );
        Ok(Options {
            format,
            delimiter,
            pixel,
            url,
            api_version,
            action_source,
            event_name: values.get("--event-name").map(|s| s.to_string()),
            country,
            test_event_code,
            token_env: values
                .get("--token-env")
                .unwrap_or(&"META_ACCESS_TOKEN")
                .to_string(),
            app_secret_env: values
                .get("--app-secret-env")
                .unwrap_or(&"META_APP_SECRET")
                .to_string(),
            state,
            dry_run,
            out: values.get("--out").map(PathBuf::from),
            batch_size,
            max_attempts,
            input,
        })
    }
}

/// The format a file's extension names.
fn format_of(path: &Path) -> Result<Format, String> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("csv" | "tsv" | "txt") => Ok(Format::Csv),
        Some("jsonl" | "ndjson" | "json") => Ok(Format::Jsonl),
        _ => Err(format!(
            "cannot tell the format of {}: pass --format csv or --format jsonl",
            path.display()
        )),
    }
}

pub fn run(args: &[String]) -> Result<(), String> {
    let opts = Options::parse(args)?;
    let name = opts.input.display().to_string();
    let total_bytes = std::fs::metadata(&opts.input)
        .map_err(|e| format!("{name}: {e}"))?
        .len();
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
            summary.dropped(&event.dropped);
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
            "capi-edge send: not read (no such column): {}",
            printable_names(&unknown)
        );
    }
    eprint!(
        "{}",
        summary.render(&name, &opts, &log.path.display().to_string())
    );
    result
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Column or key names for a message: names that could hold contact data (an `@`, long digit
/// runs, very long text — a file without a header row) are counted, not shown.
fn printable_names(names: &BTreeSet<String>) -> String {
    let shown: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| {
            n.len() <= 40
                && !n.contains('@')
                && n.bytes().filter(u8::is_ascii_digit).count() <= 4
                && !n.chars().any(char::is_control)
        })
        .take(20)
        .collect();
    let hidden = names.len() - shown.len();
    let mut out = shown.join(", ");
    if hidden > 0 {
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(&format!("{hidden} other(s)"));
    }
    out
}

/// One row, read: its line in the file and its record (or why it cannot be read).
struct Row {
    line: u64,
    record: Result<Record, Skip>,
}

fn unreadable(reason: &'static str, message: &str) -> Skip {
    Skip {
        reason,
        message: message.to_string(),
    }
}

enum Rows {
    Csv(CsvRows),
    Jsonl(JsonlRows),
}

impl Rows {
    /// The next row; `Err` only when the file itself cannot be read any more.
    fn next_row(&mut self, unknown: &mut BTreeSet<String>) -> Result<Option<Row>, String> {
        match self {
            Rows::Csv(r) => r.next_row(),
            Rows::Jsonl(r) => r.next_row(unknown),
        }
    }

    fn bytes_read(&self) -> u64 {
        match self {
            Rows::Csv(r) => r.reader.position().byte(),
            Rows::Jsonl(r) => r.bytes,
        }
    }
}

struct CsvRows {
    reader: csv::Reader<BufReader<File>>,
    columns: Vec<Option<Column>>,
    record: csv::ByteRecord,
    name: String,
    line_offset: u64,
}

impl CsvRows {
    fn open(opts: &Options) -> Result<CsvRows, String> {
        let name = opts.input.display().to_string();
        let open = || File::open(&opts.input).map_err(|e| format!("{name}: {e}"));
        let mut first = Vec::new();
        BufReader::new(open()?)
            .take(64 * 1024)
            .read_until(b'\n', &mut first)
            .map_err(|e| format!("{name}: {e}"))?;
        let delimiter = opts
            .delimiter
            .unwrap_or_else(|| guess_delimiter(&opts.input, &first));
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .from_reader(BufReader::with_capacity(256 * 1024, open()?));
        let headers: Vec<String> = reader
            .byte_headers()
            .map_err(|e| format!("{name}: cannot read the header row: {e}"))?
            .iter()
            .map(|h| String::from_utf8_lossy(h).into_owned())
            .collect();
        let columns = header_columns(&headers).map_err(|d| {
            format!(
                "{name}: the columns \"{}\" and \"{}\" both hold {}; keep one",
                headers[d.first].trim(),
                headers[d.second].trim(),
                d.column.name()
            )
        })?;
        if columns.iter().all(Option::is_none) {
            // No header is known: perhaps the first row is data, so none of it is printed.
            return Err(format!(
                "{name}: no column of the first row names a field capi-edge reads; the first \
                 row must be a header (email, phone, event_name, event_time, value, currency, …; \
                 see docs/sandbox-and-cli.md)"
            ));
        }
        if !columns.contains(&Some(Column::EventTime)) {
            return Err(format!(
                "{name}: no event_time column (Unix seconds or ISO 8601)"
            ));
        }
        if opts.event_name.is_none() && !columns.contains(&Some(Column::EventName)) {
            return Err(format!(
                "{name}: no event_name column: add one or pass --event-name NAME"
            ));
        }
        let unknown: BTreeSet<String> = headers
            .iter()
            .zip(&columns)
            .filter(|(_, c)| c.is_none())
            .map(|(h, _)| h.trim().to_string())
            .collect();
        if !unknown.is_empty() {
            eprintln!(
                "capi-edge send: columns not read (no such field): {}",
                printable_names(&unknown)
            );
        }
        Ok(CsvRows {
            reader,
            columns,
            record: csv::ByteRecord::new(),
            name,
            // The csv crate starts a record at the `\n` of the `\r\n` before it, so it numbers
            // the lines of a CRLF file (Excel's exports) one too low.
            line_offset: u64::from(first.ends_with(b"\r\n")),
        })
    }

    fn next_row(&mut self) -> Result<Option<Row>, String> {
        match self.reader.read_byte_record(&mut self.record) {
            Ok(false) => return Ok(None),
            Ok(true) => {}
            Err(e) => return Err(format!("{}: {e}", self.name)),
        }
        let line = self
            .record
            .position()
            .map_or(0, |p| p.line() + self.line_offset);
        if self.record.len() != self.columns.len() {
            let skip = unreadable(
                "malformed_row",
                "the row has another number of cells than the header",
            );
            return Ok(Some(Row {
                line,
                record: Err(skip),
            }));
        }
        let mut record = Record::default();
        for (cell, column) in self.record.iter().zip(&self.columns) {
            let Some(column) = column else { continue };
            let Ok(text) = std::str::from_utf8(cell) else {
                let skip = unreadable("not_utf8", "a cell is not UTF-8 text");
                return Ok(Some(Row {
                    line,
                    record: Err(skip),
                }));
            };
            record.set(*column, Value::String(text.to_string()));
        }
        Ok(Some(Row {
            line,
            record: Ok(record),
        }))
    }
}

/// `,`, `;` or tab: whichever the header line holds most of (`,` when none; tab for `.tsv`).
fn guess_delimiter(path: &Path, header_line: &[u8]) -> u8 {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("tsv"))
    {
        return b'\t';
    }
    let count = |d: u8| header_line.iter().filter(|&&b| b == d).count();
    [b',', b';', b'\t']
        .into_iter()
        .max_by_key(|d| (count(*d), *d == b','))
        .unwrap_or(b',')
}

struct JsonlRows {
    reader: BufReader<File>,
    line: u64,
    bytes: u64,
    buf: Vec<u8>,
}

impl JsonlRows {
    fn open(path: &Path) -> Result<JsonlRows, String> {
        let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(JsonlRows {
            reader: BufReader::with_capacity(256 * 1024, file),
            line: 0,
            bytes: 0,
            buf: Vec::new(),
        })
    }

    fn next_row(&mut self, unknown: &mut BTreeSet<String>) -> Result<Option<Row>, String> {
        loop {
            self.buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| format!("reading the input: {e}"))?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            self.bytes += n as u64;
            let Ok(text) = std::str::from_utf8(&self.buf) else {
                return Ok(Some(Row {
                    line: self.line,
                    record: Err(unreadable("not_utf8", "the line is not UTF-8 text")),
                }));
            };
            if text.trim().is_empty() {
                continue;
            }
            let record = match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(object)) => {
                    let (record, keys) = Record::from_object(&object);
                    unknown.extend(keys);
                    Ok(record)
                }
                _ => Err(unreadable("malformed_row", "the line is not a JSON object")),
            };
            return Ok(Some(Row {
                line: self.line,
                record,
            }));
        }
    }
}

/// The state file: one JSON line per event Meta acknowledged, `{"event_id","pixel"[,
/// "test_event_code"]}`, appended and synced after each acknowledged batch. Held with an
/// exclusive lock while a run writes it, so two runs never send the same file at once.
struct SentLog {
    path: PathBuf,
    file: Option<File>,
    pixel: String,
    test_event_code: Option<String>,
    sent: HashSet<String>,
}

impl SentLog {
    /// Reads the state file (a dry run only reads it, if it exists). A last line cut by a killed
    /// run is dropped: its batch was not wholly recorded, and is sent again.
    fn open(
        path: &Path,
        pixel: &str,
        test_event_code: Option<&str>,
        write: bool,
    ) -> Result<SentLog, String> {
        let name = path.display();
        let mut file = if write {
            let f = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(path)
                .map_err(|e| format!("state file {name}: {e}"))?;
            f.try_lock().map_err(|_| {
                format!("state file {name} is in use by another capi-edge send of this file")
            })?;
            Some(f)
        } else {
            match File::open(path) {
                Ok(f) => Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(format!("state file {name}: {e}")),
            }
        };
        let mut text = String::new();
        if let Some(f) = file.as_mut() {
            f.read_to_string(&mut text)
                .map_err(|e| format!("state file {name}: {e}"))?;
        }
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        if complete < text.len() {
            if let (true, Some(f)) = (write, file.as_ref()) {
                f.set_len(complete as u64)
                    .map_err(|e| format!("state file {name}: {e}"))?;
            }
        }
        let mut sent = HashSet::new();
        for (i, line) in text[..complete].lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let entry: Value = serde_json::from_str(line).unwrap_or(Value::Null);
            let (Some(id), Some(p)) = (
                entry.get("event_id").and_then(Value::as_str),
                entry.get("pixel").and_then(Value::as_str),
            ) else {
                return Err(format!(
                    "state file {name}, line {}: not a capi-edge send record (is --state another file?)",
                    i + 1
                ));
            };
            let test = entry.get("test_event_code").and_then(Value::as_str);
            if p == pixel && test == test_event_code {
                sent.insert(id.to_string());
            }
        }
        Ok(SentLog {
            path: path.to_path_buf(),
            file: if write { file } else { None },
            pixel: pixel.to_string(),
            test_event_code: test_event_code.map(str::to_string),
            sent,
        })
    }

    fn contains(&self, event_id: &str) -> bool {
        self.sent.contains(event_id)
    }

    /// Records a batch Meta acknowledged: one write, then synced before anything else is sent.
    fn record(&mut self, events: &[Pending]) -> Result<(), String> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let mut lines = String::with_capacity(events.len() * 96);
        for p in events {
            let mut entry = json!({"event_id": p.event.event_id, "pixel": self.pixel});
            if let Some(code) = &self.test_event_code {
                entry["test_event_code"] = json!(code);
            }
            lines.push_str(&entry.to_string());
            lines.push('\n');
        }
        file.write_all(lines.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| format!("state file {}: {e}", self.path.display()))?;
        self.sent
            .extend(events.iter().map(|p| p.event.event_id.clone()));
        Ok(())
    }
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

/// The Conversions API endpoint of one pixel, and how to talk to it.
struct Graph {
    agent: ureq::Agent,
    url: String,
    token: String,
    app_secret: Option<String>,
    token_env: String,
    /// Single-event rejections without an event index, in a row.
    unexplained: u32,
    rng: u64,
}

impl Graph {
    fn new(opts: &Options) -> Result<Graph, String> {
        let token = std::env::var(&opts.token_env)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| {
                format!(
                    "set {} to the Conversions API access token (or use --dry-run)",
                    opts.token_env
                )
            })?;
        let app_secret = std::env::var(&opts.app_secret_env)
            .ok()
            .filter(|s| !s.trim().is_empty());
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Ok(Graph {
            agent,
            url: events_url(&opts.url, &opts.api_version, &opts.pixel),
            token,
            app_secret,
            token_env: opts.token_env.clone(),
            unexplained: 0,
            rng: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1,
        })
    }

    /// Sends a batch until each event is acknowledged or rejected by Meta. A rejection names
    /// its event (dropped, the rest sent again) or the batch is halved to find it, as Meta
    /// rejects a whole request for one bad event.
    fn deliver(
        &mut self,
        batch: Vec<Pending>,
        opts: &Options,
        log: &mut SentLog,
        summary: &mut Summary,
    ) -> Result<(), String> {
        let mut stack = vec![batch];
        while let Some(mut events) = stack.pop() {
            let answer = match self.post(&events, opts, summary) {
                Ok(answer) => answer,
                Err(e) => {
                    summary.unsent +=
                        (events.len() + stack.iter().map(Vec::len).sum::<usize>()) as u64;
                    return Err(e);
                }
            };
            match answer {
                (MetaAnswer::Accepted { .. }, _) => {
                    log.record(&events)?;
                    summary.sent += events.len() as u64;
                    self.unexplained = 0;
                }
                (MetaAnswer::Rejected { code, subcode, .. }, body) => {
                    let text = rejection_text(&body).unwrap_or_else(|| "no message".into());
                    let detail = match subcode {
                        Some(s) => format!("code {code}, subcode {s}"),
                        None => format!("code {code}"),
                    };
                    match rejected_event_index(&body).filter(|&i| i < events.len()) {
                        Some(i) => {
                            let bad = events.remove(i);
                            summary.reject(&text, &detail, bad.line);
                            self.unexplained = 0;
                            if !events.is_empty() {
                                stack.push(events);
                            }
                        }
                        None if events.len() == 1 => {
                            summary.reject(&text, &detail, events[0].line);
                            self.unexplained += 1;
                            if self.unexplained >= MAX_UNEXPLAINED_REJECTIONS {
                                summary.unsent += stack.iter().map(Vec::len).sum::<usize>() as u64;
                                return Err(format!(
                                    "Meta rejects every event without naming one ({text}; {detail}): \
                                     check --pixel, --api-version and the token's permissions"
                                ));
                            }
                        }
                        None => {
                            let second = events.split_off(events.len() / 2);
                            stack.push(second);
                            stack.push(events);
                        }
                    }
                }
                (MetaAnswer::Unauthorized { code, .. }, _) => {
                    summary.unsent +=
                        (events.len() + stack.iter().map(Vec::len).sum::<usize>()) as u64;
                    return Err(format!(
                        "Meta refused the access token or its permissions (code {code}): \
                         check {} and the pixel id",
                        self.token_env
                    ));
                }
                // `post` returns only once the answer is not transient.
                (MetaAnswer::Transient { .. }, _) => stack.push(events),
            }
        }
        Ok(())
    }

    /// One request, tried up to `--max-attempts` times while the answer is transient (5xx,
    /// 429, a transient Graph code, a network error), with exponential backoff and jitter.
    fn post(
        &mut self,
        events: &[Pending],
        opts: &Options,
        summary: &mut Summary,
    ) -> Result<(MetaAnswer, String), String> {
        let data: Vec<ServerEvent> = events.iter().map(|p| p.event.clone()).collect();
        let body = request_body(
            &data,
            &self.token,
            self.app_secret.as_deref(),
            opts.test_event_code.as_deref(),
        );
        let mut last = String::new();
        for attempt in 0..opts.max_attempts {
            if attempt > 0 {
                let delay =
                    retry_delay_secs(attempt - 1, 1, MAX_RETRY_DELAY_SECS, false, self.jitter());
                std::thread::sleep(Duration::from_secs(u64::from(delay)));
                summary.retries += 1;
            }
            summary.requests += 1;
            let response = self
                .agent
                .post(&self.url)
                .header("content-type", "application/json")
                .send(body.as_str());
            let (status, text) = match response {
                Ok(mut r) => {
                    let status = r.status().as_u16();
                    (status, r.body_mut().read_to_string().unwrap_or_default())
                }
                Err(e) => {
                    // The transport's message names the host, never the token (it is in the body).
                    last = format!("could not reach {}: {e}", opts.url);
                    continue;
                }
            };
            match meta_answer(status, &text) {
                MetaAnswer::Transient { code, .. } => {
                    last = match code {
                        Some(c) => format!("Meta answered {status} (code {c})"),
                        None => format!("Meta answered {status}"),
                    };
                }
                answer => return Ok((answer, text)),
            }
        }
        Err(format!(
            "{last}, {} time(s); stopped — run the same command again to resume \
             (what Meta acknowledged is in the state file and will not be sent twice)",
            opts.max_attempts
        ))
    }

    /// xorshift64*: spreads retries; no need for a cryptographic source.
    fn jitter(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

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
struct Summary {
    rows: u64,
    sent: u64,
    requests: u64,
    retries: u64,
    already_sent: u64,
    skipped: BTreeMap<&'static str, Tally>,
    rejected: BTreeMap<String, Tally>,
    dropped: BTreeMap<String, u64>,
    /// Events not sent because the run stopped (Meta unavailable, the token refused).
    unsent: u64,
}

impl Summary {
    fn skip(&mut self, skip: &Skip, line: u64) {
        self.skipped
            .entry(skip.reason)
            .or_default()
            .add(&skip.message, line);
    }

    fn reject(&mut self, text: &str, detail: &str, line: u64) {
        self.rejected
            .entry(text.to_string())
            .or_default()
            .add(detail, line);
    }

    fn dropped(&mut self, dropped: &[Dropped]) {
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
    fn render(&self, input: &str, opts: &Options, state: &str) -> String {
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
        let (verb, what) = if opts.dry_run {
            ("would send", "request body")
        } else {
            ("sent", "request")
        };
        line(format!(
            "  {:<26}{:>7}   in {} {what}(s){}",
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
struct Progress {
    on: bool,
    total: u64,
    last: Option<Instant>,
}

impl Progress {
    fn new(total: u64) -> Progress {
        Progress {
            on: std::io::stderr().is_terminal(),
            total: total.max(1),
            last: None,
        }
    }

    fn show(&mut self, done: u64, summary: &Summary) {
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

    fn clear(&mut self) {
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
    fn options_have_meta_defaults_and_refuse_secrets_on_the_command_line() {
        let o = Options::parse(&args("sales.csv --pixel 123")).expect("options");
        assert_eq!(o.format, Format::Csv);
        assert_eq!(o.action_source, "physical_store");
        assert_eq!(o.url, DEFAULT_GRAPH_URL);
        assert_eq!(o.api_version, DEFAULT_API_VERSION);
        assert_eq!(o.state, PathBuf::from("sales.csv.capi-state"));
        assert_eq!(o.batch_size, 1000);
        assert_eq!(o.token_env, "META_ACCESS_TOKEN");
        let o = Options::parse(&args("x.ndjson --pixel 1 --dry-run --state s")).expect("jsonl");
        assert_eq!((o.format, o.dry_run), (Format::Jsonl, true));
        assert_eq!(o.state, PathBuf::from("s"));
        for bad in [
            "sales.csv --pixel 1 --token abc",
            "sales.csv --pixel 1 --access-token abc",
            "sales.csv --pixel abc",
            "sales.csv",
            "sales.xlsx --pixel 1",
            "sales.csv --pixel 1 --action-source store",
            "sales.csv --pixel 1 --batch-size 1001",
            "sales.csv --pixel 1 --api-version 26",
            "sales.csv --pixel 1 --test-event-code x",
            "sales.csv --pixel 1 --default-country Narnia",
            "sales.csv --pixel 1 --frobnicate",
            "a.csv b.csv --pixel 1",
        ] {
            assert!(Options::parse(&args(bad)).is_err(), "{bad}");
        }
        assert!(Options::parse(&args("sales.csv --pixel 1 --token abc"))
            .err()
            .is_some_and(|e| e.contains("environment") && !e.contains("abc")));
    }

    #[test]
    fn names_that_may_be_data_are_not_printed() {
        let names: BTreeSet<String> = ["notes", "jane@example.com", "4155551234", "store"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(printable_names(&names), "notes, store, 2 other(s)");
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
