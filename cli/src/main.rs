//! `capi-edge`: hash customer data the way Meta wants it, print the exact CAPI request for a
//! beacon, send offline conversions from a file, and run a local stand-in for Meta's
//! Conversions API.

mod hash_cmd;
mod payload_cmd;
mod quality_cmd;
mod replay_cmd;
mod report_cmd;
mod sandbox;
mod send;

use std::process::ExitCode;

const USAGE: &str = "capi-edge — Meta Conversions API tools

USAGE:
  capi-edge hash [--threads N]        JSON lines {\"field\",\"value\"[,\"country\"]} on stdin →
                                      {\"field\",\"normalized\",\"sha256\"} or {\"field\",\"error\"}
  capi-edge payload [FILE] [--user-agent UA] [--ip IP] [--cookie-fbp V] [--cookie-fbc V] [--now-ms MS]
                    [--webhook shopify|woocommerce|stripe|order [--topic T] [--shop-url URL]]
                    [--test-event-code CODE] [--access-token T] [--app-secret S]
                    [--customer-data off|hashed] [--consent optional|required]
                    [--gpc ldu|drop|ignore] [--ldu off|on|geo] [--sec-gpc]
                                      a beacon (or, with --webhook, a webhook body) from FILE or
                                      stdin → the exact CAPI request body under those privacy
                                      modes (the Worker's defaults); drop reasons on stderr
  capi-edge report                    the Worker's /t/report JSON on stdin → a table: orders per
                                      day against Purchases sent / ignored (reason) / rejected /
                                      retrying, and match coverage per event name
  capi-edge replay --url https://shop.example.com/t [--event-id ID] [--tenant T] [--pixel P]
                  [--page-size 200] [--token-env ADMIN_TOKEN]
                                      re-drives the Worker's dead letters (POST /t/replay, a page
                                      per call, every page) once their cause is fixed; the
                                      admin token comes from the env
  capi-edge send FILE --pixel ID [--format csv|jsonl] [--delimiter C]
                 [--action-source physical_store] [--event-name NAME] [--default-country CC]
                 [--url https://graph.facebook.com] [--api-version V] [--test-event-code CODE]
                 [--token-env META_ACCESS_TOKEN] [--app-secret-env META_APP_SECRET]
                 [--state FILE.capi-state] [--batch-size 1000] [--max-attempts 5]
                 [--dry-run [--out FILE]]
                                      offline and CRM conversions (store sales, phone orders,
                                      lead stages) from CSV or JSON Lines, one event per row:
                                      contact data normalized and hashed here, Meta's rules and
                                      windows checked (rows Meta would refuse are skipped),
                                      batches of <= 1,000 with retries; resumable, nothing sent
                                      twice (the state file); --dry-run prints the request bodies
                                      instead; a summary on stderr. Token from the env only
  capi-edge quality --pixel ID [--url https://graph.facebook.com] [--api-version V]
                    [--token-env META_ACCESS_TOKEN] [--agent-name NAME] [--json]
                                      what Meta says of the pixel's events (Dataset Quality API),
                                      per event name: match quality and match keys, event
                                      coverage, deduplication keys, data freshness; --json prints
                                      Meta's answer unchanged. Token from the env only
  capi-edge sandbox [--listen 127.0.0.1:8790]
                                      local stand-in for Meta's /{version}/{pixel}/events
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("hash") => hash_cmd::run(&args[1..]),
        Some("payload") => payload_cmd::run(&args[1..]),
        Some("report") => report_cmd::run(&args[1..]),
        Some("replay") => replay_cmd::run(&args[1..]),
        Some("quality") => quality_cmd::run(&args[1..]),
        Some("sandbox") => sandbox::run(&args[1..]),
        // Exit status 1: the file was gone through, and not one row could be sent.
        Some("send") => match send::run(&args[1..]) {
            Ok(false) => return ExitCode::from(1),
            other => other.map(drop),
        },
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("unknown command\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("capi-edge: {e}");
            ExitCode::from(2)
        }
    }
}

/// Whether `url` may receive a token (Meta's access token, the Worker's admin token): https, or
/// plain http to this machine only (the sandbox, `make dev`), as the `url` crate reads the host
/// (`http://localhost:1@evil.example` goes to evil.example, and is refused).
pub fn token_may_go_to(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    u.username().is_empty()
        && u.password().is_none()
        && (u.scheme() == "https" && u.host().is_some() || u.scheme() == "http" && loopback)
}

/// What `--url` must be, for the error that refuses it.
pub const URL_RULE: &str = "--url must start with https:// (or http:// to 127.0.0.1, localhost \
     or [::1], for the sandbox), with no user name or password";

/// The value after `--name` in `args`.
/// Refuses what a command does not take: an unknown or misspelled flag (`--event_id`), a flag
/// without its value, or a token on the command line (`--token`, `--access-token`), where other
/// users of the machine could read it. An unknown `--flag=value` is named without its value.
pub fn check_args(
    args: &[String],
    value_flags: &[&str],
    switches: &[&str],
    token_env: &str,
) -> Result<(), String> {
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        match arg.as_str() {
            a if switches.contains(&a) => i += 1,
            "--token" | "--access-token" => {
                return Err(format!(
                    "{arg} is not taken: the token comes from the environment ({token_env}, or --token-env NAME)"
                ))
            }
            a if value_flags.contains(&a) => {
                if args.get(i + 1).is_none() {
                    return Err(format!("{a} needs a value"));
                }
                i += 2;
            }
            other => {
                let name = other.split_once('=').map_or(other, |(name, _)| name);
                return Err(format!("unknown argument {name:?} (see capi-edge --help)"));
            }
        }
    }
    Ok(())
}

pub fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}
