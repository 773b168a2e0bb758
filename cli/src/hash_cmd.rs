//! `capi-edge hash`: streaming normalization + hashing of JSON lines (customer lists).
//!
//! Throughput layout: the main thread reads stdin in large blocks cut at newlines, worker
//! threads (one per core) turn whole blocks into output blocks, and the main thread writes the
//! blocks back in input order. Within a block there is no per-line JSON tree: a flat object of
//! strings (the usual line, escapes included) is read in place and the answer is written into
//! the block's output buffer; any other line takes the general `serde_json::Value` path. Both
//! paths write the same bytes (`fast_path_matches_the_general_path` below).
//!
//! Long on purpose: the command's throughput layout (reader, workers, ordered writer) in one place.

use capi_core::delivery::Fnv1a;
use capi_core::hash::sha256_hex_into;
use capi_core::normalize::{
    country_code, normalized, normalized_in, DropReason, Field, Normalized,
};
use serde_json::{json, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::io::{Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

/// Input is handed to the workers in blocks of at least this many bytes, cut after a newline
/// (small enough that the allocator recycles block buffers instead of faulting in new pages).
const BLOCK: usize = 64 * 1024;

const UNKNOWN_FIELD: &str =
    "unknown field (use em, ph, fn, ln, ct, st, zp, country, ge, db, external_id)";
const VALUE_NOT_STRING: &str = "value must be a string";
/// The answer to a line that is not UTF-8 (a list exported in another encoding).
const NOT_UTF8: &str = "line is not UTF-8";
/// The answer to a blank line: every input line has its output line, so a list's rows and
/// their hashes can be joined by position.
const BLANK_LINE: &str = "blank line";

/// One block's answer: its output lines, one per input line.
struct Done {
    seq: usize,
    out: Vec<u8>,
}

const THREADS_RULE: &str = "--threads must be a number from 1 to 64";

/// `--threads N` hashes on N threads (default: one per core, at most 16).
pub fn run(args: &[String]) -> Result<(), String> {
    // The list comes on stdin only: a file name given as an argument would otherwise be ignored
    // while the command waited on the terminal.
    let mut rest = args.iter();
    let mut threads = None;
    while let Some(arg) = rest.next() {
        if arg == "--threads" {
            threads = Some(rest.next().ok_or(THREADS_RULE)?);
        } else {
            let name = arg.split_once('=').map_or(arg.as_str(), |(name, _)| name);
            if name == "--threads" {
                return Err("write --threads N, with a space before the number".into());
            }
            return Err(format!(
                "unknown argument {name:?}: capi-edge hash reads JSON lines on stdin and takes only --threads N"
            ));
        }
    }
    let workers = match threads {
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=64).contains(n))
            .ok_or(THREADS_RULE)?,
        None => std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
            .clamp(1, 16),
    };
    let (job_tx, job_rx) = sync_channel::<(usize, Vec<u8>)>(workers * 2);
    let (done_tx, done_rx) = sync_channel::<Done>(workers * 2);
    // Only the workers hold the job receiver, so a stopped pipeline unblocks the reader.
    let job_rx = Arc::new(Mutex::new(job_rx));
    for _ in 0..workers {
        let (jobs, done) = (Arc::clone(&job_rx), done_tx.clone());
        std::thread::spawn(move || worker(&jobs, &done));
    }
    drop(job_rx);
    drop(done_tx);
    let reader = std::thread::spawn(move || read_blocks(&job_tx));
    // On an error the threads are not waited for (the reader may be blocked on an open pipe):
    // the process ends with the error, as the line-by-line reader did.
    write_in_order(&done_rx)?;
    // Every worker has finished, so the reader has too.
    reader.join().unwrap_or(Ok(()))
}

/// Reads stdin into blocks that end after a newline (the last one may not) and numbers them.
/// A short read (a pipe with nothing more yet) ends a block early, so slow input is answered
/// as it comes.
fn read_blocks(jobs: &SyncSender<(usize, Vec<u8>)>) -> Result<(), String> {
    let mut stdin = std::io::stdin().lock();
    let mut buf = vec![0u8; BLOCK];
    let mut pending: Vec<u8> = Vec::with_capacity(BLOCK * 2);
    let mut seq = 0;
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading stdin: {e}")),
        };
        if n == 0 {
            // End of input: what is left is the last line (or lines).
            if !pending.is_empty() {
                let _ = jobs.send((seq, pending));
            }
            return Ok(());
        }
        let read_from = pending.len();
        pending.extend_from_slice(&buf[..n]);
        if pending.len() < BLOCK && n == buf.len() {
            continue; // more is waiting: make a bigger block
        }
        // Only the bytes just read can hold a newline not already looked at.
        let Some(cut) = pending[read_from..].iter().rposition(|&b| b == b'\n') else {
            continue; // one very long line: keep reading
        };
        let mut next = Vec::with_capacity(BLOCK * 2);
        next.extend_from_slice(&pending[read_from + cut + 1..]);
        pending.truncate(read_from + cut + 1);
        let block = std::mem::replace(&mut pending, next);
        if jobs.send((seq, block)).is_err() {
            return Ok(()); // the writer stopped
        }
        seq += 1;
    }
}

fn worker(jobs: &Mutex<Receiver<(usize, Vec<u8>)>>, done: &SyncSender<Done>) {
    let mut countries = Countries::default();
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((seq, block)) = job else { return };
        let mut out = Vec::with_capacity(block.len() + block.len() / 2);
        hash_block(&block, &mut out, &mut countries);
        if done.send(Done { seq, out }).is_err() {
            return;
        }
    }
}

/// Writes the workers' blocks to stdout in input order.
fn write_in_order(done: &Receiver<Done>) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    let mut waiting: BTreeMap<usize, Done> = BTreeMap::new();
    let mut next = 0;
    for d in done {
        waiting.insert(d.seq, d);
        while let Some(d) = waiting.remove(&next) {
            stdout.write_all(&d.out).map_err(|e| e.to_string())?;
            next += 1;
        }
    }
    stdout.flush().map_err(|e| e.to_string())
}

/// Answers every line of `block` into `out`, one output line per input line: a line that is
/// blank or not UTF-8 gets an error line, so no later answer moves up a row. The newline that
/// ends a block ends its last line; it does not start another.
fn hash_block(block: &[u8], out: &mut Vec<u8>, countries: &mut Countries) {
    let block = block.strip_suffix(b"\n").unwrap_or(block);
    if let Ok(text) = std::str::from_utf8(block) {
        // Valid as a whole: every line is (lines are cut at an ASCII byte).
        for line in text.split('\n') {
            answer_line(line, out, countries);
        }
        return;
    }
    for raw in block.split(|&b| b == b'\n') {
        match std::str::from_utf8(raw) {
            Ok(line) => answer_line(line, out, countries),
            Err(_) => fixed_error_line(out, NOT_UTF8),
        }
    }
}

/// One line without its `\n` (a final `\r` dropped).
fn answer_line(line: &str, out: &mut Vec<u8>, countries: &mut Countries) {
    let line = line.strip_suffix('\r').unwrap_or(line);
    // Only a line starting with a space, a control or a non-ASCII character can be blank.
    let blank = line
        .as_bytes()
        .first()
        .is_none_or(|&b| (b <= b' ' || b >= 0x80) && line.trim().is_empty());
    if blank {
        return fixed_error_line(out, BLANK_LINE);
    }
    hash_line_into(line, out, countries);
}

/// An error line for a line with no field to name.
fn fixed_error_line(out: &mut Vec<u8>, error: &str) {
    out.extend_from_slice(b"{\"error\":");
    json_str(out, error);
    out.extend_from_slice(b",\"field\":null}\n");
}

/// Each distinct `country` string resolved once per worker (lists repeat a handful of them):
/// as the `country` of a row, and as the value of a `country` field. Keyed by our own input, so
/// hashed with FNV-1a rather than SipHash (no flood to resist).
#[derive(Default)]
pub struct Countries {
    codes: HashMap<Box<str>, Option<&'static str>, BuildHasherDefault<Fnv1a>>,
    fields: HashMap<Box<str>, Result<Normalized, DropReason>, BuildHasherDefault<Fnv1a>>,
}

impl Countries {
    fn resolve(&mut self, raw: &str) -> Option<&'static str> {
        if let Some(&code) = self.codes.get(raw) {
            return code;
        }
        let code = country_code(raw).ok();
        if self.codes.len() >= 4096 {
            self.codes.clear(); // a column of free text: stay bounded
        }
        self.codes.insert(raw.into(), code);
        code
    }

    /// `normalized_in(Field::Country, value, _)`, which depends on `value` alone.
    fn field(&mut self, value: &str) -> Result<Normalized, DropReason> {
        if let Some(answer) = self.fields.get(value) {
            return answer.clone();
        }
        let answer = normalized_in(Field::Country, value, None);
        if self.fields.len() >= 4096 {
            self.fields.clear();
        }
        self.fields.insert(value.into(), answer.clone());
        answer
    }
}

/// One output line (with its newline) for one input line; never echoes the raw value.
pub fn hash_line_into(line: &str, out: &mut Vec<u8>, countries: &mut Countries) {
    let Some(flat) = FlatLine::parse(line) else {
        // Escapes, numbers, nesting, invalid JSON...: the general path.
        // Serializing a `Value` into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *out, &hash_line(line));
        out.push(b'\n');
        return;
    };
    let key = flat.field.as_deref().unwrap_or_default();
    let Some(field) = Field::from_key(key) else {
        return error_line(out, UNKNOWN_FIELD, key);
    };
    let Some(value) = flat.value.as_deref() else {
        return error_line(out, VALUE_NOT_STRING, key);
    };
    let answer = if field == Field::Country {
        countries.field(value)
    } else {
        let country = flat.country.as_deref().and_then(|c| countries.resolve(c));
        normalized_in(field, value, country)
    };
    match answer {
        Ok(Normalized::Plain(n)) => {
            let mut hex = [0u8; 64];
            sha256_hex_into(n.as_bytes(), &mut hex);
            out.extend_from_slice(b"{\"field\":");
            json_str(out, key);
            out.extend_from_slice(b",\"normalized\":");
            json_str(out, &n);
            out.extend_from_slice(b",\"sha256\":\"");
            out.extend_from_slice(&hex);
            out.extend_from_slice(b"\"}\n");
        }
        Ok(Normalized::PreHashed(h)) => {
            out.extend_from_slice(b"{\"field\":");
            json_str(out, key);
            out.extend_from_slice(b",\"normalized\":null,\"sha256\":");
            json_str(out, &h);
            out.extend_from_slice(b"}\n");
        }
        Err(reason) => error_line(out, reason.as_str(), key),
    }
}

/// `{"error":…,"field":…}`: the key order `serde_json::Value` (a sorted map) writes.
fn error_line(out: &mut Vec<u8>, error: &str, key: &str) {
    out.extend_from_slice(b"{\"error\":");
    json_str(out, error);
    out.extend_from_slice(b",\"field\":");
    json_str(out, key);
    out.extend_from_slice(b"}\n");
}

/// A JSON string exactly as serde_json writes it: `"` `\` and control characters escaped
/// (short forms for \b \f \n \r \t, `\u00XX` lowercase otherwise), everything else as is.
fn json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let Some(first) = special_byte(bytes) else {
        // The usual case: nothing to escape.
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    };
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate().skip(first) {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            out.extend_from_slice(b"00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The usual line, read in place: one JSON object whose values are all strings (escapes
/// decoded as serde_json does). Later duplicates win, as in `serde_json::Value`.
struct FlatLine<'a> {
    field: Option<Cow<'a, str>>,
    value: Option<Cow<'a, str>>,
    country: Option<Cow<'a, str>>,
}

impl<'a> FlatLine<'a> {
    /// `None` when the line is anything else (the general path decides what it is).
    fn parse(line: &'a str) -> Option<FlatLine<'a>> {
        let b = line.as_bytes();
        let mut flat = FlatLine {
            field: None,
            value: None,
            country: None,
        };
        let mut i = skip_ws(b, 0);
        if b.get(i) != Some(&b'{') {
            return None;
        }
        i = skip_ws(b, i + 1);
        if b.get(i) == Some(&b'}') {
            i += 1;
        } else {
            loop {
                let (key, after) = json_string(line, i)?;
                i = skip_ws(b, after);
                if b.get(i) != Some(&b':') {
                    return None;
                }
                let (value, after) = json_string(line, skip_ws(b, i + 1))?;
                match &*key {
                    "field" => flat.field = Some(value),
                    "value" => flat.value = Some(value),
                    "country" => flat.country = Some(value),
                    _ => {}
                }
                i = skip_ws(b, after);
                match b.get(i) {
                    Some(b',') => i = skip_ws(b, i + 1),
                    Some(b'}') => {
                        i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        (skip_ws(b, i) == b.len()).then_some(flat)
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The JSON string starting at `line[i] == '"'` and the index after its closing quote.
/// Borrowed when it has no escapes; `None` for control characters, surrogate escapes (rare:
/// the general path decides) and anything invalid.
fn json_string(line: &str, i: usize) -> Option<(Cow<'_, str>, usize)> {
    let b = line.as_bytes();
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let start = i + 1;
    let body = b.get(start..)?;
    let len = special_byte(body)?;
    if body[len] == b'"' {
        return Some((
            Cow::Borrowed(line.get(start..start + len)?),
            start + len + 1,
        ));
    }
    let mut s = String::with_capacity(len + 16);
    let mut j = start;
    loop {
        let run = special_byte(b.get(j..)?)?;
        s.push_str(line.get(j..j + run)?);
        j += run;
        match b[j] {
            b'"' => return Some((Cow::Owned(s), j + 1)),
            b'\\' => {
                let c = match *b.get(j + 1)? {
                    b'"' => '"',
                    b'\\' => '\\',
                    b'/' => '/',
                    b'b' => '\u{8}',
                    b'f' => '\u{c}',
                    b'n' => '\n',
                    b'r' => '\r',
                    b't' => '\t',
                    b'u' => {
                        let hex = line.get(j + 2..j + 6)?;
                        if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                            return None;
                        }
                        char::from_u32(u32::from_str_radix(hex, 16).ok()?)?
                    }
                    _ => return None,
                };
                s.push(c);
                j += if b[j + 1] == b'u' { 6 } else { 2 };
            }
            _ => return None,
        }
    }
}

/// The index of the first `"`, `\\` or control character in `b`, eight bytes at a time.
fn special_byte(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = b.chunks_exact(8);
    let mut at = 0;
    for chunk in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        // Per byte: zero after xor with '"' or '\\', or below 0x20. The lowest flagged byte is
        // exact (borrows only ever flag bytes above a real hit).
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        let hits = (quote.wrapping_sub(ONES) & !quote
            | backslash.wrapping_sub(ONES) & !backslash
            | w.wrapping_sub(ONES * 0x20) & !w)
            & HIGH;
        if hits != 0 {
            return Some(at + (hits.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let tail = chunks.remainder();
    tail.iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|p| at + p)
}

/// One output value for one input line, through a `serde_json::Value` (the general path).
pub fn hash_line(line: &str) -> Value {
    let Ok(input) = serde_json::from_str::<Value>(line) else {
        return json!({"field": null, "error": "line is not a JSON object"});
    };
    let key = input
        .get("field")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(field) = Field::from_key(key) else {
        return json!({"field": key, "error": UNKNOWN_FIELD});
    };
    let Some(value) = input.get("value").and_then(Value::as_str) else {
        return json!({"field": key, "error": VALUE_NOT_STRING});
    };
    let country = input.get("country").and_then(Value::as_str);
    match normalized(field, value, country) {
        Ok(Normalized::Plain(n)) => {
            let h = capi_core::hash::sha256_hex(&n);
            json!({"field": key, "normalized": n, "sha256": h})
        }
        Ok(Normalized::PreHashed(h)) => json!({"field": key, "normalized": null, "sha256": h}),
        Err(reason) => json!({"field": key, "error": reason.as_str()}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn general(line: &str) -> String {
        let mut s = serde_json::to_string(&hash_line(line)).unwrap_or_default();
        s.push('\n');
        s
    }

    fn fast(line: &str) -> String {
        let mut out = Vec::new();
        hash_line_into(line, &mut out, &mut Countries::default());
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn json_strings_are_escaped_as_serde_json_does() {
        let mut all: String = (0u8..0x80).map(char::from).collect();
        all.push_str("é정\u{2028}\u{7f}\u{1F600}");
        for s in [all.as_str(), "", "plain", "a\"b\\c", "\u{0}"] {
            let mut out = Vec::new();
            json_str(&mut out, s);
            assert_eq!(
                String::from_utf8(out).unwrap_or_default(),
                serde_json::to_string(s).unwrap_or_default()
            );
        }
    }

    #[test]
    fn fast_path_matches_the_general_path() {
        let lines = [
            r#"{"field":"em","value":" Jane.Doe@Example.COM "}"#,
            r#"{"field":"ph","value":"(650) 555-1212","country":"US"}"#,
            r#" { "field" : "zp" , "value" : "94107-1234" , "country" : "United States" } "#,
            r#"{"value":"Mary-Ann","field":"fn","extra":"x"}"#,
            r#"{"field":"fn","value":"a","field":"ln"}"#,
            r#"{"field":"xx","value":"a"}"#,
            r#"{"value":"a"}"#,
            r#"{"field":"em"}"#,
            r#"{}"#,
            r#"{"field":"em","value":""}"#,
            r#"{"field":"em","value":"not an email"}"#,
            r#"{"field":"ct","value":"São Paulo"}"#,
            r#"{"field":"em","value":"E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"}"#,
            r#"{"field":"st","value":"US-CA","country":"usa"}"#,
            r#"{"field":"country","value":"Deutschland"}"#,
            r#"{"field":"fn","value":"a\"b"}"#,
            r#"{"field":"\u0066n","value":"a\u00e9\t\/\\\b\f\n\r"}"#,
            r#"{"field":"fn","value":"a\ud83d\ude00"}"#,
            r#"{"field":"fn","value":"a\ud83d"}"#,
            r#"{"field":"fn","value":"a\x"}"#,
            r#"{"field":"fn","value":"a\u00g0"}"#,
            r#"{"field":"fn","value":"a\u00"}"#,
            r#"{"field":"fn","value":5}"#,
            r#"{"field":"fn","value":"x",}"#,
            r#"{"field":"fn","value":"x"} x"#,
            r#"{"field":"fn","value":"x""#,
            r#"["field"]"#,
            r#""field""#,
            "{\"field\":\"fn\",\"value\":\"a\u{7f}b\u{2028}\"}",
        ];
        for line in lines {
            assert_eq!(fast(line), general(line), "{line}");
        }
        assert_eq!(
            fast("{"),
            "{\"error\":\"line is not a JSON object\",\"field\":null}\n"
        );
    }

    #[test]
    fn special_bytes_are_found_at_every_position() {
        let naive = |b: &[u8]| b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
        for len in 0..40 {
            for at in 0..=len {
                for special in [b'"', b'\\', 0u8, 0x1f] {
                    for filler in [b'a', 0x20, 0x7f, 0x80, 0xff, b'!', b'#', b'[', b']'] {
                        let mut v = vec![filler; len];
                        if at < len {
                            v[at] = special;
                        }
                        assert_eq!(special_byte(&v), naive(&v), "{v:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn every_input_line_has_its_output_line() {
        let lines = |block: &[u8]| {
            let mut out = Vec::new();
            hash_block(block, &mut out, &mut Countries::default());
            String::from_utf8(out)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap_or(Value::Null))
                .collect::<Vec<_>>()
        };
        let got = lines(
            b"{\"field\":\"fn\",\"value\":\"A\"}\r\n\n  \n{\"field\":\"ln\",\"value\":\"B\"}",
        );
        assert_eq!(got.len(), 4);
        assert_eq!(got[0]["field"], "fn");
        assert_eq!(got[1]["error"], BLANK_LINE);
        assert_eq!(got[2]["error"], BLANK_LINE);
        assert_eq!(got[3]["field"], "ln");
        // A line in another encoding is answered and the rest go on, in their rows.
        let got = lines(
            b"{\"field\":\"fn\",\"value\":\"A\"}\n\xff\n{\"field\":\"ln\",\"value\":\"B\"}\n",
        );
        assert_eq!(got.len(), 3);
        assert_eq!(got[1]["error"], NOT_UTF8);
        assert_eq!(got[2]["field"], "ln");
        assert_eq!(got[2]["normalized"], "b");
        // The newline ending the input ends its last line: no extra answer.
        assert_eq!(lines(b"{\"field\":\"fn\",\"value\":\"A\"}\n").len(), 1);
    }
}
