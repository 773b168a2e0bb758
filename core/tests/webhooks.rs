//! Webhook signatures (known-answer vectors in `tests/data/webhook_signatures.json`) and the
//! mapping of each platform's documented payload (fixtures in `tests/fixtures/webhooks/`) to
//! the Purchase Meta receives.

use capi_core::hash::sha256_hex;
use capi_core::meta_rules::check_event;
use capi_core::privacy::{CustomerData, Modes};
use capi_core::webhook::signature::{
    verify_order, verify_shopify, verify_stripe, verify_woocommerce,
};
use capi_core::webhook::{self, purchase_event, Order, PurchaseEvent, Webhook};
use serde_json::Value;

const HASHED: Modes = Modes {
    customer_data: CustomerData::Hashed,
    consent: capi_core::privacy::ConsentMode::Optional,
    gpc: capi_core::privacy::GpcMode::Ldu,
    ldu: capi_core::privacy::LduMode::Off,
};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../tests/fixtures/webhooks/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

#[test]
fn signature_vectors() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/webhook_signatures.json"
    ))
    .expect("vectors");
    let cases: Vec<Value> = serde_json::from_str(&text).expect("json");
    for c in &cases {
        let s = |k: &str| c.get(k).and_then(Value::as_str);
        let body = s("body").expect("body").as_bytes();
        let (header, secrets) = (s("header"), s("secrets").unwrap_or(""));
        let got = match s("scheme").expect("scheme") {
            "shopify" => verify_shopify(body, header, secrets),
            "woocommerce" => verify_woocommerce(body, header, secrets),
            "stripe" => verify_stripe(body, header, secrets, c["now"].as_i64().expect("now")),
            "order" => verify_order(body, header, secrets),
            other => panic!("unknown scheme {other}"),
        };
        let label = s("source").unwrap_or_default();
        assert_eq!(
            got.is_ok(),
            c["valid"].as_bool().expect("valid"),
            "{label}: {got:?}"
        );
        if let Some(err) = s("error") {
            assert_eq!(got.map_err(|e| e.as_str()), Err(err), "{label}");
        }
    }
}

fn order(w: Webhook) -> Order {
    match w {
        Webhook::Order(o) => *o,
        Webhook::Ignored { reason } => panic!("ignored: {reason}"),
    }
}

/// 2026-11-23T13:20:00Z.
const NOW_MS: u64 = 1_795_440_000_000;

#[test]
fn a_shopify_order_from_a_browser_with_gpc_gets_limited_data_use() {
    // The shim writes `_capi_gpc` next to `_fbp` in the cart's attributes (`GPC = ldu`).
    let mut body: Value =
        serde_json::from_slice(&fixture("shopify-orders-create.json")).expect("json");
    let without = order(
        webhook::shopify::webhook("orders/create", body.to_string().as_bytes()).expect("parses"),
    );
    let e = purchase_event(&without, "https://shop.test/", NOW_MS, &HASHED).event;
    assert_eq!(e.data_processing_options, None);
    body["note_attributes"]
        .as_array_mut()
        .expect("note attributes")
        .push(serde_json::json!({"name": "_capi_gpc", "value": "1"}));
    let with = order(
        webhook::shopify::webhook("orders/create", body.to_string().as_bytes()).expect("parses"),
    );
    let e = purchase_event(&with, "https://shop.test/", NOW_MS, &HASHED).event;
    assert_eq!(e.data_processing_options, Some(vec!["LDU".to_string()]));
    assert_eq!(
        (
            e.data_processing_options_country,
            e.data_processing_options_state
        ),
        (Some(0), Some(0))
    );
}

#[test]
fn shopify_order_becomes_a_purchase() {
    let o = order(
        webhook::shopify::webhook("orders/create", &fixture("shopify-orders-create.json"))
            .expect("parses"),
    );
    let PurchaseEvent {
        event: e, dropped, ..
    } = purchase_event(&o, "https://shop.test/", NOW_MS, &HASHED);
    // Shopify's documented sample has a Canadian postcode in a US address: dropped, not hashed.
    let reasons: Vec<_> = dropped
        .iter()
        .map(|d| (d.field.as_str(), d.reason))
        .collect();
    assert_eq!(reasons, [("zp", "invalid_zip")]);
    assert_eq!(e.event_id, "purchase:820982911946154508");
    assert_eq!(e.event_time, 1795435965, "2026-11-23T07:12:45-05:00");
    assert_eq!(e.action_source, "website");
    let u = &e.user_data;
    assert_eq!(
        u.em.as_deref(),
        Some(sha256_hex("jon.snow@example.com").as_str())
    );
    assert_eq!(
        u.ph.as_deref(),
        Some(sha256_hex("15555555555").as_str()),
        "billing phone gets the US code"
    );
    assert_eq!(u.st.as_deref(), Some(sha256_hex("ky").as_str()));
    assert_eq!(u.country.as_deref(), Some(sha256_hex("us").as_str()));
    assert_eq!(
        u.external_id.as_deref(),
        Some(sha256_hex("115310627314723954").as_str())
    );
    assert_eq!(u.client_ip_address.as_deref(), Some("198.51.100.23"));
    assert_eq!(u.fbp.as_deref(), Some("fb.1.1763900000000.1234567890"));
    assert_eq!(
        u.fbc.as_deref(),
        Some("fb.1.1795435965000.IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgE")
    );
    assert_eq!(e.custom_data["value"], 403.0);
    assert_eq!(e.custom_data["currency"], "USD");
    assert_eq!(
        e.custom_data["content_ids"],
        serde_json::json!(["808950810", "49148385"])
    );
    assert_eq!(e.custom_data["num_items"], 2);
    assert_eq!(
        check_event(
            &serde_json::to_value(&e).expect("json"),
            (NOW_MS / 1000) as i64
        ),
        Ok(())
    );
    assert!(matches!(
        webhook::shopify::webhook("products/update", b"{}"),
        Ok(Webhook::Ignored { .. })
    ));
}

#[test]
fn woocommerce_order_becomes_a_purchase() {
    let o = order(
        webhook::woocommerce::webhook("order.created", &fixture("woocommerce-order.json"))
            .expect("parses"),
    );
    let e = purchase_event(&o, "https://shop.test/", NOW_MS, &HASHED).event;
    assert_eq!(e.event_id, "purchase:727");
    let u = &e.user_data;
    assert_eq!(
        u.ph.as_deref(),
        Some(sha256_hex("33612345678").as_str()),
        "FR national number gets +33"
    );
    assert_eq!(
        u.first_name.as_deref(),
        Some(sha256_hex("marieanne").as_str())
    );
    assert_eq!(u.ct.as_deref(), Some(sha256_hex("saintétienne").as_str()));
    assert_eq!(u.zp.as_deref(), Some(sha256_hex("42000").as_str()));
    assert_eq!(u.st, None, "empty state is not sent");
    assert_eq!(u.client_ip_address.as_deref(), Some("2001:db8::42"));
    assert_eq!(u.fbc.as_deref(), Some("fb.1.1763901111000.IwAR_woo_click"));
    assert_eq!(
        e.custom_data["content_ids"],
        serde_json::json!(["93", "23"])
    );
    assert_eq!(e.custom_data["num_items"], 3);
    assert!(webhook::woocommerce::is_ping(b"webhook_id=12"));
    let pending = String::from_utf8(fixture("woocommerce-order.json"))
        .expect("utf8")
        .replace("\"processing\"", "\"pending\"");
    assert!(matches!(
        webhook::woocommerce::webhook("order.created", pending.as_bytes()),
        Ok(Webhook::Ignored { .. })
    ));
}

#[test]
fn stripe_session_becomes_a_purchase_in_major_units() {
    let o = order(
        webhook::stripe::webhook(&fixture("stripe-checkout-session-completed.json"))
            .expect("parses"),
    );
    let e = purchase_event(&o, "https://shop.test/", NOW_MS, &HASHED).event;
    assert_eq!(e.event_id, "purchase:order-5001");
    assert_eq!(e.custom_data["value"], 4990.0, "JPY has no minor unit");
    assert_eq!(e.custom_data["currency"], "JPY");
    assert_eq!(
        e.user_data.first_name.as_deref(),
        Some(sha256_hex("hanako").as_str())
    );
    assert_eq!(
        e.user_data.ln.as_deref(),
        Some(sha256_hex("yamada").as_str())
    );
    assert_eq!(
        e.user_data.ph.as_deref(),
        Some(sha256_hex("819012345678").as_str())
    );
    assert_eq!(
        e.user_data.zp.as_deref(),
        Some(sha256_hex("1500041").as_str())
    );
    assert_eq!(e.action_source, "website", "UA carried in metadata");
    assert_eq!(e.event_time, 1_795_430_000);
}

#[test]
fn generic_order_becomes_a_purchase() {
    let o = order(webhook::order::webhook(&fixture("order.json")).expect("parses"));
    let e = purchase_event(&o, "https://shop.test/", NOW_MS, &HASHED).event;
    assert_eq!(e.event_id, "purchase:A-1001");
    assert_eq!(
        e.user_data.ph.as_deref(),
        Some(sha256_hex("447700900123").as_str())
    );
    assert_eq!(
        e.user_data.ln.as_deref(),
        Some(sha256_hex("oneill").as_str())
    );
    assert_eq!(
        e.user_data.country.as_deref(),
        Some(sha256_hex("gb").as_str())
    );
    assert_eq!(
        e.event_source_url.as_deref(),
        Some("https://shop.example.co.uk/checkout/thank-you")
    );
    assert!(
        webhook::order::webhook(b"{\"order_id\":\"1\",\"value\":-1,\"currency\":\"EUR\"}").is_err()
    );
}

#[test]
fn each_lifecycle_topic_maps_to_its_stage_refunds_and_kind() {
    use webhook::{Kind, Stage};
    let shopify = |topic: &str, name: &str| {
        order(webhook::shopify::webhook(topic, &fixture(name)).expect("parses"))
    };
    let r = shopify("refunds/create", "shopify-refunds-create.json");
    assert_eq!(
        (r.order_id.as_str(), r.stage, r.currency.as_str()),
        ("820982911946154508", Stage::RefundOnly, "USD")
    );
    assert_eq!(
        (r.refunds[0].id.as_str(), r.refunds[0].amount),
        ("509562969", 41.94),
        "the successful refund transaction, not the line subtotal"
    );
    // A shop selling in several currencies: a USD shop whose customer paid (and is refunded) in
    // EUR. Shopify's refund transactions are in the customer's money: the refund event keeps
    // the amount with its own currency, whether it comes alone or in an order's `refunds`.
    let mut multi: Value =
        serde_json::from_slice(&fixture("shopify-refunds-create.json")).expect("json");
    for t in multi["transactions"].as_array_mut().into_iter().flatten() {
        t["currency"] = "EUR".into();
        t["amount"] = "38.00".into();
    }
    // A transaction in another currency is not added to the refund's amount.
    let in_usd = serde_json::json!({"kind": "refund", "status": "success", "amount": "41.94", "currency": "USD"});
    multi["transactions"]
        .as_array_mut()
        .expect("transactions")
        .push(in_usd);
    let m = order(
        webhook::shopify::webhook("refunds/create", multi.to_string().as_bytes()).expect("parses"),
    );
    assert_eq!(
        (m.currency.as_str(), m.refunds[0].amount),
        ("EUR", 38.0),
        "alone: the refund's own money"
    );
    let mut cancelled: Value =
        serde_json::from_slice(&fixture("shopify-orders-cancelled.json")).expect("json");
    cancelled["presentment_currency"] = "EUR".into();
    for t in cancelled["refunds"][0]["transactions"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        t["currency"] = "EUR".into();
        t["amount"] = "370.00".into();
    }
    let c = order(
        webhook::shopify::webhook("orders/cancelled", cancelled.to_string().as_bytes())
            .expect("parses"),
    );
    assert_eq!(c.currency, "USD", "the order is in the shop's money");
    let settings = webhook::lifecycle::OrderSettings::parse(None, Some("event"), None, None, None)
        .expect("settings");
    let plan = webhook::lifecycle::plan(
        &c,
        &settings,
        webhook::lifecycle::TenantMode::Live,
        "https://shop.test/",
        NOW_MS,
        &HASHED,
    );
    let refunded = &plan.refunds[0].event.custom_data;
    assert_eq!(
        (refunded["value"].as_f64(), refunded["currency"].as_str()),
        (Some(370.0), Some("EUR")),
        "in an order's refunds: the refund's money, not 370 USD"
    );
    // A return that refunded no money names no currency either: acknowledged, nothing sent.
    let mut nothing: Value =
        serde_json::from_slice(&fixture("shopify-refunds-create.json")).expect("json");
    nothing["transactions"] = Value::Array(Vec::new());
    nothing["refund_line_items"] = Value::Array(Vec::new());
    assert!(matches!(
        webhook::shopify::webhook("refunds/create", nothing.to_string().as_bytes()),
        Ok(Webhook::Ignored {
            reason: "refund_of_nothing"
        })
    ));
    let c = shopify("orders/cancelled", "shopify-orders-cancelled.json");
    assert_eq!(c.stage, Stage::Cancelled);
    assert_eq!(
        (c.refunds[0].id.as_str(), c.refunds[0].amount),
        ("509562970", 403.0)
    );
    assert!(
        c.email.is_some(),
        "a cancellation carries the order's customer"
    );
    assert_eq!(
        shopify("orders/create", "shopify-orders-create.json").stage,
        Stage::Paid,
        "financial_status paid"
    );
    // Shopify signs the body, not the topic header: a placed order's body re-posted under
    // another topic is that placed order again, neither cancelled nor paid.
    let mut placed: Value =
        serde_json::from_slice(&fixture("shopify-orders-create.json")).expect("json");
    placed["financial_status"] = "pending".into();
    for topic in ["orders/cancelled", "orders/paid", "orders/create"] {
        let o =
            order(webhook::shopify::webhook(topic, placed.to_string().as_bytes()).expect("parses"));
        assert_eq!(o.stage, Stage::Created, "{topic}");
    }
    let w = order(
        webhook::woocommerce::webhook("order.updated", &fixture("woocommerce-order-refunded.json"))
            .expect("parses"),
    );
    assert_eq!(w.stage, Stage::Cancelled);
    assert_eq!(
        (w.refunds[0].id.as_str(), w.refunds[0].amount),
        ("728", 29.35)
    );
    let stripe = |name: &str| order(webhook::stripe::webhook(&fixture(name)).expect("parses"));
    let ch = stripe("stripe-charge-refunded.json");
    assert_eq!(
        (ch.order_id.as_str(), ch.stage),
        ("order-5001", Stage::RefundOnly)
    );
    assert_eq!(
        (ch.refunds[0].id.as_str(), ch.refunds[0].amount),
        ("ch_3QGxZA2eZvKYlo2C1abcdEFG@1500", 1500.0)
    );
    let pi = stripe("stripe-payment-intent-succeeded.json");
    assert_eq!(
        (pi.order_id.as_str(), pi.value, pi.stage),
        ("order-5001", 4990.0, Stage::Paid)
    );
    let first = stripe("stripe-invoice-paid.json");
    assert_eq!(
        (first.order_id.as_str(), first.kind, first.value),
        ("sub_1QHa0b2eZvKYlo2Cmonthly", Kind::Purchase, 12.0)
    );
    let renewal = stripe("stripe-invoice-paid-renewal.json");
    assert_eq!(
        (renewal.order_id.as_str(), renewal.kind),
        ("in_1QJr7c2eZvKYlo2Crenew002", Kind::Renewal)
    );
    assert_eq!(
        renewal.subscription_id.as_deref(),
        Some("sub_1QHa0b2eZvKYlo2Cmonthly")
    );
    assert_eq!(
        (
            renewal.subscription_order_id.as_deref(),
            first.subscription_order_id.as_deref()
        ),
        (Some("sub_1QHa0b2eZvKYlo2Cmonthly"), None),
        "a renewal names its subscription's first order, the first order does not"
    );
    assert!(matches!(
        webhook::stripe::webhook(&fixture("stripe-checkout-session-expired.json")),
        Ok(Webhook::Ignored {
            reason: "session_expired"
        })
    ));
    assert!(
        !stripe("stripe-checkout-session-completed.json").test,
        "livemode: true"
    );
}
