//! `capi-edge payload`: the exact CAPI request body the Worker would send for a beacon or a
//! webhook, under the privacy modes given (`--customer-data`, `--consent`, `--gpc`, `--ldu`,
//! the Worker's settings of the same names; defaults are the Worker's).

use crate::flag;
use capi_core::beacon::Beacon;
use capi_core::event::request_body;
use capi_core::privacy::{InvalidSetting, Modes};
use capi_core::webhook::{self, purchase_event, Webhook};
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
    let modes = Modes::parse(
        flag(args, "--customer-data"),
        flag(args, "--consent"),
        flag(args, "--gpc"),
        flag(args, "--ldu"),
    )
    .map_err(|InvalidSetting(name)| {
        format!(
            "--{} has an undocumented value",
            name.to_ascii_lowercase().replace('_', "-")
        )
    })?;
    let facts = RequestFacts {
        client_ip: flag(args, "--ip"),
        user_agent: flag(args, "--user-agent"),
        cookie_fbp: flag(args, "--cookie-fbp"),
        cookie_fbc: flag(args, "--cookie-fbc"),
        gpc_header: args.iter().any(|a| a == "--sec-gpc"),
        subdomain_index: 1,
        now_ms,
    };
    let (event, dropped, ignored) = match flag(args, "--webhook") {
        // The same mapping the Worker applies after verifying a webhook's signature.
        Some(platform) => {
            let topic = flag(args, "--topic").unwrap_or(match platform {
                "shopify" => "orders/create",
                _ => "order.created",
            });
            let parsed = match platform {
                "shopify" => webhook::shopify::webhook(topic, &body),
                "woocommerce" => webhook::woocommerce::webhook(topic, &body),
                "stripe" => webhook::stripe::webhook(&body),
                "order" => webhook::order::webhook(&body),
                other => {
                    return Err(format!(
                        "unknown --webhook {other} (shopify, woocommerce, stripe, order)"
                    ))
                }
            };
            match parsed.map_err(|e| format!("invalid_webhook: {e}"))? {
                Webhook::Order(order) => {
                    let p = purchase_event(
                        &order,
                        flag(args, "--shop-url").unwrap_or("https://shop.example.com/"),
                        now_ms,
                        &modes,
                    );
                    (p.event, p.dropped, p.ignored)
                }
                Webhook::Ignored { reason } => return Err(format!("not reported: {reason}")),
            }
        }
        None => {
            let beacon = Beacon::parse(&body).map_err(|e| format!("{}: {e}", e.code()))?;
            let built = website_event(beacon, &facts, &modes)
                .map_err(|e| format!("{}: {e} (pass --user-agent)", e.code()))?;
            (built.event, built.dropped, built.ignored)
        }
    };
    for d in &dropped {
        eprintln!("dropped {}: {}", d.field, d.reason);
    }
    if let Some(reason) = ignored {
        return Err(format!("not relayed: {reason}"));
    }
    // The token travels in the body; a placeholder unless one is given.
    println!(
        "{}",
        request_body(
            &[event],
            flag(args, "--access-token").unwrap_or("<META_ACCESS_TOKEN>"),
            flag(args, "--app-secret"),
            flag(args, "--test-event-code")
        )
    );
    Ok(())
}
