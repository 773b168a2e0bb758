//! `POST /t/hooks/{shopify,woocommerce,stripe,order}`: signed order webhooks → one Purchase per
//! order, and the rest of its life (cancellations, refunds, renewals).
//!
//! Order of work: read the raw body, verify its signature (constant time, up to two secrets),
//! only then parse; plan what the order asks for in `capi-core` (`webhook::lifecycle`); claim
//! each event in the ledger; hand it to delivery (the queue) and answer. If neither the queue
//! nor Meta can take it, the claim is given back and the answer is 503, so the platform's own
//! retries redeliver it.

use crate::config::{Config, Tenant, PLATFORMS};
use crate::delivery::{self, new_nonce, QueuedEvent, ALREADY_SETTLED};
use crate::error::ApiError;
use crate::ledger::LedgerClient;
use crate::log;
use crate::protocol::{ClaimItem, ClaimStatus, Count, EventKey, PurchaseAnswer, Receipt, Source};
use capi_core::claim::{reopen_of, Reopen};
use capi_core::delivery::{presend_check, Outcome};
use capi_core::privacy::{self, InvalidSetting};
use capi_core::webhook::lifecycle::{
    self, AfterTrial, Carried, Plan, Refunds, TenantMode,
};
use capi_core::webhook::signature::{self, SignatureError};
use capi_core::webhook::{self, PayloadError, Webhook};
use serde_json::json;
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
    /// `/hooks/{platform}` (the tenant of the request host) or `/hooks/{platform}/{tenant}`
    /// (for a backend that posts every shop's orders to one host).
    pub fn from_route(route: &str) -> Option<(Platform, Option<&str>)> {
        let rest = route.strip_prefix("/hooks/")?;
        let (name, tenant) = match rest.split_once('/') {
            Some((n, t)) if !t.is_empty() && !t.contains('/') => (n, Some(t)),
            Some(_) => return None,
            None => (rest, None),
        };
        let platform = match name {
            "shopify" => Platform::Shopify,
            "woocommerce" => Platform::WooCommerce,
            "stripe" => Platform::Stripe,
            "order" => Platform::Order,
            _ => return None,
        };
        Some((platform, tenant))
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
pub async fn hook(
    mut req: Request,
    platform: Platform,
    tenant_id: Option<&str>,
    cfg: &Config,
    env: &Env,
) -> Answer {
    let tenant = match tenant_id {
        Some(id) => cfg
            .tenant(id)
            .ok_or(ApiError::UnknownTenant)
            .and_then(Tenant::usable)?,
        None => cfg.tenant_for_host(req.url()?.host_str().unwrap_or(""))?,
    };
    let body = crate::body::bounded(&mut req, MAX_WEBHOOK_BYTES).await?;
    let h = req.headers();
    let now_ms = Date::now().as_millis();
    // WooCommerce's creation ping (`webhook_id=N`) must get a 2xx; it carries no order.
    if matches!(platform, Platform::WooCommerce) && webhook::woocommerce::is_ping(&body) {
        return ok(serde_json::json!({"ok": true, "ping": true}));
    }
    let secret = tenant.webhook_secret(platform.name()).unwrap_or_default();
    let verified = match platform {
        Platform::Shopify => {
            signature::verify_shopify(&body, h.get("x-shopify-hmac-sha256")?.as_deref(), secret)
        }
        Platform::WooCommerce => signature::verify_woocommerce(
            &body,
            h.get("x-wc-webhook-signature")?.as_deref(),
            secret,
        ),
        Platform::Stripe => signature::verify_stripe(
            &body,
            h.get("stripe-signature")?.as_deref(),
            secret,
            (now_ms / 1000) as i64,
        ),
        Platform::Order => {
            signature::verify_order(&body, h.get("x-capi-signature")?.as_deref(), secret)
        }
    };
    if let Err(e) = verified {
        log::warn(
            "webhook_unauthorized",
            &[
                ("platform", platform.name().into()),
                ("reason", e.as_str().into()),
            ],
        );
        return Err(match e {
            SignatureError::NoSecret => ApiError::NotConfigured(
                PLATFORMS
                    .iter()
                    .find(|(p, _)| *p == platform.name())
                    .map_or("TENANTS", |(_, setting)| setting),
            ),
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
    let modes = tenant.privacy()?;
    let settings = tenant
        .orders
        .map_err(|InvalidSetting(name)| ApiError::InvalidSetting(name))?;
    // The page is the order's shop's, never the host the webhook was posted to (an agency's
    // shared host): the rule is `webhook::fallback_source_url`'s, these are its facts.
    let own = req.url()?.origin().ascii_serialization();
    let shop_header = match platform {
        Platform::Shopify => h.get("x-shopify-shop-domain")?,
        Platform::WooCommerce => h.get("x-wc-webhook-source")?,
        Platform::Stripe | Platform::Order => None,
    };
    let source_url = webhook::fallback_source_url(&webhook::DeliveryFacts {
        shop_header: shop_header.as_deref(),
        tenant_host: tenant.hosts.first().map(String::as_str),
        request_origin: &own,
    });
    let mode = if tenant.test_event_code.is_some() {
        TenantMode::Testing
    } else {
        TenantMode::Live
    };
    let plan = lifecycle::plan(&order, &settings, mode, &source_url, now_ms, &modes);
    // A renewal may be the first invoice paid after a trial: each pixel's ledger says which.
    let after_trial = lifecycle::after_trial(&order).map(|a| {
        let first = lifecycle::plan(&a.purchase, &settings, mode, &source_url, now_ms, &modes);
        (first, a)
    });
    if let Some(built) = &plan.event {
        log::dropped(&built.event.event_id, &built.dropped);
    }
    if plan.is_empty() && after_trial.is_none() {
        let reason = plan.skipped.unwrap_or("nothing_to_report");
        return ok(json!({"ok": true, "ignored": reason, "event_id": plan.purchase_id}));
    }
    // The order goes to every pixel of the tenant, each with its own claims.
    let mut answers = serde_json::Map::new();
    let mut first: Option<serde_json::Value> = None;
    let mut failed: Option<ApiError> = None;
    for pixel in &tenant.pixels {
        match order_for_pixel(cfg, env, tenant, &pixel.id, &plan, after_trial.as_ref(), now_ms)
            .await
        {
            Ok(answer) => {
                answers.insert(pixel.id.clone(), answer.clone());
                first.get_or_insert(answer);
            }
            Err(e) => {
                answers.insert(pixel.id.clone(), json!({"unavailable": true}));
                failed.get_or_insert(e);
            }
        }
    }
    // 503 whenever a pixel could not take it: the platform's redelivery then reaches every
    // pixel again, and the pixels that did take it answer `duplicate` to it.
    if let Some(e) = failed {
        return Err(e);
    }
    let Some(mut answer) = first else {
        return Err(ApiError::UpstreamUnavailable);
    };
    if tenant.pixels.len() > 1 {
        answer["pixels"] = serde_json::Value::Object(answers);
    }
    ok(answer)
}

/// One pixel's share of an order webhook: its event (the Purchase, a renewal, a trial start),
/// then what a cancellation or refund finds of the Purchase (claim rule 8): held back if it was
/// not delivered and nobody is sending it, a refund event per refund once it is delivered or on
/// its way (`REFUNDS = event`), a 503 while an attempt is sending it.
async fn order_for_pixel(
    cfg: &Config,
    env: &Env,
    tenant: &Tenant,
    pixel_id: &str,
    plan: &Plan,
    after_trial: Option<&(Plan, AfterTrial)>,
    now_ms: u64,
) -> Result<serde_json::Value, ApiError> {
    let tenant_id = tenant.id.as_str();
    let ledger = LedgerClient::for_pixel(env, cfg, tenant_id, pixel_id);
    let renewal = plan.event.as_ref().map(|b| EventKey {
        event_name: b.event.event_name.clone(),
        event_id: b.event.event_id.clone(),
    });
    let plan = match (after_trial, &ledger) {
        (Some((first, a)), Some(l))
            if paid_after_trial(l, a, &first.purchase_id, renewal.as_ref(), now_ms).await? =>
        {
            first
        }
        _ => plan,
    };
    // A trial start is marked first: only the first invoice paid after a trial this Worker saw
    // start is its subscription's Purchase.
    if let (Some(built), Some(l)) = (&plan.event, &ledger) {
        if built.event.event_name == lifecycle::TRIAL_EVENT {
            mark(l, &built.event.event_id, lifecycle::TRIAL_STARTED, now_ms).await?;
        }
    }
    if plan.is_empty() {
        let reason = plan.skipped.unwrap_or("nothing_to_report");
        return Ok(json!({"ok": true, "ignored": reason, "event_id": plan.purchase_id}));
    }
    let settings = tenant
        .orders
        .map_err(|InvalidSetting(name)| ApiError::InvalidSetting(name))?;
    let modes = tenant.privacy()?;
    let mut answer = json!({"ok": true, "event_id": plan.purchase_id});
    if let Some(built) = &plan.event {
        // The order's own Purchase is reconciled as an order; renewals and trials are not.
        let purchase = built.event.event_id == plan.purchase_id;
        let source = if purchase {
            Source::Webhook
        } else {
            Source::OrderUpdate
        };
        let carried = (purchase && settings.refunds == Refunds::Event)
            .then(|| serde_json::to_string(&Carried::of(&built.event)).ok())
            .flatten();
        // Only the paid order's Purchase takes one a failed payment held back (claim rule 8).
        let paid = purchase && plan.paid;
        answer = event_for_pixel(
            cfg, env, tenant_id, pixel_id, built, source, carried, paid, now_ms,
        )
        .await?;
    }
    if !plan.cancels && plan.refunds.is_empty() {
        return Ok(answer);
    }
    let ledger = ledger.ok_or(ApiError::UpstreamUnavailable)?;
    let key = EventKey {
        event_name: "Purchase".into(),
        event_id: plan.purchase_id.clone(),
    };
    let why = if plan.cancels_unreported {
        "cancelled"
    } else {
        capi_core::claim::PAYMENT_FAILED
    };
    let state = ledger
        .purchase(
            &key,
            plan.cancels.then_some(why),
            plan.cancels_unreported,
            now_ms,
        )
        .await
        .ok_or(ApiError::UpstreamUnavailable)?;
    let (name, carried, refunds) = match state {
        PurchaseAnswer::InFlight { retry_secs } => {
            return Err(ApiError::PurchaseInFlight { retry_secs })
        }
        PurchaseAnswer::Pending { .. } if plan.cancels => {
            log::info(
                "purchase_cancelled",
                &[("event_id", plan.purchase_id.clone().into())],
            );
            answer["cancelled"] = true.into();
            ("cancelled", None, false)
        }
        PurchaseAnswer::Unknown if plan.cancels && plan.cancels_unreported => {
            log::info(
                "purchase_cancelled",
                &[("event_id", plan.purchase_id.clone().into())],
            );
            answer["cancelled"] = true.into();
            ("cancelled", None, false)
        }
        PurchaseAnswer::Unknown => ("unknown", None, false),
        PurchaseAnswer::NotSent => ("not_sent", None, false),
        PurchaseAnswer::Pending { carried } => ("pending", carried, true),
        PurchaseAnswer::Delivered { carried } => ("delivered", carried, true),
    };
    answer["purchase"] = name.into();
    if !refunds || plan.refunds.is_empty() {
        return Ok(answer);
    }
    let carried: Option<Carried> = carried.and_then(|c| serde_json::from_str(&c).ok());
    let mut sent = Vec::with_capacity(plan.refunds.len());
    for refund in &plan.refunds {
        let mut refund = refund.clone();
        // The keys the Purchase was delivered with, when the ledger kept them: a refund's own
        // payload may name no customer (Shopify `refunds/create`). Today's privacy settings
        // still apply: a refund whose own payload refuses consent is not sent, and with data
        // controls off no contact data goes with it.
        let refused = refund.ignored.is_some_and(|r| r != privacy::NO_CONSENT);
        if let Some(mut c) = carried.clone().filter(|_| !refused) {
            if modes.customer_data == privacy::CustomerData::Off {
                c.user_data.keep_pixel_fields_only();
            }
            c.apply(&mut refund.event);
            refund.ignored = None;
            refund.dropped.clear();
        }
        sent.push(
            event_for_pixel(
                cfg,
                env,
                tenant_id,
                pixel_id,
                &refund,
                Source::OrderUpdate,
                None,
                false,
                now_ms,
            )
            .await?,
        );
    }
    answer["refunds"] = sent.into();
    Ok(answer)
}

/// Whether a renewal is, for this pixel, the first invoice paid after a trial
/// (`lifecycle::after_trial`): the invoice's mark says so already (a redelivery), or the pixel's
/// ledger has the trial start's mark and neither a Purchase of the subscription nor this
/// invoice as a renewal (under `renewal`, the renewal's own event key). Then the invoice's mark
/// is written before the Purchase is claimed, so that a redelivery after a failure is that
/// Purchase again, never also a renewal.
async fn paid_after_trial(
    ledger: &LedgerClient,
    a: &AfterTrial,
    purchase_id: &str,
    renewal: Option<&EventKey>,
    now_ms: u64,
) -> Result<bool, ApiError> {
    let mut keys = vec![
        mark_key(&a.mark_event_id),
        mark_key(&a.trial_event_id),
        EventKey {
            event_name: "Purchase".into(),
            event_id: purchase_id.into(),
        },
    ];
    keys.extend(renewal.cloned());
    // One call site for the looks: renewals are rare, and each await site is code in the bundle.
    let mut known = Vec::with_capacity(keys.len());
    for key in &keys {
        let state = ledger.purchase(key, None, false, now_ms).await;
        known.push(state.ok_or(ApiError::UpstreamUnavailable)? != PurchaseAnswer::Unknown);
    }
    match known[..] {
        [true, ..] => Ok(true),
        [false, true, false] | [false, true, false, false] => {
            mark(ledger, &a.mark_event_id, lifecycle::FIRST_PAID_AFTER_TRIAL, now_ms).await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn mark_key(event_id: &str) -> EventKey {
    EventKey {
        event_name: lifecycle::MARK_EVENT.into(),
        event_id: event_id.into(),
    }
}

/// Writes a mark (`lifecycle::MARK_EVENT`): a receipt no event has, never counted.
async fn mark(
    ledger: &LedgerClient,
    event_id: &str,
    reason: &'static str,
    now_ms: u64,
) -> Result<(), ApiError> {
    let mark = Receipt {
        key: mark_key(event_id),
        outcome: Outcome::Ignored,
        reason: Some(reason.into()),
        attempts: 0,
        fbtrace_id: None,
        source: Some(Source::OrderUpdate),
        nonce: Some(new_nonce()),
    };
    let shard = ledger.shard_of(event_id);
    if ledger.record(shard, vec![mark], Vec::new(), now_ms).await {
        Ok(())
    } else {
        Err(ApiError::UpstreamUnavailable)
    }
}

/// One event of an order for one pixel: settle it (privacy, a test order, expiry, Meta's rules)
/// with a receipt, or claim it synchronously (a redelivery is answered `duplicate`) and hand it
/// to delivery. `Err` when neither the ledger nor delivery could take it.
#[allow(clippy::too_many_arguments)]
async fn event_for_pixel(
    cfg: &Config,
    env: &Env,
    tenant_id: &str,
    pixel_id: &str,
    built: &capi_core::webhook::PurchaseEvent,
    source: Source,
    carried: Option<String>,
    paid: bool,
    now_ms: u64,
) -> Result<serde_json::Value, ApiError> {
    let event = built.event.clone();
    let counts: Vec<Count> = built
        .dropped
        .iter()
        .map(|d| Count::dropped(&d.field, d.reason))
        .collect();
    let key = EventKey {
        event_name: event.event_name.clone(),
        event_id: event.event_id.clone(),
    };
    let ledger = LedgerClient::for_pixel(env, cfg, tenant_id, pixel_id);
    let shard = ledger.as_ref().map_or(0, |l| l.shard_of(&key.event_id));
    // Settled before any claim: privacy rules (the order's consent, GPC), Meta's 7 days and
    // Meta's rules. Each gets a receipt saying why, and a 200 so the platform stops retrying.
    let settled = match built.ignored {
        Some(reason) => Some((Outcome::Ignored, reason)),
        None => presend_check(&event, (now_ms / 1000) as i64)
            .err()
            .map(|s| (s.outcome, s.reason)),
    };
    if let Some((outcome, reason)) = settled {
        delivery::log_event(&event, outcome, Some(reason), None, 0);
        // An order's Purchase that this copy says must not be sent (consent refused, GPC, an
        // offline order) is held back even when another copy of the order reserved it first
        // and it is still waiting (claim rule 8); one being sent right now is asked again later.
        // A copy that merely lacks a consent (`no_consent`), or a test order (a staging
        // backend's order of a live order's number), holds nothing back and blocks no other
        // copy (claim rule 9): another copy of the order may carry the grant, or be the live one.
        let holds_back = built
            .ignored
            .is_some_and(|r| reopen_of(Outcome::Ignored, Some(r)) == Reopen::Never);
        if let (Some(l), true, Source::Webhook) = (&ledger, holds_back, source) {
            return match l.purchase(&key, Some(reason), true, now_ms).await {
                None => Err(ApiError::UpstreamUnavailable),
                Some(PurchaseAnswer::InFlight { retry_secs }) => {
                    Err(ApiError::PurchaseInFlight { retry_secs })
                }
                Some(_) => Ok(json!({"ok": true, "sent": false, "event_id": key.event_id,
                    "outcome": outcome.as_str(), "reason": reason})),
            };
        }
        if let Some(l) = &ledger {
            let receipt = Receipt {
                key: key.clone(),
                outcome,
                reason: Some(reason.into()),
                attempts: 0,
                fbtrace_id: None,
                source: Some(source),
                // A nonce of its own: the receipt settles an order no copy has claimed, never
                // one that another delivery of it holds (that copy's outcome stands).
                nonce: Some(new_nonce()),
            };
            if !l.record(shard, vec![receipt], counts, now_ms).await {
                return Err(ApiError::UpstreamUnavailable);
            }
        }
        return Ok(json!({"ok": true, "sent": false, "event_id": key.event_id,
            "outcome": outcome.as_str(), "reason": reason}));
    }

    let nonce = new_nonce();
    let queued = QueuedEvent {
        tenant: tenant_id.to_string(),
        pixel_id: pixel_id.to_string(),
        event: Some(event.clone()),
        attempt: 0,
        nonce: nonce.clone(),
        counts: Vec::new(),
        source: Some(source),
        test_event_code: None,
        replay: false,
    };
    if queued.to_json().len() > delivery::MAX_MESSAGE_BYTES {
        return Err(ApiError::EventTooLarge {
            limit: delivery::MAX_MESSAGE_BYTES,
        });
    }
    // Webhooks reserve their claim synchronously (no lease: the consumer takes it): a
    // redelivery must be answered `duplicate` now, or take over a claim no one is working on
    // (claim rule 10: a beacon's copy of the order, a copy of its own whose attempt vanished).
    let claim = match &ledger {
        Some(l) => l
            .claim(
                shard,
                vec![ClaimItem {
                    key: key.clone(),
                    nonce: nonce.clone(),
                    source: Some(source),
                    replay: false,
                    counts,
                    carried,
                    paid,
                }],
                None,
                now_ms,
            )
            .await
            .pop()
            .unwrap_or(ClaimStatus::Unavailable),
        None => ClaimStatus::Unavailable,
    };
    match claim {
        ClaimStatus::Duplicate | ClaimStatus::Settled => {
            delivery::log_event(&event, Outcome::Duplicate, None, None, 0);
            return Ok(json!({"ok": true, "duplicate": true, "event_id": key.event_id}));
        }
        // Another copy of the event is being sent right now (claim rule 10): the platform
        // redelivers this one after it, and it finds the event settled, or takes it over if
        // that attempt failed or vanished.
        ClaimStatus::Busy { retry_secs } => {
            return Err(ApiError::PurchaseInFlight { retry_secs });
        }
        // Without the ledger the platform's redelivery is the safe retry. The claim may still
        // have been written after the Worker stopped waiting: it is given back, so the
        // redelivery is not answered `duplicate` for a reservation no message carries (if this
        // fails too, the reservation is abandoned after a minute: claim rule 7).
        ClaimStatus::Unavailable => {
            if let Some(l) = &ledger {
                l.release(&key, &nonce, None).await;
                return Err(ApiError::UpstreamUnavailable);
            }
        }
        _ => {}
    }
    if delivery::enqueue(env, &queued, 0).await {
        return Ok(json!({"ok": true, "queued": true, "event_id": key.event_id}));
    }
    // The queue refused it: deliver now through the same path (the reservation becomes a lease).
    let attempt = delivery::Attempt::direct(None);
    let result = delivery::deliver_pixel(cfg, env, tenant_id, pixel_id, &[queued], &attempt)
        .await
        .pop();
    match result {
        // Settled by another copy meanwhile (a cancellation, say): answered as a redelivery
        // is, not as sent by this one.
        Some(d) if d.reason.as_deref() == Some(ALREADY_SETTLED) => {
            Ok(json!({"ok": true, "duplicate": true, "event_id": key.event_id}))
        }
        Some(d) if d.outcome == Outcome::Sent => Ok(
            json!({"ok": true, "sent": true, "event_id": key.event_id, "fbtrace_id": d.fbtrace_id}),
        ),
        Some(d) if d.outcome.is_final() => Ok(
            json!({"ok": true, "sent": false, "event_id": key.event_id, "outcome": d.outcome.as_str(), "reason": d.reason}),
        ),
        _ => {
            // Neither the queue nor Meta took it: give the claim back so the redelivery is sent,
            // with this attempt's lease if it still holds one (its receipt was not written, or
            // its claim answered after it stopped waiting): no other attempt carries this copy.
            if let Some(l) = &ledger {
                l.release(&key, &nonce, Some(&attempt.token)).await;
            }
            Err(ApiError::UpstreamUnavailable)
        }
    }
}
