//! The command line of `capi-edge send`: every option, checked before anything is read or sent.
//! Secrets never come from here: the token and the app secret are read from the environment.

use capi_core::event::{is_test_event_code, DEFAULT_API_VERSION};
use capi_core::meta_rules::ACTION_SOURCES;
use capi_core::normalize::country_code;
use capi_core::MAX_EVENTS_PER_REQUEST;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const DEFAULT_GRAPH_URL: &str = "https://graph.facebook.com";
/// How many times one request is tried before the run stops (5xx, 429, network errors).
const DEFAULT_MAX_ATTEMPTS: u32 = 5;

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
pub(super) enum Format {
    Csv,
    Jsonl,
}

#[derive(Debug)]
pub(super) struct Options {
    pub(super) input: PathBuf,
    pub(super) format: Format,
    pub(super) delimiter: Option<u8>,
    pub(super) pixel: String,
    pub(super) url: String,
    pub(super) api_version: String,
    pub(super) action_source: String,
    pub(super) event_name: Option<String>,
    pub(super) country: Option<String>,
    pub(super) test_event_code: Option<String>,
    pub(super) token_env: String,
    pub(super) app_secret_env: String,
    pub(super) state: PathBuf,
    pub(super) dry_run: bool,
    pub(super) out: Option<PathBuf>,
    pub(super) batch_size: usize,
    pub(super) max_attempts: u32,
}

impl Options {
    pub(super) fn parse(args: &[String]) -> Result<Options, String> {
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
            } else if arg.starts_with("--") {
                // `--name=value` is not how flags are given here; the value may be a secret, so
                // it is never repeated back (errors end up in CI logs).
                let flag = arg.split_once('=').map_or(arg, |(name, _)| name);
                if matches!(flag, "--token" | "--access-token" | "--app-secret") {
                    return Err(format!(
                        "{flag}: secrets come from the environment only (--token-env, \
                         --app-secret-env), never from the command line, where other users of the \
                         machine can read them"
                    ));
                }
                return Err(format!("unknown option {flag} (see capi-edge --help)"));
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
        if !crate::token_may_go_to(&url) {
            return Err(crate::URL_RULE.into());
        }
        let api_version = values
            .get("--api-version")
            .unwrap_or(&DEFAULT_API_VERSION)
            .to_string();
        let version_ok = capi_core::event::is_api_version(&api_version);
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
        // A secret given as `--flag=value`, known or not, is never repeated back.
        for bad in [
            "sales.csv --pixel 1 --access-token=EAABsecret",
            "sales.csv --pixel 1 --acess-token=EAABsecret",
        ] {
            assert!(
                Options::parse(&args(bad))
                    .err()
                    .is_some_and(|e| !e.contains("EAABsecret")),
                "{bad}"
            );
        }
        // The token goes in clear only to this machine.
        for (url, ok) in [
            ("https://graph.facebook.com", true),
            ("http://127.0.0.1:8787", true),
            ("http://localhost:8787/", true),
            ("http://[::1]:8787", true),
            ("http://graph.facebook.com", false),
            ("http://localhost.example.com", false),
            ("http://127.0.0.1.example.com", false),
            ("http://localhost:1@evil.example", false),
            ("https://user:pw@graph.facebook.com", false),
            ("http://127.0.0.2:8787", true),
        ] {
            let parsed = Options::parse(&args(&format!("sales.csv --pixel 1 --url {url}")));
            assert_eq!(parsed.is_ok(), ok, "{url}");
        }
    }
}
