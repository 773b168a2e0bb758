//! Checkout/order webhooks → one `Purchase` per order, deduplicated against the browser's.
//!
//! Each platform module turns its payload into an [`Order`]; [`purchase_event`] turns any
//! `Order` into the CAPI event, hashing customer data with `normalize`. The browser's
//! thank-you page derives the same `event_id` from the same order id ([`event_id_for_order`]).
//!
//! Long on purpose: the order model and the one Purchase builder that every platform module shares.

pub mod lifecycle;
pub mod order;
pub mod shopify;
pub mod signature;
pub mod stripe;
pub mod woocommerce;

use crate::custom_data::Dropped;
use crate::event::{ServerEvent, UserData};
use crate::fbc::{fbc_click_id, fbc_for_click, fbclid_in_url, is_valid_fbp};
use crate::normalize::{self, Field};
use crate::privacy::{self, Consent, CustomerData, Modes, Verdict};
pub use lifecycle::{Channel, Kind, Refund, Stage};
use serde_json::{json, Map, Value};

/// The `event_id` of an order's Purchase, on both sides: the webhook and the thank-you page's
/// `capi('purchase', {order_id})`. No state is carried through checkout.
pub fn event_id_for_order(order_id: &str) -> String {
    capi_rules::event_id_for_order(order_id)
}

/// What a platform webhook means for us.
#[derive(Debug, Clone, PartialEq)]
pub enum Webhook {
    /// An order to report as a Purchase.
    Order(Box<Order>),
    /// A topic/event type we do not report (acknowledged so the platform does not retry it).
    Ignored { reason: &'static str },
}

/// A paid (or placed) order, platform-neutral. Customer fields are raw here; they are
/// normalized and hashed by [`purchase_event`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Order {
    pub order_id: String,
    pub value: f64,
    pub currency: String,
    /// When the order was placed, Unix seconds.
    pub created_at: Option<i64>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip: Option<String>,
    pub country: Option<String>,
    pub customer_id: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub fbp: Option<String>,
    pub fbc: Option<String>,
    /// A landing URL that may carry `fbclid` (Shopify `landing_site`).
    pub landing_url: Option<String>,
    /// The page the order names as its own, as given (generic webhook and Stripe metadata:
    /// `event_source_url`); [`purchase_event`] keeps it only if it is an http(s) URL.
    pub event_source_url: Option<String>,
    /// The shop's own origin as the order states it, `https://shop.example.com/` (Shopify:
    /// `order_status_url`'s origin). See [`fallback_source_url`] for the whole rule.
    pub shop_url: Option<String>,
    pub contents: Vec<LineItem>,
    /// The buyer's marketing consent as the shop recorded it with the order (cart attribute,
    /// order meta, Stripe metadata, generic body: `consent`, see [`meta_key_is`]).
    pub consent: Consent,
    /// A Global Privacy Control signal recorded with the order (`gpc`).
    pub gpc: bool,
    /// How far the order has come (placed, paid, cancelled, refunded); see `lifecycle`.
    pub stage: Stage,
    /// An order, a subscription renewal or a trial start.
    pub kind: Kind,
    /// Where it happened (online, a store, staff or the system, the phone).
    pub channel: Channel,
    /// A test order (Shopify `test: true`, Stripe `livemode: false`).
    pub test: bool,
    /// Refunds the payload names (each sent once with `REFUNDS = event`).
    pub refunds: Vec<Refund>,
    /// Shipping and tax within `value`, where the platform states them (`ORDER_VALUE = net`).
    pub shipping: Option<f64>,
    pub tax: Option<f64>,
    /// The subscription an invoice belongs to (Stripe `sub_…`).
    pub subscription_id: Option<String>,
    /// `new` or `returning`, from the platform's count of the customer's orders.
    pub customer_type: Option<&'static str>,
    /// Whether money was captured, when the payload says (`Some(false)`: authorized, pending or
    /// failed only): a cancellation of an uncaptured order is refunded as a whole.
    pub captured: Option<bool>,
    /// On a subscription's renewal: the id its first order's Purchase has (Stripe: the
    /// subscription's `order_id` metadata, else its id), for the first invoice paid after a
    /// free trial, which is that Purchase ([`lifecycle::after_trial`]).
    pub subscription_order_id: Option<String>,
}

/// `customer_type` from a count of the customer's orders, this one included.
pub fn customer_type(orders_count: Option<u64>) -> Option<&'static str> {
    match orders_count? {
        0 | 1 => Some("new"),
        _ => Some("returning"),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LineItem {
    pub id: String,
    pub quantity: u64,
    pub item_price: Option<f64>,
}

/// Why a webhook body could not become an order (400; the platform should not retry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadError(pub &'static str);

impl std::fmt::Display for PayloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Parses a verified webhook body as a JSON object.
pub fn json_object(body: &[u8]) -> Result<Map<String, Value>, PayloadError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(PayloadError("body must be a JSON object")),
        Err(_) => Err(PayloadError("body is not valid JSON")),
    }
}

/// A string field (numbers are accepted as their decimal text), trimmed, non-empty.
pub fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Unix seconds from an RFC 3339 / ISO 8601 timestamp as platforms and merchants write it:
/// `2024-05-01T12:34:56-04:00`, `…Z`, WooCommerce's zone-less GMT `2024-05-01T16:34:56`,
/// a space or lowercase `t` for the `T`, `/` between the date's parts, fractional seconds,
/// offsets as `+hh`, `+hhmm` or `+hh:mm` (with or without a space before them), a `UTC` or
/// `GMT` suffix, and RFC 9557 annotations (`…+02:00[Europe/Paris]`, ignored: the offset
/// decides). A time without an offset is UTC. Once respelled as RFC 3339 the `time` crate
/// reads it, so an impossible date (`2026-02-31`) or time (`24:00:00`) is refused.
pub fn iso8601_secs(s: &str) -> Option<i64> {
    let rfc3339 = as_rfc3339(s)?;
    time::OffsetDateTime::parse(&rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// A merchant's spelling of a timestamp (see [`iso8601_secs`]) respelled as RFC 3339; the
/// digits are left for the parser to check.
fn as_rfc3339(s: &str) -> Option<String> {
    let mut s = s.trim();
    // RFC 9557 suffixes: `[Europe/Paris]`, `[u-ca=gregory]`.
    while let Some(open) = s.strip_suffix(']').and_then(|r| r.rfind('[')) {
        s = s[..open].trim_end();
    }
    let (date, rest) = s.split_at_checked(10)?;
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let (time, rest) = rest.split_at_checked(8)?;
    let fraction = rest
        .strip_prefix('.')
        .map_or(0, |f| 1 + f.bytes().take_while(u8::is_ascii_digit).count());
    let (fraction, zone) = rest.split_at(fraction);
    let offset = match zone.trim_start() {
        "" | "Z" | "z" | "UTC" | "GMT" | "utc" | "gmt" => "Z".to_string(),
        z => {
            let (sign, hm) = (z.get(..1)?, z.get(1..)?);
            match hm.len() {
                2 => format!("{sign}{hm}:00"),
                4 => format!("{sign}{}:{}", hm.get(..2)?, hm.get(2..)?),
                _ => z.to_string(),
            }
        }
    };
    let date = date.replace('/', "-");
    Some(format!("{date}T{time}{fraction}{offset}"))
}

/// A nested field of a JSON object (`null` counts as absent).
pub fn pointer<'a>(o: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    rest.iter()
        .try_fold(o.get(*first)?, |v, k| v.get(*k))
        .filter(|v| !v.is_null())
}

/// An absolute http(s) URL with a host, at most 2,048 characters (as beacons are held to), as
/// the `url` crate reads it: `javascript:`, `data:` and relative URLs are not pages of a shop.
pub fn http_url(s: &str) -> Option<url::Url> {
    let s = s.trim();
    if s.len() > 2048 {
        return None;
    }
    url::Url::parse(s)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

/// A shop's origin as a page URL (`https://shop.example.com/`), from a URL or a bare host as
/// platforms send it (Shopify's `X-Shopify-Shop-Domain: shop.myshopify.com`); http(s) only.
/// Shopify's own shared hosts (`checkout.shopify.com` in older order status URLs) are not a
/// shop's.
pub fn shop_origin_url(s: &str) -> Option<String> {
    let s = s.trim();
    let url = if s.contains("://") {
        http_url(s)?
    } else {
        http_url(&format!("https://{s}/"))?
    };
    let host = url.host_str()?.trim_end_matches('.').to_ascii_lowercase();
    if host == "shopify.com" || host.ends_with(".shopify.com") {
        return None;
    }
    Some(format!("{}/", url.origin().ascii_serialization()))
}

/// What the Worker knows of a webhook delivery besides its body, for `event_source_url`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeliveryFacts<'a> {
    /// The shop as the delivery's headers name it: Shopify `X-Shopify-Shop-Domain`,
    /// WooCommerce `X-WC-Webhook-Source`. Stripe names none that is reliable.
    pub shop_header: Option<&'a str>,
    /// The tenant's first configured host (none for the single-shop default).
    pub tenant_host: Option<&'a str>,
    /// The origin the webhook was posted to (`https://hooks.agency.example`).
    pub request_origin: &'a str,
}

/// The `event_source_url` of an order's Purchase when the order names no page of its own.
///
/// The whole rule, first that is an http(s) URL: the order's own page (`event_source_url`),
/// the shop's origin as the order states it (`shop_url`) — both applied by [`purchase_event`]
/// — then, from here, the shop as the delivery's headers name it, the tenant's first host
/// (`https://{host}/`), and only then the origin the webhook was posted to. An agency that
/// receives every shop's webhooks on one host must not report its own host as the page of
/// every shop's purchases.
pub fn fallback_source_url(facts: &DeliveryFacts<'_>) -> String {
    facts
        .shop_header
        .and_then(shop_origin_url)
        .or_else(|| facts.tenant_host.and_then(shop_origin_url))
        .unwrap_or_else(|| format!("{}/", facts.request_origin.trim_end_matches('/')))
}

/// An order's `Purchase` as Meta would receive it, what was dropped on the way, and whether
/// privacy rules let it be sent at all.
#[derive(Debug, Clone)]
pub struct PurchaseEvent {
    pub event: ServerEvent,
    pub dropped: Vec<Dropped>,
    /// `Some(reason)` when the order's consent (or GPC) says it must not be sent.
    pub ignored: Option<&'static str>,
}

/// The `Purchase` event Meta receives for an order, with what was dropped on the way.
///
/// `event_time` is the order's time, never later than now (a webhook redelivered hours later
/// still reports the order, not the redelivery). An order older than Meta's 7 days keeps its
/// time: delivery gives it an `expired` receipt rather than sending a misdated event. `action_source` is
/// `website` when the platform recorded the buyer's browser (user agent), else `other`: Meta
/// requires a user agent on website events. `event_source_url` is the order's own page, else
/// its shop's origin, else `fallback_url` (from [`fallback_source_url`]).
pub fn purchase_event(
    order: &Order,
    fallback_url: &str,
    now_ms: u64,
    modes: &Modes,
) -> PurchaseEvent {
    let now = (now_ms / 1000) as i64;
    let mut dropped = Vec::new();
    let mut user_data = UserData::default();
    let (ignored, ldu) = match privacy::verdict(modes, order.consent, order.gpc) {
        Verdict::Relay { ldu } => (None, ldu),
        Verdict::Ignore(reason) => (Some(reason), None),
    };
    let country = order.country.as_deref();
    let hashed_fields = [
        (Field::Em, &order.email),
        (Field::Ph, &order.phone),
        (Field::Fn, &order.first_name),
        (Field::Ln, &order.last_name),
        (Field::Ct, &order.city),
        (Field::St, &order.state),
        (Field::Zp, &order.zip),
        (Field::Country, &order.country),
        (Field::ExternalId, &order.customer_id),
    ];
    for (field, value) in hashed_fields {
        let Some(v) = value.as_deref() else { continue };
        if modes.customer_data == CustomerData::Off {
            // Data controls off: contact fields never reach normalization.
            dropped.push(Dropped {
                field: field.key().into(),
                reason: privacy::DATA_CONTROLS_OFF,
            });
            continue;
        }
        match normalize::hashed(field, v, country) {
            Ok(h) => *user_data.hashed_mut(field) = Some(h),
            Err(reason) => dropped.push(Dropped {
                field: field.key().into(),
                reason: reason.as_str(),
            }),
        }
    }
    // The buyer's address as the Parameter Builder chooses one: public only, no port.
    user_data.client_ip_address = order
        .client_ip
        .as_deref()
        .and_then(|ip| crate::website::client_ip_address(&[ip]));
    user_data.client_user_agent = order
        .user_agent
        .clone()
        .map(|ua| ua.chars().take(512).collect());
    user_data.fbp = order.fbp.clone().filter(|v| is_valid_fbp(v));
    if order.fbp.is_some() && user_data.fbp.is_none() {
        dropped.push(Dropped {
            field: "fbp".into(),
            reason: "invalid_fbp",
        });
    }
    let created_ms = order
        .created_at
        .map_or(now_ms, |t| (t.max(0) as u64) * 1000);
    user_data.fbc = match order.fbc.clone().filter(|v| fbc_click_id(v).is_some()) {
        Some(fbc) => Some(fbc),
        // Failing a carried cookie, the click id of the landing URL (fbclid, first observed then).
        None => order
            .landing_url
            .as_deref()
            .and_then(fbclid_in_url)
            .and_then(|click| fbc_for_click(click, 1, created_ms, None)),
    };
    if order.fbc.is_some() && order.fbc.as_deref().and_then(fbc_click_id).is_none() {
        dropped.push(Dropped {
            field: "fbc".into(),
            reason: "invalid_fbc",
        });
    }

    let mut custom_data = Map::new();
    custom_data.insert("value".into(), json!(order.value));
    custom_data.insert("currency".into(), json!(order.currency));
    custom_data.insert("order_id".into(), json!(order.order_id));
    if let Some(t) = order.customer_type {
        custom_data.insert("customer_type".into(), json!(t));
    }
    if !order.contents.is_empty() {
        let contents: Vec<Value> = order
            .contents
            .iter()
            .map(|li| {
                let mut c = json!({"id": li.id, "quantity": li.quantity});
                if let Some(p) = li.item_price {
                    c["item_price"] = json!(p);
                }
                c
            })
            .collect();
        custom_data.insert(
            "content_ids".into(),
            json!(order
                .contents
                .iter()
                .map(|li| li.id.clone())
                .collect::<Vec<_>>()),
        );
        custom_data.insert("contents".into(), Value::Array(contents));
        custom_data.insert("content_type".into(), json!("product"));
        custom_data.insert(
            "num_items".into(),
            json!(order.contents.iter().map(|li| li.quantity).sum::<u64>()),
        );
    }

    // Only an http(s) URL with an ASCII host is a page of the shop; anything else is dropped
    // (and said so), and the fallback stands in.
    let page_url = order
        .event_source_url
        .as_deref()
        .and_then(http_url)
        .map(String::from);
    if order.event_source_url.is_some() && page_url.is_none() {
        dropped.push(Dropped {
            field: "event_source_url".into(),
            reason: "invalid_url",
        });
    }
    let event_time = order.created_at.unwrap_or(now).min(now);
    let website = user_data.client_user_agent.is_some();
    let mut event = ServerEvent {
        event_name: "Purchase".into(),
        event_time,
        event_id: event_id_for_order(&order.order_id),
        action_source: if website { "website" } else { "other" }.into(),
        event_source_url: Some(
            page_url
                .or_else(|| order.shop_url.clone())
                .unwrap_or_else(|| fallback_url.to_string()),
        ),
        referrer_url: None,
        user_data,
        custom_data,
        data_processing_options: None,
        data_processing_options_country: None,
        data_processing_options_state: None,
    };
    event.set_ldu(ldu);
    PurchaseEvent {
        event,
        dropped,
        ignored,
    }
}

/// Whether a metadata key names `canonical` (`fbp`, `fbc`, `consent`, `gpc`, …) as merchants
/// spell it: any case, with or without leading underscores, with or without a vendor prefix
/// (`capi_`, `meta_`, `facebook_`, `fb_`, `marketing_`): `_fbp`, `FBP`, `meta_fbp`,
/// `_capi_consent`, `marketing_consent` all match.
pub fn meta_key_is(key: &str, canonical: &str) -> bool {
    const PREFIXES: &[&str] = &["capi_", "capi-", "meta_", "facebook_", "fb_", "marketing_"];
    let k = key.trim().trim_start_matches('_');
    if k.eq_ignore_ascii_case(canonical) {
        return true;
    }
    PREFIXES.iter().any(|p| {
        k.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p))
            && k[p.len()..]
                .trim_start_matches('_')
                .eq_ignore_ascii_case(canonical)
    })
}

/// The value under a key naming `canonical` (see [`meta_key_is`]) in a JSON object.
pub fn meta_value<'a>(obj: Option<&'a Map<String, Value>>, canonical: &str) -> Option<&'a Value> {
    obj?.iter()
        .find(|(k, v)| meta_key_is(k, canonical) && !v.is_null())
        .map(|(_, v)| v)
}

/// The `value` of the entry whose `key_field` names `canonical` (see [`meta_key_is`]) in a list
/// of `{key_field, value}` objects (Shopify `note_attributes` `{name, value}`, WooCommerce
/// `meta_data` `{key, value}`).
pub fn keyed_value(list: Option<&Value>, key_field: &str, canonical: &str) -> Option<String> {
    list?
        .as_array()?
        .iter()
        .filter(|e| {
            e.get(key_field)
                .and_then(Value::as_str)
                .is_some_and(|k| meta_key_is(k, canonical))
        })
        .find_map(|e| text(e.get("value")))
}

/// Line items of a payload: the id is the first of `id_keys` present (an id of `0` counts as
/// absent, as WooCommerce's `variation_id` of simple products), quantity defaults to 1.
pub fn line_items(items: Option<&Value>, id_keys: &[&str], price_key: &str) -> Vec<LineItem> {
    let Some(items) = items.and_then(Value::as_array) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|li| {
            let id = id_keys
                .iter()
                .find_map(|k| text(li.get(*k)).filter(|id| id != "0"))?;
            Some(LineItem {
                id,
                quantity: li.get("quantity").and_then(Value::as_u64).unwrap_or(1),
                item_price: amount(li.get(price_key)),
            })
        })
        .collect()
}

/// Reads a monetary amount given as a JSON number or decimal string (`"39.90"`).
pub fn amount(v: Option<&Value>) -> Option<f64> {
    crate::custom_data::amount(v?)
}

/// ISO 4217 currency, uppercase, or a payload error.
pub fn currency(v: Option<&Value>) -> Result<String, PayloadError> {
    v.and_then(crate::custom_data::currency)
        .ok_or(PayloadError("currency is missing or not an ISO 4217 code"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASHED: Modes = Modes {
        customer_data: CustomerData::Hashed,
        consent: privacy::ConsentMode::Optional,
        gpc: privacy::GpcMode::Ldu,
        ldu: privacy::LduMode::Off,
    };

    #[test]
    fn iso_timestamps_parse_with_offsets() {
        assert_eq!(iso8601_secs("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            iso8601_secs("2024-05-01T12:34:56-04:00"),
            Some(1_714_581_296)
        );
        assert_eq!(iso8601_secs("2024-05-01T16:34:56"), Some(1_714_581_296));
        assert_eq!(
            iso8601_secs("2024-05-01T16:34:56.123+00:00"),
            Some(1_714_581_296)
        );
        assert_eq!(iso8601_secs("yesterday"), None);
        assert_eq!(iso8601_secs("2024-13-01T00:00:00Z"), None);
        assert_eq!(
            iso8601_secs("2024-05-01T22:04:56.123456789+05:30"),
            Some(1_714_581_296)
        );
        assert_eq!(iso8601_secs("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        // RFC 3339 allows a leap second: the last instant of its minute.
        assert_eq!(iso8601_secs("2016-12-31T23:59:60Z"), Some(1_483_228_799));
    }

    #[test]
    fn impossible_dates_and_times_are_refused() {
        for bad in [
            "2026-02-31T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2024-04-31T00:00:00+02:00",
            "2024-05-00T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T16:60:00Z",
            "2024-05-01T16:34:60Z",
        ] {
            assert_eq!(iso8601_secs(bad), None, "{bad}");
        }
    }

    #[test]
    fn merchants_timestamps_parse_with_other_separators_and_annotations() {
        let t = Some(1_714_581_296);
        for s in [
            "2024-05-01 16:34:56",
            "2024/05/01 16:34:56 UTC",
            "2024-05-01t16:34:56z",
            "2024-05-01T12:34:56 -0400",
            "2024-05-01T12:34:56-04",
            "2024-05-01T18:34:56+02:00[Europe/Paris]",
            "2024-05-01T16:34:56.5Z[UTC][u-ca=gregory]",
        ] {
            assert_eq!(iso8601_secs(s), t, "{s}");
        }
        for bad in [
            "2024-05-01T16:34:56+2",
            "2024-05-01T16:34:56 CEST",
            "2024-05-01T16:34:56+25:00",
        ] {
            assert_eq!(iso8601_secs(bad), None, "{bad}");
        }
    }

    #[test]
    fn metadata_keys_are_matched_as_merchants_spell_them() {
        for k in [
            "_fbp",
            "fbp",
            "FBP",
            "meta_fbp",
            "_capi_fbp",
            "facebook_fbp",
        ] {
            assert!(meta_key_is(k, "fbp"), "{k}");
        }
        for k in ["fbpx", "_fbc", "my_fbp", ""] {
            assert!(!meta_key_is(k, "fbp"), "{k}");
        }
        assert!(meta_key_is("_capi_consent", "consent"));
        assert!(meta_key_is("marketing_consent", "consent"));
    }

    #[test]
    fn the_event_id_is_derived_from_the_order_id() {
        assert_eq!(event_id_for_order(" 5123456789 "), "purchase:5123456789");
    }

    #[test]
    fn an_order_without_a_browser_is_not_a_website_event() {
        let order = Order {
            order_id: "1".into(),
            value: 5.0,
            currency: "EUR".into(),
            email: Some("a@b.co".into()),
            ..Order::default()
        };
        let e = purchase_event(&order, "https://shop.test/", 1_763_000_000_000, &HASHED).event;
        assert_eq!(e.action_source, "other");
        let order = Order {
            user_agent: Some("Mozilla/5.0".into()),
            ..order
        };
        assert_eq!(
            purchase_event(&order, "https://shop.test/", 1_763_000_000_000, &HASHED)
                .event
                .action_source,
            "website"
        );
    }

    #[test]
    fn an_orders_page_is_its_own_or_its_shops_never_the_webhook_host() {
        let agency = DeliveryFacts {
            request_origin: "https://hooks.agency.test",
            ..DeliveryFacts::default()
        };
        // The delivery's header, then the tenant's first host, then the request's origin.
        for (facts, want) in [
            (
                DeliveryFacts {
                    shop_header: Some("brand-a.myshopify.com"),
                    tenant_host: Some("www.brand-a.test"),
                    ..agency
                },
                "https://brand-a.myshopify.com/",
            ),
            (
                DeliveryFacts {
                    shop_header: Some("https://brand-b.test/shop/"),
                    ..agency
                },
                "https://brand-b.test/",
            ),
            (
                DeliveryFacts {
                    shop_header: Some("javascript:alert(1)"),
                    tenant_host: Some("www.brand-a.test"),
                    ..agency
                },
                "https://www.brand-a.test/",
            ),
            (agency, "https://hooks.agency.test/"),
        ] {
            assert_eq!(fallback_source_url(&facts), want, "{facts:?}");
        }
        // The order's own page, then its shop's origin, win over the fallback.
        let order = Order {
            order_id: "1".into(),
            shop_url: shop_origin_url(
                "https://www.brand-a.test/548380009/orders/b19/authenticate?key=secret",
            ),
            ..Order::default()
        };
        let e = purchase_event(&order, "https://hooks.agency.test/", 1, &HASHED).event;
        assert_eq!(
            e.event_source_url.as_deref(),
            Some("https://www.brand-a.test/")
        );
        let order = Order {
            event_source_url: Some("https://www.brand-a.test/thanks".into()),
            ..order
        };
        let e = purchase_event(&order, "https://hooks.agency.test/", 1, &HASHED).event;
        assert_eq!(
            e.event_source_url.as_deref(),
            Some("https://www.brand-a.test/thanks")
        );
    }

    #[test]
    fn only_http_urls_name_a_shop() {
        assert_eq!(shop_origin_url("ftp://shop.test/"), None);
        assert_eq!(shop_origin_url("data:text/html,x"), None);
        assert_eq!(shop_origin_url(""), None);
        assert_eq!(
            shop_origin_url("https://checkout.shopify.com/1/orders/x"),
            None
        );
        assert_eq!(
            shop_origin_url("HTTP://Shop.Test:8080/x?y#z").as_deref(),
            Some("http://shop.test:8080/")
        );
        assert!(http_url("javascript:alert(1)").is_none());
        assert!(http_url("/thanks").is_none());
        assert!(http_url(&format!("https://s.test/{}", "a".repeat(2048))).is_none());
        // Hosts are read as browsers and platforms send them, in ASCII (punycode): the Worker
        // carries no Unicode IDNA tables (idna_adapter 1.0, see core/Cargo.toml).
        assert_eq!(
            shop_origin_url("https://xn--mnchen-3ya.example/danke").as_deref(),
            Some("https://xn--mnchen-3ya.example/")
        );
        assert!(http_url("https://münchen.example/danke").is_none());
    }

    #[test]
    fn an_order_page_that_is_not_read_is_dropped_and_said_so() {
        for (given, dropped) in [
            ("https://münchen.example/danke", true),
            ("javascript:alert(1)", true),
            ("/thanks", true),
            ("https://xn--mnchen-3ya.example/danke", false),
        ] {
            let order = Order {
                order_id: "1".into(),
                event_source_url: Some(given.into()),
                ..Order::default()
            };
            let out = purchase_event(&order, "https://shop.test/", 1, &HASHED);
            let said = out
                .dropped
                .iter()
                .any(|d| d.field == "event_source_url" && d.reason == "invalid_url");
            assert_eq!(said, dropped, "{given}");
            let want = if dropped { "https://shop.test/" } else { given };
            assert_eq!(out.event.event_source_url.as_deref(), Some(want), "{given}");
        }
    }

    #[test]
    fn an_orders_private_address_is_not_the_buyers() {
        for (ip, want) in [
            ("10.0.0.5", None),
            ("127.0.0.1", None),
            ("8.8.8.8", Some("8.8.8.8")),
            ("2a00:1450:4001::1", Some("2a00:1450:4001::1")),
        ] {
            let order = Order {
                order_id: "1".into(),
                client_ip: Some(ip.into()),
                ..Order::default()
            };
            let e = purchase_event(&order, "https://shop.test/", 1, &HASHED).event;
            assert_eq!(e.user_data.client_ip_address.as_deref(), want, "{ip}");
        }
    }

    #[test]
    fn a_landing_fbclid_becomes_fbc_when_no_cookie_was_carried() {
        let order = Order {
            order_id: "1".into(),
            landing_url: Some("/products/x?fbclid=IwAR_x1".into()),
            created_at: Some(1_700_000_000),
            ..Order::default()
        };
        let e = purchase_event(&order, "https://shop.test/", 1_700_000_100_000, &HASHED).event;
        assert_eq!(
            e.user_data.fbc.as_deref(),
            Some("fb.1.1700000000000.IwAR_x1")
        );
    }
}
