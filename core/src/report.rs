//! Proof of delivery: the orders webhooks reported, day by day, against what became of their
//! Purchases (sent, ignored with a reason, rejected, expired, dead-lettered, still retrying),
//! and match coverage per event name — from the ledger's daily counters, never from customer
//! data.

use crate::delivery::Outcome;
use serde::Serialize;
use std::collections::BTreeMap;

/// Counter kind: orders by day (`name` = `seen` or the Purchase's final outcome).
pub const ORDER: &str = "order";
/// Counter kind: match coverage (`name` = event name, `reason` = a [`COVERAGE_KEYS`] key).
pub const COVERAGE: &str = "coverage";
/// The ledger source of an event a verified order webhook reported.
pub const WEBHOOK: &str = "webhook";
/// Counter name for an order a verified webhook reported.
pub const SEEN: &str = "seen";

/// What match coverage counts per event name: the events, and how many carried each key
/// (counts only, never values) — what drives Meta's Event Match Quality.
pub const COVERAGE_KEYS: &[&str] = &[
    "events",
    "fbp",
    "fbc",
    "em",
    "ph",
    "client_ip_address",
    "client_user_agent",
    "external_id",
    "fn",
    "ln",
    "db",
    "ct",
    "st",
    "zp",
    "country",
];

/// Meta's standard event names; any other name counts as `custom` (bounded rows).
const STANDARD_EVENTS: &[&str] = &[
    "AddPaymentInfo",
    "AddToCart",
    "AddToWishlist",
    "CompleteRegistration",
    "Contact",
    "CustomizeProduct",
    "Donate",
    "FindLocation",
    "InitiateCheckout",
    "Lead",
    "PageView",
    "Purchase",
    "Schedule",
    "Search",
    "StartTrial",
    "SubmitApplication",
    "Subscribe",
    "ViewContent",
];

/// The row name of an event name in coverage counters.
pub fn coverage_event_name(name: &str) -> &'static str {
    STANDARD_EVENTS
        .iter()
        .copied()
        .find(|s| *s == name)
        .unwrap_or("custom")
}

/// The coverage keys an event sent to Meta carried (`events` always).
pub fn coverage_of(event: &crate::event::ServerEvent) -> Vec<&'static str> {
    let u = &event.user_data;
    let present = [
        true,
        u.fbp.is_some(),
        u.fbc.is_some(),
        u.em.is_some(),
        u.ph.is_some(),
        u.client_ip_address.is_some(),
        u.client_user_agent.is_some(),
        u.external_id.is_some(),
        u.first_name.is_some(),
        u.ln.is_some(),
        u.db.is_some(),
        u.ct.is_some(),
        u.st.is_some(),
        u.zp.is_some(),
        u.country.is_some(),
    ];
    COVERAGE_KEYS
        .iter()
        .zip(present)
        .filter(|(_, p)| *p)
        .map(|(k, _)| *k)
        .collect()
}

/// One daily counter row as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountRow {
    /// Days since the Unix epoch (UTC).
    pub day: i64,
    pub kind: String,
    pub name: String,
    pub reason: String,
    pub count: i64,
}

/// One day of reconciliation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Day {
    /// Days since the Unix epoch (UTC); the shell formats it.
    pub day: i64,
    /// Orders verified webhooks reported that day.
    pub orders: i64,
    pub sent: i64,
    /// Not sent on purpose, by reason (consent refused, data controls, …).
    pub ignored: BTreeMap<String, i64>,
    pub rejected: i64,
    pub expired: i64,
    pub dead_lettered: i64,
    /// Neither sent nor settled yet (queued or retrying).
    pub retrying: i64,
    /// (sent + ignored) / orders: every order reached Meta or has a reason why not.
    pub accuracy: Option<f64>,
}

/// The day (days since the Unix epoch, UTC) of a report bound written `YYYY-MM-DD`: none for
/// any other spelling or a day that does not exist (`2026-02-31`). Read by the same parser as
/// the webhooks' timestamps.
pub fn day_of(date: &str) -> Option<i64> {
    let is_date = date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !is_date {
        return None;
    }
    crate::webhook::iso8601_secs(&format!("{date}T00:00:00Z")).map(|s| s.div_euclid(86_400))
}

/// The reconciliation and coverage report for `from_day..=to_day`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub days: Vec<Day>,
    /// Per event name: how many events were sent, and how many carried each key.
    pub coverage: BTreeMap<String, BTreeMap<String, i64>>,
}

/// Builds the report from counter rows (rows of other kinds or outside the range are ignored).
pub fn reconcile(rows: &[CountRow], from_day: i64, to_day: i64) -> Report {
    let mut days: BTreeMap<i64, Day> = (from_day..=to_day)
        .map(|d| {
            (
                d,
                Day {
                    day: d,
                    ..Day::default()
                },
            )
        })
        .collect();
    let mut coverage: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for r in rows.iter().filter(|r| (from_day..=to_day).contains(&r.day)) {
        match r.kind.as_str() {
            ORDER => {
                let Some(d) = days.get_mut(&r.day) else {
                    continue;
                };
                match (r.name.as_str(), Outcome::parse(&r.name)) {
                    (SEEN, _) => d.orders += r.count,
                    (_, Some(Outcome::Sent)) => d.sent += r.count,
                    (_, Some(Outcome::Ignored)) => {
                        *d.ignored.entry(r.reason.clone()).or_default() += r.count
                    }
                    (_, Some(Outcome::Rejected)) => d.rejected += r.count,
                    (_, Some(Outcome::Expired)) => d.expired += r.count,
                    (_, Some(Outcome::DeadLettered)) => d.dead_lettered += r.count,
                    _ => {}
                }
            }
            COVERAGE => {
                *coverage
                    .entry(r.name.clone())
                    .or_default()
                    .entry(r.reason.clone())
                    .or_default() += r.count;
            }
            _ => {}
        }
    }
    for d in days.values_mut() {
        let ignored: i64 = d.ignored.values().sum();
        let settled = d.sent + ignored + d.rejected + d.expired + d.dead_lettered;
        d.retrying = (d.orders - settled).max(0);
        d.accuracy = (d.orders > 0).then(|| (d.sent + ignored) as f64 / d.orders as f64);
    }
    Report {
        days: days.into_values().collect(),
        coverage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(day: i64, kind: &str, name: &str, reason: &str, count: i64) -> CountRow {
        CountRow {
            day,
            kind: kind.into(),
            name: name.into(),
            reason: reason.into(),
            count,
        }
    }

    #[test]
    fn report_bounds_are_real_days_written_yyyy_mm_dd() {
        assert_eq!(day_of("1970-01-01"), Some(0));
        assert_eq!(day_of("2024-02-29"), Some(19_782));
        assert_eq!(day_of("1969-12-31"), Some(-1));
        for bad in [
            "2026-02-31",
            "2024-13-01",
            "2024/05/01",
            "2024-5-01",
            "20240501",
            "",
        ] {
            assert_eq!(day_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_order_is_sent_or_has_a_reason() {
        let rows = [
            row(100, ORDER, SEEN, "", 10),
            row(100, ORDER, "sent", "", 7),
            row(100, ORDER, "ignored", "consent_refused", 1),
            row(100, ORDER, "rejected", "user_data_missing", 1),
            row(101, ORDER, SEEN, "", 2),
            row(101, ORDER, "sent", "", 2),
            row(99, ORDER, SEEN, "", 5),
            row(100, COVERAGE, "Purchase", "events", 7),
            row(100, COVERAGE, "Purchase", "em", 6),
            row(100, "dropped", "em", "invalid_email", 3),
        ];
        let r = reconcile(&rows, 100, 102);
        assert_eq!(r.days.len(), 3);
        let d = &r.days[0];
        assert_eq!((d.orders, d.sent, d.rejected, d.retrying), (10, 7, 1, 1));
        assert_eq!(d.ignored.get("consent_refused"), Some(&1));
        assert_eq!(d.accuracy, Some(0.8));
        assert_eq!(r.days[1].accuracy, Some(1.0));
        assert_eq!(r.days[2].accuracy, None, "no orders, no ratio");
        assert_eq!(r.coverage["Purchase"]["em"], 6);
    }

    #[test]
    fn coverage_rows_are_bounded_by_name() {
        assert_eq!(coverage_event_name("Purchase"), "Purchase");
        assert_eq!(coverage_event_name("MyVeryOwnEvent123"), "custom");
    }
}
