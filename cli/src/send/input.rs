//! The input file, row by row: CSV (the csv crate: quoting, embedded newlines, a byte-order
//! mark; `,` `;` or tab) or JSON Lines, each row a `Record` of `capi_core::offline` columns.

use super::options::Options;
use capi_core::offline::{header_columns, Column, Record, Skip};
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Column or key names for a message: names that could hold contact data (an `@`, long digit
/// runs, very long text — a file without a header row) are counted, not shown.
pub(super) fn printable_names(names: &BTreeSet<String>) -> String {
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
pub(super) struct Row {
    pub(super) line: u64,
    pub(super) record: Result<Record, Skip>,
}

fn unreadable(reason: &'static str, message: &str) -> Skip {
    Skip {
        reason,
        message: message.to_string(),
    }
}

pub(super) enum Rows {
    Csv(CsvRows),
    Jsonl(JsonlRows),
}

impl Rows {
    /// The next row; `Err` only when the file itself cannot be read any more.
    pub(super) fn next_row(
        &mut self,
        unknown: &mut BTreeSet<String>,
    ) -> Result<Option<Row>, String> {
        match self {
            Rows::Csv(r) => r.next_row(),
            Rows::Jsonl(r) => r.next_row(unknown),
        }
    }

    pub(super) fn bytes_read(&self) -> u64 {
        match self {
            Rows::Csv(r) => r.reader.position().byte(),
            Rows::Jsonl(r) => r.bytes,
        }
    }
}

pub(super) struct CsvRows {
    reader: csv::Reader<BufReader<File>>,
    columns: Vec<Option<Column>>,
    record: csv::ByteRecord,
    name: String,
    line_offset: u64,
}

impl CsvRows {
    pub(super) fn open(opts: &Options) -> Result<CsvRows, String> {
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

    pub(super) fn next_row(&mut self) -> Result<Option<Row>, String> {
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

pub(super) struct JsonlRows {
    reader: BufReader<File>,
    line: u64,
    bytes: u64,
    buf: Vec<u8>,
}

impl JsonlRows {
    pub(super) fn open(path: &Path) -> Result<JsonlRows, String> {
        let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(JsonlRows {
            reader: BufReader::with_capacity(256 * 1024, file),
            line: 0,
            bytes: 0,
            buf: Vec::new(),
        })
    }

    pub(super) fn next_row(
        &mut self,
        unknown: &mut BTreeSet<String>,
    ) -> Result<Option<Row>, String> {
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
            // A byte order mark (PowerShell's `Out-File -Encoding utf8`) opens the first line.
            let text = if self.line == 1 {
                text.strip_prefix('\u{feff}').unwrap_or(text)
            } else {
                text
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delimiter_is_the_header_line_s_own() {
        let csv = Path::new("export.csv");
        assert_eq!(guess_delimiter(csv, b"email,event_time,value\r\n"), b',');
        assert_eq!(
            guess_delimiter(csv, b"email;event_time;value;note, x\n"),
            b';'
        );
        assert_eq!(guess_delimiter(csv, b"email\tevent_time\n"), b'\t');
        assert_eq!(guess_delimiter(csv, b"email\n"), b',');
        assert_eq!(guess_delimiter(Path::new("x.TSV"), b"a,b"), b'\t');
    }

    #[test]
    fn the_docs_header_table_is_the_column_table() {
        let docs = include_str!("../../../docs/sandbox-and-cli.md");
        let rows: Vec<(&str, Vec<&str>)> = docs
            .lines()
            .skip_while(|l| !l.starts_with("| field (Meta's name) |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let cells: Vec<&str> = l.split(" | ").collect();
                let name = cells[0].trim_start_matches("| ").trim_matches('`');
                let spellings = cells[1].split(", ").map(|s| s.trim_matches('`')).collect();
                (name, spellings)
            })
            .collect();
        let table: Vec<(&str, Vec<&str>)> = capi_core::offline::COLUMNS
            .iter()
            .map(|(c, names)| (c.name(), names.to_vec()))
            .collect();
        assert_eq!(rows, table);
    }

    #[test]
    fn names_that_may_be_data_are_not_printed() {
        let names: BTreeSet<String> = ["notes", "jane@example.com", "4155551234", "store"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(printable_names(&names), "notes, store, 2 other(s)");
    }
}
