//! `POST /t/hooks/{shopify,woocommerce,stripe,order}`: signed order webhooks → one Purchase.
//!
//! Order of work: read the raw body, verify its signature (constant time, up to two secrets),
//! only then parse; map to a Purchase in `capi-core`; claim it in the ledger; hand it to
//! delivery (the queue) and answer. If neither the queue nor Meta can take it, the claim is
//! given back and the answer is 503, so the platform's own retries redeliver it.

use crate::config::Config;
use crate::delivery::{self, Delivery};
use crate::error::ApiError;
use crate::ledger::{Claim, DropCount, EventKey, LedgerClient, Receipt};
use capi_core::delivery::is_expired;
use capi_core::meta_rules::check_event;
use capi_core::webhook::signature::{self, SignatureError};
use capi_core::webhook::{self, purchase_event, PayloadError, Webhook};
use worker::{Date, Env, Request, Response};

type Answer = std::result::Result<Response, ApiError>;

/// Webhook bodies larger than this are refused (Shopify orders with many lines are ~100 KB).
const MAX_WEBHOOK_BYTES: usize = 1024 * 1024;

#[derive(Clone, Copy)]
pub enum Platform {
    Shopify,
    WooCommerce,
    Stripe,
    Order,
}

impl Platform {
    pub fn from_route(route: &str) -> Option<Platform> {
        match route {
            "/hooks/shopify" => Some(Platform::Shopify),
            "/hooks/woocommerce" => Some(Platform::WooCommerce),
            "/hooks/stripe" => Some(Platform::Stripe),
            "/hooks/order" => Some(Platform::Order),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Platform::Shopify => "shopify",
            Platform::WooCommerce => "woocommerce",
            Platform::Stripe => "stripe",
            Platform::Order => "order",
        }
    }
}

fn ok(body: serde_json::Value) -> Answer {
    Ok(Response::from_json(&body)?)
}

/// Handles one webhook delivery.
pub async fn hook(mut req: Request, platform: Platform, cfg: &Config, env: &Env) -> Answer {
    let body = crate::body::bounded(&mut req, MAX_WEBHOOK_BYTES).await?;
    let h = req.headers();
    let now_ms = Date::now().as_millis();
    // WooCommerce's creation ping (`webhook_id=N`) must get a 2xx; it carries no order.
    if matches!(platform, Platform::WooCommerce) && webhook::woocommerce::is_ping(&body) {
        return ok(serde_json::json!({"ok": true, "ping": true}));
    }
    let secret = |name: &str| cfg.secret(name).unwrap_or_default();
    let verified = match platform {
        Platform::Shopify => signature::verify_shopify(
            &body,
            h.get("x-shopify-hmac-sha256")?.as_deref(),
            &secret("SHOPIFY_WEBHOOK_SECRET"),
        ),
        Platform::WooCommerce => signature::verify_woocommerce(
            &body,
            h.get("x-wc-webhook-signature")?.as_deref(),
            &secret("WOOCOMMERCE_WEBHOOK_SECRET"),
        ),
        Platform::Stripe => signature::verify_stripe(
            &body,
            h.get("stripe-signature")?.as_deref(),
            &secret("STRIPE_WEBHOOK_SECRET"),
            (now_ms / 1000) as i64,
        ),
        Platform::Order => signature::verify_order(
            &body,
            h.get("x-capi-signature")?.as_deref(),
            &secret("ORDER_WEBHOOK_SECRET"),
        ),
    };
    if let Err(e) = verified {
        worker::console_warn!(
            "{}",
            serde_json::json!({"msg": "webhook_unauthorized", "platform": platform.name(), "reason": e.as_str()})
        );
        return Err(match e {
            SignatureError::NoSecret => ApiError::NotConfigured(secret_name(platform)),
            other => ApiError::BadSignature(other.as_str()),
        });
    }

    let parsed = match platform {
        Platform::Shopify => {
            webhook::shopify::webhook(&h.get("x-shopify-topic")?.unwrap_or_default(), &body)
        }
        Platform::WooCommerce => {
            webhook::woocommerce::webhook(&h.get("x-wc-webhook-topic")?.unwrap_or_default(), &body)
        }
        Platform::Stripe => webhook::stripe::webhook(&body),
        Platform::Order => webhook::order::webhook(&body),
    };
    let order = match parsed.map_err(|PayloadError(why)| ApiError::BadWebhook(why))? {
        Webhook::Order(order) => order,
        Webhook::Ignored { reason } => {
            return ok(serde_json::json!({"ok": true, "ignored": reason}))
        }
    };
    let (pixel_id, token) = cfg.meta_credentials()?;
    let own = req.url()?.origin().ascii_serialization();
    let (event, dropped) = purchase_event(&order, &format!("{own}/"), now_ms);
    for d in &dropped {
        worker::console_log!(
            "{}",
            serde_json::json!({"msg": "dropped", "event_id": event.event_id, "field": d.field, "reason": d.reason})
        );
    }
    let key = EventKey {
        event_name: event.event_name.clone(),
        event_id: event.event_id.clone(),
    };
    let ledger = LedgerClient::for_pixel(env, &pixel_id);
    if is_expired(event.event_time, (now_ms / 1000) as i64) {
        // Meta refuses events older than 7 days: record that instead of sending.
        delivery::log(&event, "expired", Some("older_than_7_days"), None, 0);
        if let Some(l) = &ledger {
            let receipt = Receipt {
                event_name: key.event_name.clone(),
                event_id: key.event_id.clone(),
                outcome: "expired".into(),
                reason: Some("older_than_7_days".into()),
                attempts: 0,
                fbtrace_id: None,
            };
            l.record(vec![receipt], now_ms).await;
        }
        return ok(
            serde_json::json!({"ok": true, "sent": false, "event_id": key.event_id, "outcome": "expired"}),
        );
    }
    let value = serde_json::to_value(&event).map_err(|e| ApiError::Runtime(e.into()))?;
    if let Err(v) = check_event(&value, (now_ms / 1000) as i64) {
        // Resending the same order cannot fix it: acknowledge so the platform stops retrying.
        delivery::log(&event, "rejected", Some(v.rule), None, 0);
        return ok(
            serde_json::json!({"ok": true, "sent": false, "event_id": event.event_id, "reason": v.rule}),
        );
    }

    let dropped = dropped
        .iter()
        .map(|d| DropCount {
            field: d.field.clone(),
            reason: d.reason.to_string(),
        })
        .collect();
    let claim = match &ledger {
        Some(l) => l.claim(&key, now_ms, dropped).await,
        None => Claim::Unavailable,
    };
    if claim == Claim::Duplicate {
        delivery::log(&event, "duplicate", None, None, 0);
        return ok(serde_json::json!({"ok": true, "duplicate": true, "event_id": key.event_id}));
    }
    match delivery::deliver(env, cfg, &pixel_id, &token, event).await {
        Delivery::Queued => {
            ok(serde_json::json!({"ok": true, "queued": true, "event_id": key.event_id}))
        }
        Delivery::Sent { fbtrace_id } => ok(
            serde_json::json!({"ok": true, "sent": true, "event_id": key.event_id, "fbtrace_id": fbtrace_id}),
        ),
        Delivery::Rejected { reason } => ok(
            serde_json::json!({"ok": true, "sent": false, "event_id": key.event_id, "reason": reason}),
        ),
        Delivery::Failed { .. } => {
            // Neither the queue nor Meta took it: give the claim back so the redelivery is sent.
            if let (Some(l), Claim::New) = (&ledger, claim) {
                l.release(&key).await;
            }
            Err(ApiError::UpstreamUnavailable)
        }
    }
}

fn secret_name(platform: Platform) -> &'static str {
    match platform {
        Platform::Shopify => "SHOPIFY_WEBHOOK_SECRET",
        Platform::WooCommerce => "WOOCOMMERCE_WEBHOOK_SECRET",
        Platform::Stripe => "STRIPE_WEBHOOK_SECRET",
        Platform::Order => "ORDER_WEBHOOK_SECRET",
    }
}
