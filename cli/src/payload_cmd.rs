//! `capi-edge payload`: the exact CAPI request body the Worker would send for a beacon.

use crate::flag;
use capi_core::beacon::Beacon;
use capi_core::event::request_body;
use capi_core::website::{website_event, RequestFacts};
use std::io::Read;

pub fn run(args: &[String]) -> Result<(), String> {
    let file = args.first().filter(|a| !a.starts_with("--"));
    let body = match file {
        Some(path) => std::fs::read(path).map_err(|e| format!("{path}: {e}"))?,
        None => {
            let mut b = Vec::new();
            std::io::stdin()
                .read_to_end(&mut b)
                .map_err(|e| e.to_string())?;
            b
        }
    };
    let now_ms = match flag(args, "--now-ms") {
        Some(v) => v
            .parse()
            .map_err(|_| "--now-ms must be Unix milliseconds".to_string())?,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_millis() as u64,
    };
    let facts = RequestFacts {
        client_ip: flag(args, "--ip"),
        user_agent: flag(args, "--user-agent"),
        cookie_fbp: flag(args, "--cookie-fbp"),
        cookie_fbc: flag(args, "--cookie-fbc"),
        now_ms,
    };
    let beacon = Beacon::parse(&body).map_err(|e| format!("{}: {e}", e.code()))?;
    let built = website_event(beacon, &facts)
        .map_err(|e| format!("{}: {e} (pass --user-agent)", e.code()))?;
    for d in &built.dropped {
        eprintln!("dropped {}: {}", d.field, d.reason);
    }
    println!(
        "{}",
        request_body(&[built.event], flag(args, "--test-event-code"))
    );
    Ok(())
}
