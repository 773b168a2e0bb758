//! The life of an order after its webhook: which event makes the Purchase (`PURCHASE_ON`), test
//! and store orders, cancellations and refunds (`REFUNDS`), subscription renewals (`RENEWALS`)
//! and what the order's `value` counts (`ORDER_VALUE`). [`plan`] turns one verified webhook into
//! what the Worker must do: at most one event to claim and send, whether the order's Purchase
//! must be held back (a cancellation), and the refund events to send once the Purchase is known
//! to be delivered. The ledger decides the rest (`capi_core::claim::purchase_state`).

use super::{event_id_for_order, purchase_event, Order, PurchaseEvent};
use crate::privacy::{pick, InvalidSetting, Modes};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The custom event a refund (or a cancellation after delivery) is sent as: Meta has no refund
/// event and refuses negative values.
pub const REFUND_EVENT: &str = "OrderRefunded";
/// A subscription's trial start, Meta's standard event.
pub const TRIAL_EVENT: &str = "StartTrial";
/// The event name of the ledger's marks: rows no event of Meta's has, which the webhooks write
/// to remember what they saw (a trial start, the invoice that ended it), never counted as
/// events. Its reasons: [`TRIAL_STARTED`] (`trial:<subscription>`) and
/// [`FIRST_PAID_AFTER_TRIAL`] (`renewal:<invoice id>`).
pub const MARK_EVENT: &str = "capi_mark";
/// A trial start this version of the Worker saw: only its subscription's first paid invoice
/// after it can be the subscription's Purchase ([`after_trial`]).
pub const TRIAL_STARTED: &str = "trial_started";
/// An invoice that is the first paid after a free trial, sent as the subscription's Purchase
/// ([`after_trial`]): its redeliveries are that Purchase again, never a renewal.
pub const FIRST_PAID_AFTER_TRIAL: &str = "first_invoice_after_trial";
/// Why a test order's Purchase is not sent on a live tenant.
pub const TEST_ORDER: &str = "test_order";
/// The custom event a subscription renewal is sent as with `RENEWALS = event`.
pub const RENEWAL_EVENT: &str = "SubscriptionRenewed";

/// How far the platform says an order has come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Stage {
    /// Placed, payment not (yet) confirmed: Shopify `orders/create` with `financial_status`
    /// `pending`/`authorized`, WooCommerce `on-hold`, Stripe Checkout `unpaid` (async methods).
    Created,
    /// Paid.
    #[default]
    Paid,
    /// Cancelled, voided or refunded in full: its Purchase must not be sent if it has not been
    /// yet (and, when it has not been reported at all, must not be later).
    Cancelled,
    /// A payment that failed (WooCommerce `failed`, Stripe `async_payment_failed`): a Purchase
    /// already waiting is held back, but none is blocked — the buyer may pay the same order
    /// again.
    Failed,
    /// Only a refund of the order (Shopify `refunds/create`, Stripe `charge.refunded` in part):
    /// nothing to say of its Purchase.
    RefundOnly,
}

/// What kind of order event a webhook carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Kind {
    /// An order (or a subscription's first invoice).
    #[default]
    Purchase,
    /// A subscription's renewal invoice (Stripe `invoice.paid`, `subscription_cycle`).
    Renewal,
    /// A subscription's trial start (a first invoice of 0).
    Trial,
}

/// Where the order happened, when not on the website.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Channel {
    /// The online store (`action_source` `website` when the platform recorded the browser).
    #[default]
    Online,
    /// A point of sale (Shopify POS): `physical_store`.
    Store,
    /// Created by staff or the system (Shopify draft orders, WooCommerce admin orders, renewals):
    /// `system_generated`.
    System,
    /// Taken on the phone (generic webhook `action_source: phone_call`).
    Phone,
}

impl Channel {
    /// Meta's `action_source` for an order of this channel that is not online.
    pub fn action_source(self) -> Option<&'static str> {
        match self {
            Channel::Online => None,
            Channel::Store => Some("physical_store"),
            Channel::System => Some("system_generated"),
            Channel::Phone => Some("phone_call"),
        }
    }
}

/// One refund of an order, positive, in the order's currency unless it names its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Refund {
    /// The platform's refund id (Shopify, WooCommerce, Stripe `re_…`), or one derived from the
    /// refunded total so far (Stripe charges without expanded refunds): one event per id.
    pub id: String,
    pub amount: f64,
    /// The currency of `amount` when the platform names it apart from the order's: a Shopify
    /// refund's transactions are in the currency the customer paid in, the order's total in the
    /// shop's.
    pub currency: Option<String>,
    /// When it was made, Unix seconds.
    pub created_at: Option<i64>,
}

/// `PURCHASE_ON`: which stage of an order sends its Purchase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PurchaseOn {
    /// When the order is placed (what the browser's thank-you page reports too).
    #[default]
    Created,
    /// Only once it is paid.
    Paid,
}

/// `REFUNDS`: what a refund or a cancellation after delivery sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Refunds {
    /// Nothing (a cancellation before delivery still holds the Purchase back).
    #[default]
    Off,
    /// One [`REFUND_EVENT`] per refund.
    Event,
}

/// `RENEWALS`: what a subscription renewal sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Renewals {
    /// Nothing: a renewal is no new decision of the buyer's, and sending it as a Purchase
    /// inflates the revenue Meta's optimisation learns from.
    #[default]
    Off,
    /// A [`RENEWAL_EVENT`] per renewal.
    Event,
    /// A `Purchase` per renewal (its own event id, `renewal:<invoice>`).
    Purchase,
}

/// `OFFLINE_ORDERS`: orders that did not happen on the website (POS, staff, phone).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OfflineOrders {
    /// Sent with their own `action_source`, never `website`.
    #[default]
    Send,
    /// Not sent.
    Ignore,
}

/// `ORDER_VALUE`: what `value` counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OrderValue {
    /// The order's total, as the buyer paid it (shipping and tax included).
    #[default]
    Total,
    /// The total without shipping and tax, where the platform states them.
    Net,
}

/// An order setting's documented values, in one place.
const PURCHASE_ON: &[(&str, PurchaseOn)] =
    &[("created", PurchaseOn::Created), ("paid", PurchaseOn::Paid)];
const REFUNDS: &[(&str, Refunds)] = &[("off", Refunds::Off), ("event", Refunds::Event)];
const RENEWALS: &[(&str, Renewals)] = &[
    ("off", Renewals::Off),
    ("event", Renewals::Event),
    ("purchase", Renewals::Purchase),
];
const OFFLINE_ORDERS: &[(&str, OfflineOrders)] = &[
    ("send", OfflineOrders::Send),
    ("ignore", OfflineOrders::Ignore),
];
const ORDER_VALUE: &[(&str, OrderValue)] =
    &[("total", OrderValue::Total), ("net", OrderValue::Net)];

/// A tenant's order settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrderSettings {
    pub purchase_on: PurchaseOn,
    pub refunds: Refunds,
    pub renewals: Renewals,
    pub offline_orders: OfflineOrders,
    pub order_value: OrderValue,
}

impl OrderSettings {
    /// Reads the settings (absent or empty = default); an undocumented value names its setting.
    pub fn parse(
        purchase_on: Option<&str>,
        refunds: Option<&str>,
        renewals: Option<&str>,
        offline_orders: Option<&str>,
        order_value: Option<&str>,
    ) -> Result<OrderSettings, InvalidSetting> {
        Ok(OrderSettings {
            purchase_on: pick(purchase_on, "PURCHASE_ON", PURCHASE_ON)?,
            refunds: pick(refunds, "REFUNDS", REFUNDS)?,
            renewals: pick(renewals, "RENEWALS", RENEWALS)?,
            offline_orders: pick(offline_orders, "OFFLINE_ORDERS", OFFLINE_ORDERS)?,
            order_value: pick(order_value, "ORDER_VALUE", ORDER_VALUE)?,
        })
    }
}

/// What a Purchase that was delivered carried for matching: a refund of its order (Shopify's
/// `refunds/create` names no customer) is sent with the same keys. Kept in the ledger with the
/// Purchase's claim only when `REFUNDS = event`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Carried {
    pub user_data: crate::event::UserData,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_processing_options: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_processing_options_country: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_processing_options_state: Option<u32>,
}

impl Carried {
    pub fn of(event: &crate::event::ServerEvent) -> Carried {
        Carried {
            user_data: event.user_data.clone(),
            data_processing_options: event.data_processing_options.clone(),
            data_processing_options_country: event.data_processing_options_country,
            data_processing_options_state: event.data_processing_options_state,
        }
    }

    /// Puts these keys (and privacy flags) on `event`. Limited Data Use is never loosened: an
    /// event its own payload (a GPC signal) or today's settings marked keeps its flags.
    pub fn apply(self, event: &mut crate::event::ServerEvent) {
        event.user_data = self.user_data;
        if event.data_processing_options.is_none() {
            event.data_processing_options = self.data_processing_options;
            event.data_processing_options_country = self.data_processing_options_country;
            event.data_processing_options_state = self.data_processing_options_state;
        }
    }
}

/// What one verified order webhook asks for.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The event to claim and send: the order's Purchase, a renewal or a trial start. Its
    /// `ignored` says when it is settled unsent with a receipt (consent, a test order, an offline
    /// order with `OFFLINE_ORDERS = ignore`).
    pub event: Option<PurchaseEvent>,
    /// Why there is no event, without a receipt: the Purchase waits for its payment
    /// (`awaiting_payment`), renewals are off (`renewals_off`).
    pub skipped: Option<&'static str>,
    /// The order is cancelled or refunded in full: its Purchase (`purchase:<order id>`) must not
    /// be sent if it was not delivered yet.
    pub cancels: bool,
    /// With `cancels`: also when no Purchase was claimed yet (a cancellation, not a failed
    /// payment, which the buyer may retry).
    pub cancels_unreported: bool,
    /// Refund events (`REFUNDS = event`), to send only when the order's Purchase was delivered
    /// or is on its way. A cancellation without refunds stands for one of the order's total.
    pub refunds: Vec<PurchaseEvent>,
    /// The order's Purchase id: what `cancels` and `refunds` look up.
    pub purchase_id: String,
    /// The order is paid: its Purchase may take the claim of one a failed payment held back
    /// (`claim` rule 8); a copy of a stage before the payment may not.
    pub paid: bool,
}

impl Plan {
    /// Whether the plan asks for nothing: no event, no cancellation, no refund (`skipped` says
    /// why, or nothing was to report).
    pub fn is_empty(&self) -> bool {
        self.event.is_none() && !self.cancels && self.refunds.is_empty()
    }
}

/// Whether the tenant sends to Events Manager's test tool (a `TEST_EVENT_CODE`): then test
/// orders are sent (with that code), else they are settled `ignored / test_order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantMode {
    Live,
    Testing,
}

/// The plan for one order webhook under a tenant's settings (see [`Plan`]).
pub fn plan(
    order: &Order,
    settings: &OrderSettings,
    mode: TenantMode,
    fallback_url: &str,
    now_ms: u64,
    modes: &Modes,
) -> Plan {
    let purchase_id = event_id_for_order(&order.order_id);
    // A test order on a live tenant touches nothing of the live order of its number (a staging
    // backend's `1001` and the shop's): not sent, and neither its privacy signals, its channel
    // nor its cancellation hold anything back (claim rule 9).
    let live_test = order.test && mode == TenantMode::Live;
    let mut plan = Plan {
        event: None,
        skipped: None,
        cancels: !live_test && matches!(order.stage, Stage::Cancelled | Stage::Failed),
        cancels_unreported: !live_test && order.stage == Stage::Cancelled,
        refunds: Vec::new(),
        purchase_id,
        paid: order.stage == Stage::Paid,
    };
    let valued = order_valued(order, settings.order_value);
    match order.stage {
        Stage::Created | Stage::Paid => {
            let waits = settings.purchase_on == PurchaseOn::Paid && order.stage != Stage::Paid;
            plan.skipped = match order.kind {
                _ if waits => Some("awaiting_payment"),
                Kind::Renewal if settings.renewals == Renewals::Off => Some("renewals_off"),
                _ => None,
            };
            if plan.skipped.is_none() {
                let mut built = purchase_event(&valued, fallback_url, now_ms, modes);
                name_event(&mut built, order, settings);
                if live_test {
                    built.ignored = Some(TEST_ORDER);
                } else if built.ignored.is_none() {
                    built.ignored = if order.kind == Kind::Purchase
                        && order.channel != Channel::Online
                        && settings.offline_orders == OfflineOrders::Ignore
                    {
                        Some("offline_order")
                    } else {
                        None
                    };
                }
                plan.event = Some(built);
            }
        }
        Stage::Cancelled | Stage::Failed | Stage::RefundOnly => {}
    }
    if settings.refunds == Refunds::Event && !live_test {
        let mut refunds = order.refunds.clone();
        // A cancellation after delivery that names no refund stands for the order's value only
        // when nothing was captured (the money of a paid order comes back as refunds of their
        // own, which would count it twice).
        let uncaptured = order.captured == Some(false);
        if !refunds.iter().any(|r| r.amount > 0.0)
            && matches!(order.stage, Stage::Cancelled | Stage::Failed)
            && uncaptured
            && order.value > 0.0
        {
            refunds.push(Refund {
                id: "cancel".into(),
                amount: valued.value,
                currency: None,
                created_at: None,
            });
        }
        plan.refunds = refunds
            .iter()
            .filter(|r| r.amount > 0.0)
            .map(|r| refund_event(order, r, fallback_url, now_ms, modes))
            .collect();
    }
    plan
}

/// The order with `value` as `ORDER_VALUE` counts it.
fn order_valued(order: &Order, value: OrderValue) -> Order {
    let mut o = order.clone();
    if value == OrderValue::Net {
        let less = o.shipping.unwrap_or(0.0) + o.tax.unwrap_or(0.0);
        o.value = round_cents(o.value - less).max(0.0);
    }
    o
}

fn round_cents(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Names the event of a renewal or trial; sets its source and subscription fields.
fn name_event(built: &mut PurchaseEvent, order: &Order, settings: &OrderSettings) {
    let channel_source = order.channel.action_source();
    if let Some(source) = channel_source {
        built.event.action_source = source.into();
    }
    // A store or phone order, or a renewal, is no visit to a page of the shop: no made-up URL.
    if channel_source.is_some() || order.kind == Kind::Renewal {
        no_page(built);
    }
    let e = &mut built.event;
    if let Some(sub) = &order.subscription_id {
        e.custom_data.insert("subscription_id".into(), json!(sub));
    }
    match order.kind {
        Kind::Purchase => {}
        Kind::Renewal => {
            e.event_id = format!("renewal:{}", order.order_id.trim());
            e.action_source = "system_generated".into();
            if settings.renewals == Renewals::Event {
                e.event_name = RENEWAL_EVENT.into();
            }
        }
        Kind::Trial => {
            e.event_name = TRIAL_EVENT.into();
            e.event_id =
                trial_event_id(order.subscription_id.as_deref().unwrap_or(&order.order_id));
        }
    }
}

fn trial_event_id(subscription: &str) -> String {
    format!("trial:{}", subscription.trim())
}

/// A renewal that is the first invoice paid after a free trial is the subscription's Purchase:
/// the trial start (a first invoice of 0) reported no Purchase, and Stripe bills the end of a
/// trial as a `subscription_cycle`. For a renewal: the order as its Purchase (the subscription's
/// first order id, online), the trial start's mark id and the invoice's (both under
/// [`MARK_EVENT`]). The caller asks the ledger: this invoice's mark, or the trial start's and
/// neither a Purchase of the subscription nor this invoice as a renewal, make it that Purchase;
/// anything else (a trial the Worker did not see start, a later invoice), a renewal.
pub fn after_trial(order: &Order) -> Option<AfterTrial> {
    if order.kind != Kind::Renewal {
        return None;
    }
    let subscription = order.subscription_id.as_deref()?;
    let purchase = Order {
        order_id: order.subscription_order_id.clone()?,
        kind: Kind::Purchase,
        channel: Channel::Online,
        subscription_order_id: None,
        ..order.clone()
    };
    Some(AfterTrial {
        purchase,
        trial_event_id: trial_event_id(subscription),
        mark_event_id: format!("renewal:{}", order.order_id.trim()),
    })
}

/// See [`after_trial`].
#[derive(Debug, Clone)]
pub struct AfterTrial {
    /// The invoice as the subscription's first order.
    pub purchase: Order,
    /// The trial start's mark (`trial:<subscription>`, under [`MARK_EVENT`], the trial's own
    /// event id).
    pub trial_event_id: String,
    /// The invoice's mark (`renewal:<invoice id>`, under [`MARK_EVENT`]).
    pub mark_event_id: String,
}

/// An event that is no visit to a page of the shop: no `event_source_url`, and nothing said
/// about a page URL it was never going to send.
fn no_page(built: &mut PurchaseEvent) {
    built.event.event_source_url = None;
    built.dropped.retain(|d| d.field != "event_source_url");
}

/// The event id of a refund: one per order and refund id.
pub fn refund_event_id(order_id: &str, refund_id: &str) -> String {
    format!("refund:{}:{}", order_id.trim(), refund_id.trim())
}

/// A refund as Meta receives it: a [`REFUND_EVENT`] with the refunded amount (positive), the
/// order's id and match keys, `system_generated` (staff or the platform made it).
fn refund_event(
    order: &Order,
    refund: &Refund,
    fallback_url: &str,
    now_ms: u64,
    modes: &Modes,
) -> PurchaseEvent {
    let at = Order {
        value: refund.amount,
        currency: refund
            .currency
            .clone()
            .unwrap_or_else(|| order.currency.clone()),
        created_at: refund.created_at.or(Some((now_ms / 1000) as i64)),
        contents: Vec::new(),
        ..order.clone()
    };
    let mut built = purchase_event(&at, fallback_url, now_ms, modes);
    no_page(&mut built);
    let e = &mut built.event;
    e.event_name = REFUND_EVENT.into();
    e.event_id = refund_event_id(&order.order_id, &refund.id);
    e.action_source = "system_generated".into();
    e.custom_data.remove("customer_type");
    e.custom_data.insert("refund_id".into(), json!(refund.id));
    built
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::{ConsentMode, CustomerData, GpcMode, LduMode};

    const HASHED: Modes = Modes {
        customer_data: CustomerData::Hashed,
        consent: ConsentMode::Optional,
        gpc: GpcMode::Ldu,
        ldu: LduMode::Off,
    };
    const NOW_MS: u64 = 1_795_440_000_000;

    fn order(stage: Stage) -> Order {
        Order {
            order_id: "1001".into(),
            value: 50.0,
            currency: "EUR".into(),
            email: Some("a@b.co".into()),
            stage,
            ..Order::default()
        }
    }

    fn plan_of(o: &Order, s: OrderSettings) -> Plan {
        plan(
            o,
            &s,
            TenantMode::Live,
            "https://shop.test/",
            NOW_MS,
            &HASHED,
        )
    }

    #[test]
    fn a_refund_takes_the_purchases_keys_but_never_loses_its_own_ldu() {
        let purchase = plan_of(&order(Stage::Created), OrderSettings::default())
            .event
            .expect("a Purchase")
            .event;
        let carried = Carried::of(&purchase);
        assert_eq!(carried.data_processing_options, None);
        // The refund's own payload carried a GPC signal (or LDU was turned on since).
        let mut refund = purchase.clone();
        refund.user_data = crate::event::UserData::default();
        refund.set_ldu(Some(crate::privacy::LDU_GEOLOCATE));
        carried.apply(&mut refund);
        assert_eq!(refund.user_data, purchase.user_data);
        assert_eq!(
            refund.data_processing_options,
            Some(vec!["LDU".to_string()])
        );
        // An unmarked refund takes the Purchase's flags.
        let mut marked = purchase.clone();
        marked.set_ldu(Some(crate::privacy::LDU_CALIFORNIA));
        let mut plain = purchase.clone();
        Carried::of(&marked).apply(&mut plain);
        assert_eq!(plain.data_processing_options_state, Some(1000));
    }

    #[test]
    fn settings_have_safe_defaults_and_refuse_undocumented_values() {
        let s = OrderSettings::parse(None, None, None, None, None).expect("defaults");
        assert_eq!(s, OrderSettings::default());
        assert_eq!(s.refunds, Refunds::Off);
        assert_eq!(s.renewals, Renewals::Off);
        assert_eq!(
            OrderSettings::parse(Some("shipped"), None, None, None, None),
            Err(InvalidSetting("PURCHASE_ON"))
        );
        assert_eq!(
            OrderSettings::parse(None, None, Some("Purchase"), None, Some("net"))
                .map(|s| (s.renewals, s.order_value)),
            Ok((Renewals::Purchase, OrderValue::Net))
        );
    }

    #[test]
    fn purchase_on_paid_waits_for_the_payment() {
        let paid = OrderSettings {
            purchase_on: PurchaseOn::Paid,
            ..OrderSettings::default()
        };
        let p = plan_of(&order(Stage::Created), paid);
        assert_eq!(
            (p.event.is_none(), p.skipped),
            (true, Some("awaiting_payment"))
        );
        let p = plan_of(&order(Stage::Paid), paid);
        assert_eq!(p.event.expect("sent").event.event_id, "purchase:1001");
        let p = plan_of(&order(Stage::Created), OrderSettings::default());
        assert!(p.event.is_some(), "created is enough by default");
    }

    #[test]
    fn test_and_offline_orders_are_settled_with_their_reason() {
        let test = Order {
            test: true,
            ..order(Stage::Paid)
        };
        let p = plan_of(&test, OrderSettings::default());
        assert_eq!(p.event.expect("receipt").ignored, Some("test_order"));
        // A staging backend's test order with a live order's number holds nothing of it back:
        // not its refused consent, nor its cancellation or failed payment.
        let refused = Order {
            consent: crate::privacy::Consent::Denied,
            ..test.clone()
        };
        let p = plan_of(&refused, OrderSettings::default());
        assert_eq!(p.event.expect("receipt").ignored, Some(TEST_ORDER));
        for stage in [Stage::Cancelled, Stage::Failed] {
            let p = plan_of(
                &Order {
                    stage,
                    ..test.clone()
                },
                OrderSettings::default(),
            );
            assert!(
                !p.cancels && !p.cancels_unreported && p.refunds.is_empty(),
                "{stage:?}"
            );
        }
        let sent = plan(
            &test,
            &OrderSettings::default(),
            TenantMode::Testing,
            "https://shop.test/",
            NOW_MS,
            &HASHED,
        );
        assert_eq!(sent.event.expect("event").ignored, None);
        let pos = Order {
            channel: Channel::Store,
            user_agent: Some("Mozilla/5.0".into()),
            event_source_url: Some("javascript:void(0)".into()),
            ..order(Stage::Paid)
        };
        let e = plan_of(&pos, OrderSettings::default())
            .event
            .expect("event");
        assert_eq!(e.ignored, None);
        assert_eq!(e.event.action_source, "physical_store");
        assert_eq!(e.event.event_source_url, None, "no made-up page");
        assert!(
            e.dropped.iter().all(|d| d.field != "event_source_url"),
            "no page is sent, so none is said to be dropped"
        );
        let ignore = OrderSettings {
            offline_orders: OfflineOrders::Ignore,
            ..OrderSettings::default()
        };
        assert_eq!(
            plan_of(&pos, ignore).event.expect("receipt").ignored,
            Some("offline_order")
        );
    }

    #[test]
    fn a_cancellation_holds_the_purchase_and_refunds_only_with_refunds_event() {
        let cancelled = order(Stage::Cancelled);
        let p = plan_of(&cancelled, OrderSettings::default());
        assert!(p.cancels && p.event.is_none() && p.refunds.is_empty());
        assert_eq!(p.purchase_id, "purchase:1001");
        let event = OrderSettings {
            refunds: Refunds::Event,
            ..OrderSettings::default()
        };
        assert!(
            plan_of(&cancelled, event).refunds.is_empty(),
            "a paid order's money comes back as refunds of their own"
        );
        let unpaid = Order {
            captured: Some(false),
            ..cancelled.clone()
        };
        let p = plan_of(&unpaid, event);
        let r = &p.refunds[0].event;
        assert_eq!(r.event_name, REFUND_EVENT);
        assert_eq!(r.event_id, "refund:1001:cancel");
        assert_eq!(r.custom_data["value"], 50.0);
        assert_eq!(r.custom_data["order_id"], "1001");
        assert_eq!(r.action_source, "system_generated");
        assert!(r.user_data.em.is_some(), "the order's match keys");
        // Shopify cancels an authorized order with a refund of its void transactions only:
        // a refund of no money, which stands for nothing, so the cancellation still does.
        let voided = Order {
            refunds: vec![Refund {
                id: "r-void".into(),
                amount: 0.0,
                currency: None,
                created_at: None,
            }],
            ..unpaid.clone()
        };
        let p = plan_of(&voided, event);
        assert_eq!(
            p.refunds
                .iter()
                .map(|r| r.event.event_id.as_str())
                .collect::<Vec<_>>(),
            ["refund:1001:cancel"]
        );
        let partial = Order {
            refunds: vec![
                Refund {
                    id: "r1".into(),
                    amount: 12.5,
                    currency: None,
                    created_at: Some(1_795_000_000),
                },
                Refund {
                    id: "restock".into(),
                    amount: 0.0,
                    currency: None,
                    created_at: None,
                },
            ],
            ..order(Stage::RefundOnly)
        };
        let p = plan_of(&partial, event);
        assert!(!p.cancels && p.event.is_none());
        assert_eq!(p.refunds.len(), 1, "a refund of nothing is not sent");
        assert_eq!(p.refunds[0].event.custom_data["value"], 12.5);
        assert_eq!(p.refunds[0].event.event_time, 1_795_000_000);
    }

    #[test]
    fn a_failed_payment_holds_back_a_waiting_purchase_but_blocks_no_later_one() {
        let p = plan_of(&order(Stage::Failed), OrderSettings::default());
        assert!(p.cancels && !p.cancels_unreported && p.event.is_none());
        let p = plan_of(&order(Stage::Cancelled), OrderSettings::default());
        assert!(p.cancels && p.cancels_unreported);
    }

    #[test]
    fn renewals_and_trials_have_ids_of_their_own() {
        let renewal = Order {
            order_id: "in_2".into(),
            kind: Kind::Renewal,
            subscription_id: Some("sub_1".into()),
            ..order(Stage::Paid)
        };
        assert_eq!(
            plan_of(&renewal, OrderSettings::default()).skipped,
            Some("renewals_off")
        );
        for (renewals, name) in [
            (Renewals::Purchase, "Purchase"),
            (Renewals::Event, RENEWAL_EVENT),
        ] {
            let s = OrderSettings {
                renewals,
                ..OrderSettings::default()
            };
            let e = plan_of(&renewal, s).event.expect("event").event;
            assert_eq!(
                (e.event_name.as_str(), e.event_id.as_str()),
                (name, "renewal:in_2")
            );
            assert_eq!(e.custom_data["subscription_id"], "sub_1");
            assert_eq!(e.action_source, "system_generated");
        }
        let trial = Order {
            kind: Kind::Trial,
            value: 0.0,
            subscription_id: Some("sub_1".into()),
            ..order(Stage::Paid)
        };
        let e = plan_of(&trial, OrderSettings::default())
            .event
            .expect("event")
            .event;
        assert_eq!(
            (e.event_name.as_str(), e.event_id.as_str()),
            ("StartTrial", "trial:sub_1")
        );
        assert!(after_trial(&trial).is_none(), "only a renewal");
    }

    #[test]
    fn a_renewal_may_be_the_purchase_a_free_trial_did_not_report() {
        let renewal = Order {
            order_id: "in_2".into(),
            value: 12.0,
            kind: Kind::Renewal,
            channel: Channel::System,
            subscription_id: Some("sub_1".into()),
            subscription_order_id: Some("order-7".into()),
            ..order(Stage::Paid)
        };
        let a = after_trial(&renewal).expect("a renewal");
        assert_eq!(
            (a.trial_event_id.as_str(), a.mark_event_id.as_str()),
            ("trial:sub_1", "renewal:in_2")
        );
        let e = plan_of(&a.purchase, OrderSettings::default())
            .event
            .expect("the Purchase, whatever RENEWALS says")
            .event;
        assert_eq!(
            (
                e.event_name.as_str(),
                e.event_id.as_str(),
                e.action_source.as_str()
            ),
            ("Purchase", "purchase:order-7", "other")
        );
        assert_eq!(e.custom_data["value"], 12.0);
        assert_eq!(e.custom_data["subscription_id"], "sub_1");
    }

    #[test]
    fn net_value_leaves_out_shipping_and_tax() {
        let o = Order {
            value: 59.9,
            shipping: Some(4.9),
            tax: Some(9.57),
            ..order(Stage::Paid)
        };
        let net = OrderSettings {
            order_value: OrderValue::Net,
            ..OrderSettings::default()
        };
        let e = plan_of(&o, net).event.expect("event").event;
        assert_eq!(e.custom_data["value"], 45.43);
        let e = plan_of(&o, OrderSettings::default())
            .event
            .expect("event")
            .event;
        assert_eq!(e.custom_data["value"], 59.9);
    }
}
