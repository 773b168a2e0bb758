//! The Worker's side of the ledger: which object holds an event, one JSON op per call, a
//! deadline on every call (a Durable Object call can hang; the caller then treats the ledger as
//! unavailable), and the previous layout's claims while `LEDGER_PREVIOUS_SHARDS` is set.

use crate::config::{Config, PreviousLayout};
use crate::protocol::{
    ClaimItem, ClaimStatus, Count, EventKey, Imported, Letter, Op, PurchaseAnswer, Receipt,
    REPLAY_PAGE_BYTES,
};
use capi_core::delivery::ledger_shard;
use capi_core::report;
use futures_util::future::join_all;
use std::collections::BTreeMap;
use std::time::Duration;
use worker::{Env, Result};

/// The longest the Worker waits for one ledger call.
const CALL_TIMEOUT: Duration = Duration::from_secs(4);

/// Where a page of a list over every shard starts: after `rowid` in `shard`. Written
/// `{shard}.{rowid}` (digits and a dot: a query value as it is).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub shard: u32,
    pub rowid: i64,
}

impl Cursor {
    /// The cursor a page's `next` wrote, None if `text` is not one.
    pub fn parse(text: &str) -> Option<Cursor> {
        let (shard, rowid) = text.split_once('.')?;
        let digits = |t: &str| !t.is_empty() && t.len() <= 18 && t.bytes().all(|b| b.is_ascii_digit());
        (digits(shard) && digits(rowid)).then(|| Cursor {
            shard: shard.parse().unwrap_or(u32::MAX),
            rowid: rowid.parse().unwrap_or(0),
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.shard, self.rowid)
    }
}

/// A page of rows, each with where it lies, and where the next page starts.
pub type Page = (Vec<(Cursor, serde_json::Value)>, Option<Cursor>);

/// A listed row of `shard` without its `rowid`, and where it lies. A waiting letter from an
/// object of before pages is its body alone.
fn row(shard: u32, mut r: serde_json::Value) -> (Cursor, serde_json::Value) {
    let rowid = r["rowid"].as_i64().unwrap_or(0);
    match r.as_object_mut() {
        Some(o) => drop(o.remove("rowid")),
        None => r = serde_json::json!({ "body": r }),
    }
    (Cursor { shard, rowid }, r)
}

/// A handle on the ledger shards of one tenant's pixel: claims, receipts and counters of one
/// tenant never share an object with another's.
#[derive(Clone)]
pub struct LedgerClient {
    ns: worker::ObjectNamespace,
    /// `{tenant}/{pixel}`: the objects are `{tenant}/{pixel}/{shard}`.
    name: String,
    pixel_id: String,
    shards: u32,
    previous: Option<PreviousLayout>,
}

impl LedgerClient {
    pub fn for_pixel(
        env: &Env,
        cfg: &Config,
        tenant: &str,
        pixel_id: &str,
    ) -> Option<LedgerClient> {
        Some(LedgerClient {
            ns: env.durable_object("LEDGER").ok()?,
            name: format!("{tenant}/{pixel_id}"),
            pixel_id: pixel_id.to_string(),
            shards: cfg.ledger_shards.max(1),
            previous: cfg.previous_layout,
        })
    }

    /// The shard holding `event_id`.
    pub fn shard_of(&self, event_id: &str) -> u32 {
        ledger_shard(event_id, self.shards)
    }

    /// `items` grouped by the shard of their event.
    fn by_shard<T>(&self, items: Vec<T>, key: impl Fn(&T) -> &EventKey) -> BTreeMap<u32, Vec<T>> {
        let mut groups: BTreeMap<u32, Vec<T>> = BTreeMap::new();
        for item in items {
            groups
                .entry(self.shard_of(&key(&item).event_id))
                .or_default()
                .push(item);
        }
        groups
    }

    /// One op to one object, its answer as text. Not generic: the call's future (request,
    /// deadline, body) is compiled once, whatever the answer's type.
    async fn call_text(&self, object: &str, op: &Op) -> Result<String> {
        let stub = self.ns.id_from_name(object)?.get_stub()?;
        let body = serde_json::to_string(op)?;
        let req = crate::body::post("https://ledger/", body, false)
            .ok_or_else(|| worker::Error::RustError("ledger_request".into()))?;
        let call = async move {
            crate::stats::add(crate::stats::Stat::LedgerCalls, 1);
            let mut resp = stub.fetch_with_request(req).await?;
            if resp.status_code() != 200 {
                return Err(worker::Error::RustError("ledger_status".into()));
            }
            resp.text().await
        };
        crate::deadline::within(CALL_TIMEOUT, call)
            .await
            .unwrap_or_else(|| Err(worker::Error::RustError("ledger_timeout".into())))
    }

    async fn call_object<T: serde::de::DeserializeOwned>(
        &self,
        object: &str,
        op: &Op,
    ) -> Result<T> {
        let text = self.call_text(object, op).await?;
        Ok(serde_json::from_str(&text)?)
    }

    async fn call<T: serde::de::DeserializeOwned>(&self, shard: u32, op: &Op) -> Result<T> {
        self.call_object(&format!("{}/{shard}", self.name), op)
            .await
    }

    fn logged<T>(op: &'static str, r: Result<T>) -> Option<T> {
        r.map_err(|e| {
            crate::log::error(
                "ledger_unavailable",
                &[("op", op.into()), ("error", crate::log::kind_of(&e).into())],
            )
        })
        .ok()
    }

    /// The claims the previous layout holds for `items` (empty when there is none).
    async fn imported(&self, items: &[ClaimItem]) -> Result<Vec<Imported>> {
        let Some(previous) = self.previous else {
            return Ok(Vec::new());
        };
        let mut by_object: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for i in items {
            let object = match previous {
                PreviousLayout::Shards(n) => {
                    format!("{}/{}", self.name, ledger_shard(&i.key.event_id, n))
                }
                PreviousLayout::Legacy => self.pixel_id.clone(),
            };
            by_object.entry(object).or_default().push(i.key.text());
        }
        let mut all = Vec::new();
        for (object, keys) in by_object {
            all.extend(
                self.call_object::<Vec<Imported>>(&object, &Op::Holders { keys })
                    .await?,
            );
        }
        Ok(all)
    }

    /// Claims `items` (all in `shard`) for one attempt (`None`: reserves them), in one call.
    pub async fn claim(
        &self,
        shard: u32,
        items: Vec<ClaimItem>,
        attempt: Option<String>,
        now_ms: u64,
    ) -> Vec<ClaimStatus> {
        let n = items.len();
        let imported = match self.imported(&items).await {
            Ok(i) => i,
            Err(e) => {
                Self::logged::<()>("claim_previous_layout", Err(e));
                return vec![ClaimStatus::Unavailable; n];
            }
        };
        let op = Op::Claim {
            items,
            attempt,
            imported,
            now_ms: now_ms as i64,
        };
        Self::logged("claim", self.call::<Vec<ClaimStatus>>(shard, &op).await)
            .filter(|s| s.len() == n)
            .unwrap_or_else(|| vec![ClaimStatus::Unavailable; n])
    }

    /// Gives a reserved claim back, so a redelivery of the webhook is sent; with the lease of
    /// `attempt`, the caller's own attempt, once it has ended.
    pub async fn release(&self, key: &EventKey, nonce: &str, attempt: Option<&str>) {
        let op = Op::Release {
            key: key.clone(),
            nonce: nonce.to_string(),
            attempt: attempt.map(str::to_string),
        };
        Self::logged(
            "release",
            self.call::<serde_json::Value>(self.shard_of(&key.event_id), &op)
                .await,
        );
    }

    /// The state of an order's Purchase; with `cancel`, holds it back if it may be (claim rule
    /// 8). `None` when the ledger could not be reached.
    pub async fn purchase(
        &self,
        key: &EventKey,
        cancel: Option<&str>,
        create: bool,
        now_ms: u64,
    ) -> Option<PurchaseAnswer> {
        // A Purchase claimed under the previous layout is looked at there too.
        let probe = ClaimItem {
            key: key.clone(),
            nonce: String::new(),
            source: None,
            replay: false,
            counts: Vec::new(),
            carried: None,
            paid: false,
        };
        let imported = match self.imported(&[probe]).await {
            Ok(i) => i,
            Err(e) => return Self::logged("purchase_previous_layout", Err(e)),
        };
        let op = Op::Purchase {
            key: key.clone(),
            cancel: cancel.map(str::to_string),
            create,
            imported,
            now_ms: now_ms as i64,
        };
        Self::logged(
            "purchase",
            self.call(self.shard_of(&key.event_id), &op).await,
        )
    }

    /// Raises an incident in the pixel's shard 0; the incident when its opening is to be
    /// announced now.
    pub async fn incident_open(
        &self,
        cause: capi_core::meta_answer::Incident,
        code: i64,
        held: usize,
        now_ms: u64,
    ) -> Option<serde_json::Value> {
        let op = Op::IncidentOpen {
            cause,
            code,
            held: held as i64,
            now_ms: now_ms as i64,
        };
        Self::logged("incident", self.call::<serde_json::Value>(0, &op).await)
            .filter(|v| !v.is_null())
    }

    /// Ends the pixel's open incidents; the ended ones whose end is to be announced now.
    pub async fn incident_close(&self, now_ms: u64) -> Vec<serde_json::Value> {
        let op = Op::IncidentClose {
            now_ms: now_ms as i64,
        };
        Self::logged("incident", self.call(0, &op).await).unwrap_or_default()
    }

    /// Notes that an incident's `state` (`open`, `resolved`) was announced.
    pub async fn incident_told(&self, row: &serde_json::Value, state: &str) {
        let op = Op::IncidentTold {
            cause: row["cause"].as_str().unwrap_or("").to_string(),
            opened_ms: row["opened_ms"].as_i64().unwrap_or(0),
            state: state.to_string(),
        };
        Self::logged("incident", self.call::<serde_json::Value>(0, &op).await);
    }

    /// The pixel's incidents, open first.
    pub async fn incidents(&self) -> Result<Vec<serde_json::Value>> {
        self.call(0, &Op::Incidents {}).await
    }

    /// Records receipts and counts (all for `shard`) in one call; false if the ledger failed.
    pub async fn record(
        &self,
        shard: u32,
        receipts: Vec<Receipt>,
        counts: Vec<Count>,
        now_ms: u64,
    ) -> bool {
        if receipts.is_empty() && counts.is_empty() {
            return true;
        }
        let op = Op::Record {
            receipts,
            counts,
            now_ms: now_ms as i64,
        };
        Self::logged("record", self.call::<serde_json::Value>(shard, &op).await).is_some()
    }

    /// Records receipts of any shards: one call per shard, concurrently; false if any failed.
    pub async fn record_all(
        &self,
        receipts: Vec<Receipt>,
        mut counts: BTreeMap<u32, Vec<Count>>,
        now_ms: u64,
    ) -> bool {
        let mut by_shard = self.by_shard(receipts, |r| &r.key);
        for shard in counts.keys() {
            by_shard.entry(*shard).or_default();
        }
        let calls = by_shard.into_iter().map(|(shard, receipts)| {
            let c = counts.remove(&shard).unwrap_or_default();
            self.record(shard, receipts, c, now_ms)
        });
        join_all(calls).await.into_iter().all(|ok| ok)
    }

    pub async fn receipts(&self, event_id: &str) -> Result<Vec<serde_json::Value>> {
        let op = Op::Receipts {
            event_id: event_id.to_string(),
        };
        self.call(self.shard_of(event_id), &op).await
    }

    /// Reconciliation and coverage rows of every shard for `from_day..=to_day`.
    pub async fn report_rows(&self, from_day: i64, to_day: i64) -> Result<Vec<report::CountRow>> {
        let op = Op::Report { from_day, to_day };
        let mut rows = Vec::new();
        for shard in 0..self.shards {
            for r in self.call::<Vec<serde_json::Value>>(shard, &op).await? {
                let text = |k: &str| r[k].as_str().unwrap_or("").to_string();
                rows.push(report::CountRow {
                    day: r["day"].as_i64().unwrap_or(0),
                    kind: text("kind"),
                    name: text("name"),
                    reason: text("reason"),
                    count: r["count"].as_i64().unwrap_or(0),
                });
            }
        }
        Ok(rows)
    }

    /// Parks dead letters in their events' shards; false if any shard failed.
    pub async fn park(&self, letters: Vec<Letter>, now_ms: u64) -> bool {
        let by_shard = self.by_shard(letters, |l| &l.key);
        let calls = by_shard.into_iter().map(|(shard, letters)| async move {
            let op = Op::Park {
                letters,
                now_ms: now_ms as i64,
            };
            Self::logged("park", self.call::<serde_json::Value>(shard, &op).await).is_some()
        });
        join_all(calls).await.into_iter().all(|ok| ok)
    }

    /// A page of dead letters over every shard (ids, reasons, times) from `from`, and where
    /// the next page starts.
    pub async fn dead_letters(&self, from: Cursor, limit: u32) -> Result<Page> {
        self.page(from, limit, usize::MAX, &|after, limit, _| Op::DeadLetters {
            after,
            limit,
        })
        .await
    }

    /// A page of the letters waiting for replay over every shard from `from`, each `{body}`
    /// with the body unchanged (or the letters of one event id, all on one page). A page ends
    /// at `limit` letters or once its bodies reach [`REPLAY_PAGE_BYTES`].
    pub async fn waiting(&self, event_id: Option<&str>, from: Cursor, limit: u32) -> Result<Page> {
        let op = |after, limit, bytes: usize| Op::Waiting {
            event_id: event_id.map(str::to_string),
            after,
            limit,
            bytes: bytes as u64,
        };
        match event_id {
            Some(id) => {
                let shard = self.shard_of(id);
                let rows = self
                    .call::<Vec<serde_json::Value>>(shard, &op(0, limit, REPLAY_PAGE_BYTES))
                    .await?;
                Ok((rows.into_iter().map(|r| row(shard, r)).collect(), None))
            }
            None => self.page(from, limit, REPLAY_PAGE_BYTES, &op).await,
        }
    }

    /// One page of a list op over every shard: shard after shard, in rowid order, at most
    /// `limit` rows, ending early once the rows' bodies reach `bytes` (the object stops there
    /// too); the next page starts after its last row (None: nothing is left). A page costs at
    /// most one call per shard, whatever the shards hold. An object of a Worker from before
    /// pages answers every row without rowids: the page is then everything, with no next.
    async fn page(
        &self,
        from: Cursor,
        limit: u32,
        bytes: usize,
        op: &dyn Fn(i64, u32, usize) -> Op,
    ) -> Result<Page> {
        let mut rows: Vec<(Cursor, serde_json::Value)> = Vec::new();
        let (mut size, mut unpaged) = (0, false);
        for shard in from.shard..self.shards {
            let after = if shard == from.shard { from.rowid } else { 0 };
            let want = limit.saturating_sub(rows.len() as u32).max(1);
            let op = op(after, want, bytes.saturating_sub(size).max(1));
            for r in self.call::<Vec<serde_json::Value>>(shard, &op).await? {
                unpaged |= r.get("rowid").is_none();
                size += r["body"].as_str().map_or(0, str::len);
                rows.push(row(shard, r));
            }
            if !unpaged && (rows.len() as u32 >= limit || size >= bytes) {
                let next = rows.last().map(|(c, _)| *c);
                return Ok((rows, next));
            }
        }
        Ok((rows, None))
    }

    /// Counter rows of every shard, summed.
    pub async fn stats(&self, now_ms: u64) -> Result<Vec<serde_json::Value>> {
        let op = Op::Stats {
            now_ms: now_ms as i64,
        };
        let mut all: Vec<serde_json::Value> = Vec::new();
        for shard in 0..self.shards {
            for row in self.call::<Vec<serde_json::Value>>(shard, &op).await? {
                let same = |r: &serde_json::Value| {
                    ["kind", "name", "reason"].iter().all(|k| r[k] == row[k])
                };
                match all.iter_mut().find(|r| same(r)) {
                    Some(r) => {
                        r["count"] = (r["count"].as_i64().unwrap_or(0)
                            + row["count"].as_i64().unwrap_or(0))
                        .into()
                    }
                    None => all.push(row),
                }
            }
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    #[test]
    fn a_cursor_reads_back_what_a_page_wrote_and_nothing_else() {
        let c = Cursor {
            shard: 3,
            rowid: 1042,
        };
        assert_eq!(Cursor::parse(&c.to_string()), Some(c));
        for bad in ["", "3", "3.", ".5", "-1.5", "3.-5", "3.5.1", "a.1", "3.1e3", "+3.1", "3 .1"] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
        // Too many digits: a shard past every layout, never an overflow.
        assert_eq!(Cursor::parse("99999999999.1").map(|c| c.shard), Some(u32::MAX));
    }
}
