//! The ledger's SQL on an in-memory SQLite with a clock the test moves: the claim protocol on
//! real rows, migrations from the oldest schema, and every retention enforced by housekeeping.

use super::*;
use crate::protocol::{EventKey, REPLAY_PAGE_BYTES};
use capi_core::claim::PAYMENT_FAILED;
use rusqlite::types::{ToSqlOutput, Value as SqlValue};
use rusqlite::Connection;

struct Mem(Connection);

impl Sql for Mem {
    type Error = rusqlite::Error;
    fn run(&self, query: &str, args: Vec<Arg>) -> Result<Vec<Value>, rusqlite::Error> {
        let mut stmt = self.0.prepare(query)?;
        let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        let params: Vec<ToSqlOutput> = args
            .into_iter()
            .map(|a| match a {
                Arg::Int(i) => ToSqlOutput::Owned(SqlValue::Integer(i)),
                Arg::Text(t) => ToSqlOutput::Owned(SqlValue::Text(t)),
                Arg::Null => ToSqlOutput::Owned(SqlValue::Null),
            })
            .collect();
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut obj = serde_json::Map::new();
            for (i, n) in names.iter().enumerate() {
                let v = match row.get::<_, SqlValue>(i)? {
                    SqlValue::Null => Value::Null,
                    SqlValue::Integer(i) => i.into(),
                    SqlValue::Real(f) => f.into(),
                    SqlValue::Text(t) => t.into(),
                    SqlValue::Blob(_) => Value::Null,
                };
                obj.insert(n.clone(), v);
            }
            out.push(Value::Object(obj));
        }
        Ok(out)
    }
}

fn shard() -> Mem {
    let m = Mem(Connection::open_in_memory().expect("sqlite"));
    migrate(&m).expect("migrations");
    m
}

const T0: i64 = 1_800_000_000_000;

fn item(id: &str, nonce: &str) -> ClaimItem {
    ClaimItem {
        key: EventKey {
            event_name: "Purchase".into(),
            event_id: id.into(),
        },
        nonce: nonce.into(),
        source: None,
        replay: false,
        counts: Vec::new(),
        carried: None,
        paid: false,
    }
}

fn order(id: &str, nonce: &str) -> ClaimItem {
    ClaimItem {
        source: Some(Source::Webhook),
        ..item(id, nonce)
    }
}

/// A dead letter of `id`'s event.
fn letter(id: &str, body: &str, reason: &str) -> Letter {
    Letter {
        key: item(id, "x").key,
        body: body.into(),
        reason: reason.into(),
        receipt: None,
    }
}

fn claim_one(s: &Mem, i: ClaimItem, attempt: Option<&str>, now: i64) -> ClaimStatus {
    let mut counts = Vec::new();
    let status = claim(s, &[i], attempt, &[], now, &mut counts).expect("claim")[0];
    // As the ledger object does after each claim.
    add_counts(s, &counts, now / DAY_MS).expect("counts");
    status
}

fn receipt(id: &str, nonce: &str, outcome: Outcome) -> Receipt {
    Receipt {
        key: item(id, nonce).key,
        outcome,
        reason: None,
        attempts: 1,
        fbtrace_id: None,
        source: None,
        nonce: Some(nonce.into()),
    }
}

/// An order's webhook reserves it at T0 and its queued copy's consumer leases it 10 ms later.
fn reserved_then_leased(s: &Mem, id: &str, nonce: &str) {
    assert!(is_send(claim_one(s, order(id, nonce), None, T0)));
    assert!(is_send(claim_one(s, order(id, nonce), Some("a1"), T0 + 10)));
}

/// Records one receipt of `nonce`'s copy.
fn settle(s: &Mem, id: &str, nonce: &str, outcome: Outcome, now: i64) {
    record(s, &[receipt(id, nonce, outcome)], now, &mut Vec::new()).expect("record");
}

fn count_rows(s: &Mem, table: &str) -> i64 {
    s.run(&format!("SELECT COUNT(*) AS n FROM {table}"), Vec::new())
        .expect("count")[0]["n"]
        .as_i64()
        .unwrap_or(-1)
}

fn is_send(s: ClaimStatus) -> bool {
    matches!(s, ClaimStatus::Send { .. })
}

#[test]
fn a_message_delivered_twice_at_once_is_sent_by_one_attempt_only() {
    let s = shard();
    assert!(is_send(claim_one(&s, item("e1", "n1"), Some("a1"), T0)));
    assert!(matches!(
        claim_one(&s, item("e1", "n1"), Some("a2"), T0 + 10),
        ClaimStatus::Busy { .. }
    ));
    // The first attempt's receipt settles it: the second copy, looking again, sends nothing.
    settle(&s, "e1", "n1", Outcome::Sent, T0 + 20);
    assert_eq!(
        claim_one(&s, item("e1", "n1"), Some("a2"), T0 + 5000),
        ClaimStatus::Settled
    );
}

#[test]
fn a_vanished_attempt_leaves_a_claim_the_redelivery_takes_after_the_lease() {
    let s = shard();
    assert!(is_send(claim_one(&s, item("e1", "n1"), Some("a1"), T0)));
    assert!(is_send(claim_one(
        &s,
        item("e1", "n1"),
        Some("a2"),
        T0 + capi_core::claim::LEASE_MS + 1
    )));
}

#[test]
fn a_retry_takes_the_claim_back_at_once() {
    let s = shard();
    assert!(is_send(claim_one(&s, item("e1", "n1"), Some("a1"), T0)));
    settle(&s, "e1", "n1", Outcome::Retrying, T0 + 10);
    assert!(is_send(claim_one(
        &s,
        item("e1", "n1"),
        Some("a2"),
        T0 + 20
    )));
}

#[test]
fn a_stray_copy_ahead_of_the_real_retry_in_one_batch_does_not_block_it() {
    let s = shard();
    assert!(is_send(claim_one(&s, item("e1", "n1"), Some("a1"), T0)));
    settle(&s, "e1", "n1", Outcome::Retrying, T0 + 10);
    let got = claim(
        &s,
        &[item("e1", "stray"), item("e1", "n1")],
        Some("a2"),
        &[],
        T0 + 20,
        &mut Vec::new(),
    )
    .expect("claim");
    assert_eq!(got[0], ClaimStatus::Duplicate);
    assert!(is_send(got[1]), "{got:?}");
}

#[test]
fn the_same_message_twice_in_one_batch_is_sent_once() {
    let s = shard();
    let got = claim(
        &s,
        &[item("e1", "n1"), item("e1", "n1")],
        Some("a1"),
        &[],
        T0,
        &mut Vec::new(),
    )
    .expect("claim");
    assert!(is_send(got[0]));
    assert_eq!(got[1], ClaimStatus::Duplicate);
}

#[test]
fn ingest_counts_are_added_once_whatever_the_redeliveries() {
    let s = shard();
    let mut with_counts = item("e1", "n1");
    with_counts.counts = vec![Count::dropped("em", "consent")];
    let mut counts = Vec::new();
    claim(
        &s,
        std::slice::from_ref(&with_counts),
        Some("a1"),
        &[],
        T0,
        &mut counts,
    )
    .expect("claim");
    assert_eq!(
        counts
            .iter()
            .filter(|c| c.kind == CountKind::Dropped)
            .count(),
        1
    );
    settle(&s, "e1", "n1", Outcome::Retrying, T0 + 10);
    let mut again = Vec::new();
    claim(&s, &[with_counts], Some("a2"), &[], T0 + 20, &mut again).expect("claim");
    assert_eq!(
        again
            .iter()
            .filter(|c| c.kind == CountKind::Dropped)
            .count(),
        0
    );
}

#[test]
fn a_receipt_never_overwrites_another_copys_claim_nor_a_final_outcome() {
    let s = shard();
    assert!(is_send(claim_one(&s, item("e1", "n1"), Some("a1"), T0)));
    settle(&s, "e1", "stray", Outcome::Rejected, T0 + 5);
    settle(&s, "e1", "n1", Outcome::Sent, T0 + 10);
    settle(&s, "e1", "n1", Outcome::Retrying, T0 + 20);
    assert_eq!(receipts(&s, "e1").expect("rows")[0]["outcome"], "sent");
}

#[test]
fn replay_hands_a_dead_letter_to_exactly_one_replay_copy_per_parking() {
    let s = shard();
    assert!(is_send(claim_one(&s, item("e1", "n1"), Some("a1"), T0)));
    settle(&s, "e1", "n1", Outcome::DeadLettered, T0 + 10);
    let letter = letter("e1", "{}", "attempts_exhausted");
    park(&s, std::slice::from_ref(&letter), T0 + 10, &mut Vec::new()).expect("park");
    assert_eq!(waiting(&s, None, (0, u32::MAX), PAGE_BYTES).expect("waiting").len(), 1);
    // The original copy redelivered: settled, not sent.
    assert_eq!(
        claim_one(&s, item("e1", "n1"), Some("a2"), T0 + 20),
        ClaimStatus::Settled
    );
    let replay = |nonce: &str| ClaimItem {
        replay: true,
        ..item("e1", nonce)
    };
    // Two replays race: one copy sends.
    assert!(is_send(claim_one(&s, replay("r1"), Some("a3"), T0 + 30)));
    assert_eq!(
        claim_one(&s, replay("r2"), Some("a4"), T0 + 31),
        ClaimStatus::Duplicate
    );
    assert!(waiting(&s, None, (0, u32::MAX), PAGE_BYTES).expect("waiting").is_empty());
    // The replay fails again and is parked again: the next replay may take it.
    settle(&s, "e1", "r1", Outcome::DeadLettered, T0 + 40);
    park(&s, &[letter], T0 + 40, &mut Vec::new()).expect("park");
    assert!(is_send(claim_one(&s, replay("r3"), Some("a5"), T0 + 50)));
    // A letter whose event was sent meanwhile is resolved without sending.
    settle(&s, "e1", "r3", Outcome::Sent, T0 + 60);
    assert_eq!(
        claim_one(&s, replay("r4"), Some("a6"), T0 + 70),
        ClaimStatus::Settled
    );
}

#[test]
fn a_letter_the_platform_dead_lettered_without_a_claim_is_replayed() {
    let s = shard();
    let letter = letter("e9", "{}", "platform_retries_exhausted");
    park(&s, &[letter], T0, &mut Vec::new()).expect("park");
    assert!(is_send(claim_one(
        &s,
        ClaimItem {
            replay: true,
            ..item("e9", "r1")
        },
        Some("a1"),
        T0 + 1
    )));
}

#[test]
fn claims_of_an_earlier_layout_are_honoured() {
    let old = shard();
    assert!(is_send(claim_one(&old, order("o1", "n1"), None, T0)));
    assert_eq!(
        claim_in_a_new_layout(&old, order("o1", "n2"), T0 + 10),
        ClaimStatus::Duplicate
    );
}

/// `copy` reserved in a new shard that imports what `old` holds for its event.
fn claim_in_a_new_layout(old: &Mem, copy: ClaimItem, now: i64) -> ClaimStatus {
    let imported = exported(old, &[copy.key.text()]).expect("export");
    assert_eq!(imported.len(), 1, "the old layout's claim");
    claim(&shard(), &[copy], None, &imported, now, &mut Vec::new()).expect("claim")[0]
}

#[test]
fn an_order_stays_claimed_for_weeks_and_a_browser_event_for_a_week() {
    let s = shard();
    // `orders/create`: reserved by the webhook, sent by its message's consumer.
    reserved_then_leased(&s, "o1", "n1");
    settle(&s, "o1", "n1", Outcome::Sent, T0 + 20);
    assert!(is_send(claim_one(&s, item("b1", "n1"), Some("a1"), T0)));
    let three_days = T0 + 3 * DAY_MS;
    housekeep(&s, three_days).expect("housekeeping");
    // `orders/paid` three days after `orders/create`: the same order, not a second Purchase.
    assert_eq!(
        claim_one(&s, order("o1", "n2"), None, three_days),
        ClaimStatus::Duplicate
    );
    assert_eq!(
        claim_one(&s, item("b1", "n2"), Some("a2"), three_days),
        ClaimStatus::Duplicate
    );
}

#[test]
fn a_dead_letter_parked_again_is_kept_from_its_first_parking() {
    let s = shard();
    let letter = letter("b2", "{\"hashed\":\"contact data\"}", "attempts_exhausted");
    park(&s, std::slice::from_ref(&letter), T0, &mut Vec::new()).expect("park");
    // Its replay failed too, five days later: parked again, waiting again…
    park(&s, &[letter], T0 + 5 * DAY_MS, &mut Vec::new()).expect("park again");
    assert_eq!(waiting(&s, Some("b2"), (0, u32::MAX), PAGE_BYTES).expect("waiting").len(), 1);
    // …and deleted 7 days after it was first parked, not 7 days after the second time.
    housekeep(&s, T0 + DEAD_LETTER_RETENTION_MS + 1).expect("housekeeping");
    assert_eq!(count_rows(&s, "dead_letters"), 0);
}

#[test]
fn dead_letters_and_waiting_letters_are_read_a_page_at_a_time_in_parking_order() {
    let s = shard();
    let letters: Vec<Letter> = (0..5)
        .map(|n| letter(&format!("p{n}"), &format!("{{\"n\":{n}}}"), "attempts_exhausted"))
        .collect();
    park(&s, &letters, T0, &mut Vec::new()).expect("park");
    // A letter parked again keeps its place.
    park(&s, &letters[1..2], T0 + 10, &mut Vec::new()).expect("park again");
    let ids = |rows: &[Value]| -> Vec<String> {
        rows.iter()
            .map(|r| r["event_id"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let first = dead_letters(&s, 0, 2).expect("page");
    assert_eq!(ids(&first), ["p0", "p1"]);
    let after = first[1]["rowid"].as_i64().expect("rowid");
    assert_eq!(ids(&dead_letters(&s, after, 10).expect("page")), ["p2", "p3", "p4"]);
    // Waiting letters: the same order, the bodies unchanged; a replayed one is not waiting.
    let page = waiting(&s, None, (0, 3), PAGE_BYTES).expect("waiting");
    let bodies: Vec<&str> = page.iter().filter_map(|r| r["body"].as_str()).collect();
    assert_eq!(bodies, [r#"{"n":0}"#, r#"{"n":1}"#, r#"{"n":2}"#]);
    let rest = waiting(&s, None, (page[2]["rowid"].as_i64().expect("rowid"), 3), PAGE_BYTES).expect("waiting");
    assert_eq!(rest.len(), 2);
    assert_eq!(waiting(&s, Some("p3"), (0, 3), PAGE_BYTES).expect("one event").len(), 1);
    assert!(waiting(&s, Some("p3"), (rest[1]["rowid"].as_i64().expect("rowid"), 3), PAGE_BYTES)
        .expect("one event")
        .is_empty());
}

/// A replay page's byte budget, whole.
const PAGE_BYTES: u64 = REPLAY_PAGE_BYTES as u64;

#[test]
fn a_page_of_waiting_letters_ends_once_its_bodies_reach_the_byte_budget() {
    let s = shard();
    let third = REPLAY_PAGE_BYTES * 3 / 8;
    let letters: Vec<Letter> = (0..4)
        .map(|n| letter(&format!("big{n}"), &"x".repeat(third), "attempts_exhausted"))
        .collect();
    park(&s, &letters, T0, &mut Vec::new()).expect("park");
    // Two bodies are 3/4 of the budget, three would be more: the page takes the third and
    // stops (it always ends with the letter that reaches the budget).
    let page = waiting(&s, None, (0, 100), PAGE_BYTES).expect("waiting");
    assert_eq!(page.len(), 3);
    let rest = waiting(&s, None, (page[2]["rowid"].as_i64().expect("rowid"), 100), PAGE_BYTES).expect("rest");
    assert_eq!(rest.len(), 1);
    // What is left of a page begun in another shard: a smaller budget, one letter at least.
    assert_eq!(waiting(&s, None, (0, 100), 1).expect("waiting").len(), 1);
    assert_eq!(waiting(&s, None, (0, 100), third as u64 + 1).expect("waiting").len(), 2);
    // One letter alone over the budget is still a page.
    let huge = letter("huge", &"y".repeat(REPLAY_PAGE_BYTES + 1), "attempts_exhausted");
    park(&s, &[huge], T0, &mut Vec::new()).expect("park");
    let after = rest[0]["rowid"].as_i64().expect("rowid");
    assert_eq!(waiting(&s, None, (after, 100), PAGE_BYTES).expect("waiting").len(), 1);
}

#[test]
fn housekeeping_deletes_every_stored_copy_at_its_retention() {
    let s = shard();
    claim_one(&s, item("b1", "n1"), Some("a1"), T0);
    claim_one(&s, order("o1", "n1"), None, T0);
    park(
        &s,
        &[letter(
            "b1",
            "{\"hashed\":\"contact data\"}",
            "attempts_exhausted",
        )],
        T0,
        &mut Vec::new(),
    )
    .expect("park");
    add_counts(
        &s,
        &[
            Count::outcome(Outcome::Sent, ""),
            Count::order_seen(),
            Count::coverage("Purchase", "em"),
        ],
        T0 / DAY_MS,
    )
    .expect("counts");
    let rows = |table: &str| count_rows(&s, table);
    assert_eq!(
        (rows("events"), rows("dead_letters"), rows("daily_counts")),
        (2, 1, 3)
    );

    housekeep(&s, T0 + 6 * DAY_MS).expect("housekeeping");
    assert_eq!(
        (rows("events"), rows("dead_letters"), rows("daily_counts")),
        (2, 1, 3),
        "all kept within 6 days"
    );

    housekeep(&s, T0 + 8 * DAY_MS).expect("housekeeping");
    assert_eq!(
        rows("events"),
        1,
        "the browser event's claim and receipt are gone after 7 days"
    );
    assert_eq!(
        rows("dead_letters"),
        0,
        "dead letters are gone after 7 days"
    );
    assert_eq!(
        rows("daily_counts"),
        2,
        "stats counters are gone after 8 days, report rows stay"
    );

    housekeep(&s, T0 + 91 * DAY_MS).expect("housekeeping");
    assert_eq!(rows("events"), 0, "the order's claim is gone after 90 days");
    housekeep(&s, T0 + 93 * DAY_MS).expect("housekeeping");
    assert_eq!(
        rows("daily_counts"),
        0,
        "report rows are gone after 92 days"
    );
}

#[test]
fn an_object_from_before_numbered_migrations_is_brought_up_to_date() {
    let m = Mem(Connection::open_in_memory().expect("sqlite"));
    // The schema as objects made it before migrations were numbered (with `source` added).
    for ddl in MIGRATIONS[0].iter().chain(MIGRATIONS[1]) {
        m.run(ddl, Vec::new()).expect("old schema");
    }
    m.run(
        "INSERT INTO events (key, event_name, event_id, first_seen_ms, outcome, updated_ms, nonce, source)
         VALUES ('Purchase\no1', 'Purchase', 'o1', ?, 'sent', ?, 'n1', 'webhook')",
        vec![T0.into(), T0.into()],
    )
    .expect("old row");
    migrate(&m).expect("migrations");
    migrate(&m).expect("migrations run once");
    assert_eq!(
        schema_version(&m).expect("version"),
        MIGRATIONS.len() as i64
    );
    assert_eq!(
        claim_one(&m, order("o1", "n2"), None, T0 + 10 * DAY_MS),
        ClaimStatus::Duplicate
    );
    housekeep(&m, T0 + 10 * DAY_MS).expect("housekeeping");
    assert_eq!(
        count_rows(&m, "events"),
        1,
        "an old order's claim is kept 90 days too"
    );
}

#[test]
fn a_claim_an_attempt_is_sending_under_is_never_given_back() {
    let s = shard();
    // The webhook reserved it; its queued copy's consumer took the lease.
    reserved_then_leased(&s, "o1", "n1");
    release(&s, &order("o1", "n1").key.text(), "n1", None, T0 + 20).expect("release");
    // A redelivery of the webhook is still a duplicate: the consumer is sending it, and its
    // message retries it if that fails.
    assert_eq!(
        claim_one(&s, order("o1", "n2"), None, T0 + 30),
        ClaimStatus::Duplicate
    );
    // A reservation nobody leased is given back.
    assert!(is_send(claim_one(&s, order("o2", "n1"), None, T0)));
    release(&s, &order("o2", "n1").key.text(), "n1", None, T0 + 20).expect("release");
    assert!(is_send(claim_one(&s, order("o2", "n2"), None, T0 + 30)));
}

#[test]
fn a_webhook_delivered_directly_gives_back_its_own_attempts_lease() {
    let s = shard();
    let key = order("o1", "n1").key.text();
    // The queue refused the webhook; its direct attempt took the lease, and Meta failed
    // without the retry's receipt being written: the lease is still that attempt's.
    let direct = "direct:a1";
    assert!(is_send(claim_one(&s, order("o1", "n1"), None, T0)));
    assert!(is_send(claim_one(&s, order("o1", "n1"), Some(direct), T0 + 10)));
    // Another attempt cannot give it back while the lease runs; the direct one, which has
    // ended, can.
    release(&s, &key, "n1", Some("a2"), T0 + 20).expect("release");
    release(&s, &key, "n1", None, T0 + 20).expect("release");
    // Meanwhile a redelivery is asked to come back (no message carries the direct attempt).
    assert!(matches!(
        claim_one(&s, order("o1", "n2"), None, T0 + 30),
        ClaimStatus::Busy { .. }
    ));
    release(&s, &key, "n1", Some(direct), T0 + 40).expect("release");
    // The platform's redelivery of the webhook (a new copy) is sent.
    assert!(is_send(claim_one(&s, order("o1", "n3"), None, T0 + 50)));
    // A lease is never given back with another copy's claim, nor once the event was sent.
    assert!(is_send(claim_one(&s, order("o1", "n3"), Some("a3"), T0 + 60)));
    release(&s, &key, "n1", Some("a3"), T0 + 70).expect("release");
    settle(&s, "o1", "n3", Outcome::Sent, T0 + 80);
    release(&s, &key, "n3", Some("a3"), T0 + 90).expect("release");
    assert_eq!(
        claim_one(&s, order("o1", "n4"), None, T0 + 100),
        ClaimStatus::Duplicate
    );
}

#[test]
fn a_reservation_whose_message_never_came_is_taken_by_the_redelivery() {
    let s = shard();
    assert!(is_send(claim_one(&s, order("o1", "n1"), None, T0)));
    assert_eq!(
        claim_one(&s, order("o1", "n2"), None, T0 + 1000),
        ClaimStatus::Duplicate
    );
    let later = T0 + capi_core::claim::RESERVATION_MS;
    assert!(is_send(claim_one(&s, order("o1", "n3"), None, later)));
    // The first reservation's message, arriving late, is the duplicate now.
    assert_eq!(
        claim_one(&s, order("o1", "n1"), Some("a1"), later + 10),
        ClaimStatus::Duplicate
    );
}

fn cancel(s: &Mem, id: &str, now: i64) -> PurchaseAnswer {
    purchase(
        s,
        &item(id, "x").key,
        Some("cancelled"),
        true,
        &[],
        now,
        &mut Vec::new(),
    )
    .expect("purchase")
}

#[test]
fn a_cancellation_before_the_order_holds_its_purchase_back() {
    let s = shard();
    assert_eq!(cancel(&s, "o1", T0), PurchaseAnswer::Unknown);
    // `orders/create` arrives after `orders/cancelled`: never sent.
    assert_eq!(
        claim_one(&s, order("o1", "n1"), None, T0 + 10),
        ClaimStatus::Duplicate
    );
    let r = &receipts(&s, "o1").expect("receipts")[0];
    assert_eq!(
        (r["outcome"].as_str(), r["reason"].as_str()),
        (Some("ignored"), Some("cancelled"))
    );
}

#[test]
fn a_cancellation_settles_a_waiting_or_retrying_purchase_but_waits_for_a_send() {
    let s = shard();
    // Reserved by its webhook, waiting on the queue: its message then finds it settled.
    assert!(is_send(claim_one(&s, order("o2", "n2"), None, T0)));
    assert!(matches!(
        cancel(&s, "o2", T0 + 1),
        PurchaseAnswer::Pending { .. }
    ));
    assert_eq!(
        claim_one(&s, order("o2", "n2"), Some("a1"), T0 + 2),
        ClaimStatus::Settled
    );
    // Leased by an attempt: the cancellation waits, nothing changes.
    assert!(is_send(claim_one(&s, order("o3", "n3"), Some("a1"), T0)));
    assert!(matches!(
        cancel(&s, "o3", T0 + 1),
        PurchaseAnswer::InFlight { .. }
    ));
    // Meta answered 500: retrying, the lease ended; now it is held back.
    settle(&s, "o3", "n3", Outcome::Retrying, T0 + 2);
    assert!(matches!(
        cancel(&s, "o3", T0 + 3),
        PurchaseAnswer::Pending { .. }
    ));
    assert_eq!(
        claim_one(&s, order("o3", "n3"), Some("a2"), T0 + 4),
        ClaimStatus::Settled
    );
    // Delivered: a refund, with the keys kept for it.
    let with_keys = ClaimItem {
        carried: Some("{\"user_data\":{}}".into()),
        ..order("o4", "n4")
    };
    assert!(is_send(claim_one(&s, with_keys, Some("a1"), T0)));
    settle(&s, "o4", "n4", Outcome::Sent, T0 + 1);
    assert_eq!(
        cancel(&s, "o4", T0 + 2),
        PurchaseAnswer::Delivered {
            carried: Some("{\"user_data\":{}}".into())
        }
    );
    assert_eq!(receipts(&s, "o4").expect("receipts")[0]["outcome"], "sent");
}

#[test]
fn a_failed_payment_holds_back_a_waiting_purchase_but_blocks_no_later_one() {
    let s = shard();
    let failed = |id: &str, now| settle_purchase(&s, id, PAYMENT_FAILED, false, now);
    // Nothing claimed: nothing written, the paid retry of the same order is sent.
    assert_eq!(failed("o5", T0), PurchaseAnswer::Unknown);
    assert!(is_send(claim_one(&s, order("o5", "n5"), None, T0 + 1)));
    // Claimed and waiting: held back.
    assert!(matches!(
        failed("o5", T0 + 2),
        PurchaseAnswer::Pending { .. }
    ));
    assert_eq!(
        claim_one(&s, order("o5", "n5"), Some("a1"), T0 + 3),
        ClaimStatus::Settled
    );
}

/// The order rows of reconciliation with a count: (outcome, reason, count).
fn order_counts(s: &Mem) -> Vec<(String, String, i64)> {
    report_rows(s, 0, i64::MAX)
        .expect("rows")
        .iter()
        .filter(|r| r["kind"] == "order" && r["name"] != "seen" && int(r, "count") > 0)
        .map(|r| {
            let t = |k: &str| text(r, k).unwrap_or("").to_string();
            (t("name"), t("reason"), int(r, "count"))
        })
        .collect()
}

/// A copy of the paid order.
fn paid_order(id: &str, nonce: &str) -> ClaimItem {
    ClaimItem {
        paid: true,
        ..order(id, nonce)
    }
}

/// An order's update that settles its Purchase `why` (a cancellation with `create`, a failed
/// payment without), as `hooks.rs` asks it.
fn settle_purchase(s: &Mem, id: &str, why: &str, create: bool, now: i64) -> PurchaseAnswer {
    let key = item(id, "x").key;
    purchase(s, &key, Some(why), create, &[], now, &mut Vec::new()).expect("purchase")
}

/// `id`'s Purchase claimed by `n1` and waiting (Meta down), then held back by a failed payment.
fn held_back_by_a_failed_payment(s: &Mem, id: &str) {
    assert!(is_send(claim_one(s, order(id, "n1"), Some("a1"), T0)));
    settle(s, id, "n1", Outcome::Retrying, T0 + 1);
    let answer = settle_purchase(s, id, PAYMENT_FAILED, false, T0 + 2);
    assert!(matches!(answer, PurchaseAnswer::Pending { .. }));
    assert_eq!(
        claim_one(s, order(id, "n1"), Some("a2"), T0 + 3),
        ClaimStatus::Settled
    );
}

#[test]
fn a_purchase_a_failed_payment_held_back_is_sent_once_the_order_is_paid() {
    let s = shard();
    held_back_by_a_failed_payment(&s, "o7");
    assert_eq!(order_counts(&s), [("ignored".into(), PAYMENT_FAILED.into(), 1)]);
    // A redelivery of the placed order (before the payment) does not reopen it.
    assert_eq!(
        claim_one(&s, order("o7", "n9"), None, T0 + 4),
        ClaimStatus::Duplicate
    );
    // The buyer pays the same order: its paid update, a new copy, is sent…
    assert!(is_send(claim_one(&s, paid_order("o7", "n2"), None, T0 + 4)));
    assert!(is_send(claim_one(&s, order("o7", "n2"), Some("a3"), T0 + 5)));
    // …and the held-back copy's retry is a duplicate.
    assert_eq!(
        claim_one(&s, order("o7", "n1"), Some("a4"), T0 + 6),
        ClaimStatus::Duplicate
    );
    let paid = Receipt {
        source: Some(Source::Webhook),
        ..receipt("o7", "n2", Outcome::Sent)
    };
    record(&s, &[paid], T0 + 7, &mut Vec::new()).expect("record");
    // Reconciliation counts the order once, by its final outcome.
    assert_eq!(order_counts(&s), [("sent".into(), String::new(), 1)]);
}

#[test]
fn a_purchase_a_failed_payment_held_back_is_cancelled_for_good_by_a_cancellation() {
    let s = shard();
    held_back_by_a_failed_payment(&s, "o8");
    let answer = settle_purchase(&s, "o8", "cancelled", true, T0 + 4);
    assert!(matches!(answer, PurchaseAnswer::Pending { .. }));
    assert_eq!(
        claim_one(&s, paid_order("o8", "n2"), None, T0 + 5),
        ClaimStatus::Duplicate,
        "a cancelled order's Purchase is never sent"
    );
    assert_eq!(order_counts(&s), [("ignored".into(), "cancelled".into(), 1)]);
}

/// An order's webhook copy settled before any claim, as `hooks.rs` records it: a receipt with a
/// nonce of its own.
fn refused_copy(s: &Mem, id: &str, nonce: &str, outcome: Outcome, why: &str, now: i64) {
    let refused = Receipt {
        source: Some(Source::Webhook),
        reason: Some(why.into()),
        attempts: 0,
        ..receipt(id, nonce, outcome)
    };
    record(s, &[refused], now, &mut Vec::new()).expect("record");
}

#[test]
fn an_order_copy_refused_for_what_it_lacked_lets_the_next_copy_send_it() {
    let s = shard();
    for (id, outcome, why) in [
        ("o10", Outcome::Ignored, capi_core::privacy::NO_CONSENT),
        ("o11", Outcome::Rejected, "user_data_missing"),
    ] {
        // Stripe's payment_intent.succeeded comes first, without the consent or the customer.
        refused_copy(&s, id, "r1", outcome, why, T0);
        // Its redelivery finds it settled.
        assert_eq!(claim_one(&s, order(id, "r1"), None, T0 + 1), ClaimStatus::Settled);
        // checkout.session.completed, which carries them, takes the claim and is sent once.
        assert!(is_send(claim_one(&s, order(id, "c1"), None, T0 + 2)), "{why}");
        assert!(is_send(claim_one(&s, order(id, "c1"), Some("a1"), T0 + 3)));
        let sent = Receipt {
            source: Some(Source::Webhook),
            ..receipt(id, "c1", Outcome::Sent)
        };
        record(&s, &[sent], T0 + 4, &mut Vec::new()).expect("record");
        assert_eq!(
            claim_one(&s, order(id, "r2"), None, T0 + 5),
            ClaimStatus::Duplicate,
            "{why}: once sent, no other copy"
        );
    }
    // Each order counts once, by its final outcome.
    assert_eq!(order_counts(&s), [("sent".into(), String::new(), 2)]);
    // Meta's own rejection blocks the other copies as before.
    refused_copy(&s, "o12", "r1", Outcome::Rejected, "meta_code_100_subcode_0", T0);
    assert_eq!(claim_one(&s, order("o12", "c1"), None, T0 + 1), ClaimStatus::Duplicate);
}

#[test]
fn an_order_copy_refused_for_what_it_lacked_is_cancelled_for_good() {
    let s = shard();
    refused_copy(&s, "o13", "r1", Outcome::Ignored, capi_core::privacy::NO_CONSENT, T0);
    assert_eq!(order_counts(&s), [("ignored".into(), "no_consent".into(), 1)]);
    let answer = settle_purchase(&s, "o13", "cancelled", true, T0 + 1);
    assert_eq!(answer, PurchaseAnswer::Pending { carried: None });
    assert_eq!(
        claim_one(&s, order("o13", "c1"), None, T0 + 2),
        ClaimStatus::Duplicate,
        "a cancelled order's Purchase is never sent"
    );
    assert_eq!(order_counts(&s), [("ignored".into(), "cancelled".into(), 1)]);
}

#[test]
fn a_purchase_a_failed_payment_held_back_stays_reopenable_in_a_new_layout() {
    let old = shard();
    held_back_by_a_failed_payment(&old, "o9");
    assert!(is_send(claim_in_a_new_layout(
        &old,
        paid_order("o9", "n2"),
        T0 + 4
    )));
}

#[test]
fn a_purchase_delivered_under_the_previous_layout_is_not_cancelled_in_the_new_one() {
    let old = shard();
    assert!(is_send(claim_one(&old, order("o6", "n6"), Some("a1"), T0)));
    settle(&old, "o6", "n6", Outcome::Sent, T0 + 1);
    let imported = exported(&old, &[item("o6", "x").key.text()]).expect("exported");
    let new = shard();
    let answer = purchase(
        &new,
        &item("o6", "x").key,
        Some("cancelled"),
        true,
        &imported,
        T0 + 2,
        &mut Vec::new(),
    )
    .expect("purchase");
    assert!(
        matches!(answer, PurchaseAnswer::Delivered { .. }),
        "{answer:?}"
    );
}

/// How many orders reconciliation saw.
fn orders_seen(s: &Mem) -> i64 {
    report_rows(s, 0, i64::MAX)
        .expect("rows")
        .iter()
        .filter(|r| r["kind"] == "order" && r["name"] == "seen")
        .map(|r| int(r, "count"))
        .sum()
}

/// `id`'s Purchase claimed by an order's copy `n1` and parked (its token died).
fn dead_lettered_order(s: &Mem, id: &str) {
    assert!(is_send(claim_one(s, order(id, "n1"), Some("a1"), T0)));
    let parked = Receipt {
        source: Some(Source::Webhook),
        ..receipt(id, "n1", Outcome::DeadLettered)
    };
    record(s, &[parked], T0 + 1, &mut Vec::new()).expect("record");
    park(s, &[letter(id, "{}", "meta_code_190")], T0 + 1, &mut Vec::new()).expect("park");
    assert_eq!(
        order_counts(s),
        [("dead_lettered".into(), String::new(), 1)]
    );
}

#[test]
fn a_dead_lettered_order_counts_once_by_the_outcome_its_replay_or_cancellation_reaches() {
    let s = shard();
    dead_lettered_order(&s, "o20");
    // The token is fixed and the letter replayed: sent, and no longer dead.
    let replay = ClaimItem {
        replay: true,
        ..order("o20", "r1")
    };
    assert!(is_send(claim_one(&s, replay, Some("a2"), T0 + 2)));
    let sent = Receipt {
        source: Some(Source::Webhook),
        ..receipt("o20", "r1", Outcome::Sent)
    };
    record(&s, &[sent], T0 + 3, &mut Vec::new()).expect("record");
    assert_eq!(order_counts(&s), [("sent".into(), String::new(), 1)]);
    assert_eq!(orders_seen(&s), 1);

    let s = shard();
    dead_lettered_order(&s, "o21");
    settle_purchase(&s, "o21", "cancelled", true, T0 + 2);
    assert_eq!(order_counts(&s), [("ignored".into(), "cancelled".into(), 1)]);
}

#[test]
fn a_reservation_given_back_leaves_its_order_seen_once() {
    let s = shard();
    // The webhook reserves, the queue and Meta both fail, the claim is given back (503)…
    assert!(is_send(claim_one(&s, order("o22", "n1"), None, T0)));
    release(&s, &item("o22", "x").key.text(), "n1", None, T0 + 1).expect("release");
    // …and the platform's redelivery reserves it again.
    assert!(is_send(claim_one(&s, order("o22", "n2"), None, T0 + 2)));
    assert_eq!(orders_seen(&s), 1);
}

#[test]
fn a_signed_copy_takes_an_order_a_beacon_copy_left_waiting_or_parked() {
    let s = shard();
    // A beacon's Purchase, claimed before the webhooks were configured, waits for its retry.
    assert!(is_send(claim_one(&s, item("o23", "b1"), Some("a1"), T0)));
    settle(&s, "o23", "b1", Outcome::Retrying, T0 + 1);
    // The order's webhook takes the claim instead of being answered `duplicate`…
    assert!(is_send(claim_one(&s, order("o23", "w1"), None, T0 + 2)));
    // …and the beacon copy's retry sends nothing.
    assert_eq!(
        claim_one(&s, item("o23", "b1"), Some("a2"), T0 + 3),
        ClaimStatus::Duplicate
    );
    assert!(is_send(claim_one(&s, order("o23", "w1"), Some("a3"), T0 + 4)));
    let sent = Receipt {
        source: Some(Source::Webhook),
        ..receipt("o23", "w1", Outcome::Sent)
    };
    record(&s, &[sent], T0 + 5, &mut Vec::new()).expect("record");
    // Reconciliation sees the order once, sent.
    assert_eq!(orders_seen(&s), 1);
    assert_eq!(order_counts(&s), [("sent".into(), String::new(), 1)]);

    // A parked beacon copy: the webhook takes it, and its letter is no longer waiting.
    assert!(is_send(claim_one(&s, item("o24", "b1"), Some("a1"), T0)));
    settle(&s, "o24", "b1", Outcome::DeadLettered, T0 + 1);
    park(&s, &[letter("o24", "{}", "meta_code_190")], T0 + 1, &mut Vec::new()).expect("park");
    assert!(is_send(claim_one(&s, order("o24", "w1"), None, T0 + 2)));
    let waiting = waiting(&s, Some("o24"), (0, 10), u64::MAX).expect("waiting");
    assert!(waiting.is_empty(), "{waiting:?}");

    // A copy of its own whose attempt vanished (lease over, nothing carries it).
    assert!(is_send(claim_one(&s, order("o25", "w1"), None, T0)));
    assert!(is_send(claim_one(&s, order("o25", "w1"), Some("direct:a1"), T0 + 1)));
    assert!(is_send(claim_one(
        &s,
        order("o25", "w2"),
        None,
        T0 + 1 + LEASE_MS
    )));
    // A webhook's copy the consumer leased, its lease over without a receipt (Meta may have it):
    // its message retries it, never another copy.
    reserved_then_leased(&s, "o27", "w1");
    assert_eq!(
        claim_one(&s, order("o27", "w2"), None, T0 + 11 + LEASE_MS),
        ClaimStatus::Duplicate
    );
    // While another attempt sends it, the webhook is asked to come back (Busy), never sent.
    assert!(is_send(claim_one(&s, item("o26", "b1"), Some("a1"), T0)));
    assert!(matches!(
        claim_one(&s, order("o26", "w1"), None, T0 + 1),
        ClaimStatus::Busy { .. }
    ));
}

#[test]
fn a_receipt_lookup_shows_no_marks() {
    let s = shard();
    let mark = Receipt {
        key: EventKey {
            event_name: capi_core::webhook::lifecycle::MARK_EVENT.into(),
            event_id: "trial:sub_1".into(),
        },
        ..receipt("trial:sub_1", "m1", Outcome::Ignored)
    };
    settle(&s, "trial:sub_1", "n1", Outcome::Sent, T0);
    record(&s, &[mark], T0, &mut Vec::new()).expect("record");
    let found = receipts(&s, "trial:sub_1").expect("receipts");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["event_name"], "Purchase");
}

#[test]
fn a_copy_parked_by_a_fallback_gets_its_dead_lettered_receipt() {
    let s = shard();
    // An order's copy the consumer claimed (retrying), which the queue then refused, parked by
    // the direct fallback.
    reserved_then_leased(&s, "o30", "n1");
    settle(&s, "o30", "n1", Outcome::Retrying, T0 + 20);
    let parked = |nonce: &str, reason: &str| Letter {
        receipt: Some(Receipt {
            source: Some(Source::Webhook),
            reason: Some(reason.into()),
            ..receipt("o30", nonce, Outcome::DeadLettered)
        }),
        ..letter("o30", "{}", reason)
    };
    let mut counts = Vec::new();
    park(&s, &[parked("n1", "queue_unavailable")], T0 + 30, &mut counts).expect("park");
    assert!(counts.iter().any(|c| c.name == "dead_lettered"), "{counts:?}");
    let rows = receipts(&s, "o30").expect("receipts");
    assert_eq!(rows[0]["outcome"], "dead_lettered");
    assert_eq!(rows[0]["reason"], "queue_unavailable");
    assert_eq!(
        order_counts(&s),
        [("dead_lettered".into(), "queue_unavailable".into(), 1)]
    );
    // Another copy's letter never settles a claim it does not hold (no lease in the way).
    assert!(is_send(claim_one(&s, order("o31", "n1"), Some("a1"), T0)));
    settle(&s, "o31", "n1", Outcome::Retrying, T0);
    let other = Letter {
        receipt: Some(receipt("o31", "n9", Outcome::DeadLettered)),
        ..letter("o31", "{}", "queue_unavailable")
    };
    park(&s, &[other], T0 + 1, &mut Vec::new()).expect("park");
    assert_eq!(receipts(&s, "o31").expect("receipts")[0]["outcome"], "retrying");
}

#[test]
fn a_parked_copy_never_settles_a_claim_an_attempt_is_sending() {
    let s = shard();
    // The queue stored the batch it refused: the consumer leased the copy meanwhile.
    assert!(is_send(claim_one(&s, item("b40", "n1"), Some("a1"), T0)));
    let spare = Letter {
        receipt: Some(receipt("b40", "n1", Outcome::DeadLettered)),
        ..letter("b40", "{}", "queue_unavailable")
    };
    park(&s, &[spare], T0 + 1, &mut Vec::new()).expect("park");
    assert_eq!(receipts(&s, "b40").expect("receipts")[0]["outcome"], "queued");
    // The consumer's receipt stands.
    settle(&s, "b40", "n1", Outcome::Sent, T0 + 2);
    assert_eq!(receipts(&s, "b40").expect("receipts")[0]["outcome"], "sent");
}

#[test]
fn a_takeover_given_back_leaves_the_dead_letter_waiting() {
    let s = shard();
    // A beacon's copy of the order parked; the webhook takes it over (claim rule 10)…
    assert!(is_send(claim_one(&s, item("o41", "b1"), Some("a1"), T0)));
    settle(&s, "o41", "b1", Outcome::DeadLettered, T0 + 1);
    park(&s, &[letter("o41", "{}", "meta_code_190")], T0 + 1, &mut Vec::new()).expect("park");
    assert!(is_send(claim_one(&s, order("o41", "w1"), None, T0 + 2)));
    assert!(waiting(&s, Some("o41"), (0, 10), u64::MAX).expect("waiting").is_empty());
    // …then the queue and Meta fail and it gives the claim back: the letter waits again.
    release(&s, &item("o41", "x").key.text(), "w1", None, T0 + 3).expect("release");
    assert_eq!(waiting(&s, Some("o41"), (0, 10), u64::MAX).expect("waiting").len(), 1);
}

#[test]
fn a_webhook_waits_for_an_earlier_layouts_open_claim_for_a_minute_then_takes_it() {
    let old = shard();
    assert!(is_send(claim_one(&old, item("o42", "b1"), Some("a1"), T0)));
    settle(&old, "o42", "b1", Outcome::Retrying, T0 + 1);
    let imported = exported(&old, &[item("o42", "x").key.text()]).expect("export");
    let new = shard();
    let webhook = |nonce, now| {
        claim(&new, &[order("o42", nonce)], None, &imported, now, &mut Vec::new()).expect("claim")[0]
    };
    assert!(matches!(webhook("w1", T0 + 2), ClaimStatus::Busy { .. }));
    assert!(is_send(webhook("w2", T0 + 3 + RESERVATION_MS)));
}

#[test]
fn an_order_a_webhook_takes_over_from_a_beacon_is_seen_and_settled_on_one_day() {
    let s = shard();
    assert!(is_send(claim_one(&s, item("o43", "b1"), Some("a1"), T0)));
    settle(&s, "o43", "b1", Outcome::Retrying, T0 + 1);
    let next_day = T0 + DAY_MS;
    assert!(is_send(claim_one(&s, order("o43", "w1"), None, next_day)));
    let sent = Receipt {
        source: Some(Source::Webhook),
        ..receipt("o43", "w1", Outcome::Sent)
    };
    record(&s, &[sent], next_day + 1, &mut Vec::new()).expect("record");
    let days: Vec<(i64, String)> = report_rows(&s, 0, i64::MAX)
        .expect("rows")
        .iter()
        .filter(|r| r["kind"] == "order" && int(r, "count") > 0)
        .map(|r| (int(r, "day"), text(r, "name").unwrap_or("").to_string()))
        .collect();
    let day = next_day / DAY_MS;
    assert_eq!(days, [(day, "seen".to_string()), (day, "sent".to_string())]);
}

#[test]
fn an_incident_is_announced_until_told_once_each_way() {
    let s = shard();
    let open = |now| incident_open(&s, "token_invalid", 190, 3, now).expect("open");
    let close = |now| incident_close(&s, now).expect("close");
    // Opened: to be announced; a second round at once does not announce it again.
    let row = open(T0).expect("announce the opening");
    assert_eq!(row["opened_ms"], T0);
    assert!(open(T0 + 1).is_none(), "one try at a time");
    // The alert failed: a round after the retry interval tries again, with the first opening.
    let again = open(T0 + ALERT_RETRY_MS + 1).expect("announce again");
    assert_eq!(again["opened_ms"], T0);
    assert_eq!(again["held"], 9);
    incident_told(&s, "token_invalid", T0, "open").expect("told");
    assert!(open(T0 + ALERT_RETRY_MS + 2).is_none(), "told: not again");
    // Ended: its end announced at once (however soon after the last try of its opening), until
    // told, then never again.
    let t1 = T0 + ALERT_RETRY_MS + 3;
    assert_eq!(close(t1).len(), 1);
    assert!(close(t1 + 1).is_empty(), "one try at a time");
    assert_eq!(close(t1 + ALERT_RETRY_MS + 1).len(), 1, "its end tried again");
    incident_told(&s, "token_invalid", T0, "resolved").expect("told");
    assert!(close(t1 + 3 * ALERT_RETRY_MS).is_empty());
    // Opened again later: a new incident, announced.
    let t2 = t1 + 5 * ALERT_RETRY_MS;
    assert_eq!(open(t2).expect("a new opening")["opened_ms"], t2);
    // A late note about the earlier opening does not silence the new one.
    incident_told(&s, "token_invalid", T0, "open").expect("told");
    assert!(open(t2 + ALERT_RETRY_MS + 1).is_some());
    // Told open, then ended with its end never told, then opened again: the new opening is
    // announced (the earlier 'open' note is not carried over to it).
    incident_told(&s, "token_invalid", t2, "open").expect("told");
    let t3 = t2 + 5 * ALERT_RETRY_MS;
    assert_eq!(close(t3).len(), 1, "its end tried once, and fails");
    let t4 = t3 + 5 * ALERT_RETRY_MS;
    assert_eq!(open(t4).expect("the reopening announced")["opened_ms"], t4);
    incident_told(&s, "token_invalid", t4, "open").expect("told");
    // An end the receiver never takes is tried for a day after it, then left.
    let t5 = t4 + ALERT_RETRY_MS;
    assert_eq!(close(t5).len(), 1);
    assert_eq!(close(t5 + ALERT_END_GIVE_UP_MS - 1).len(), 1, "still tried");
    assert!(close(t5 + ALERT_END_GIVE_UP_MS + ALERT_RETRY_MS).is_empty());
}
