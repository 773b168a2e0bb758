//! The one deadline every I/O call of the Worker runs under: a queue send, a ledger call, a
//! request to Meta. A call that has not answered by then is treated as failed; whatever it may
//! still do later is what the claim protocol is built to absorb.

use futures_util::future::{select, Either};
use std::future::Future;
use std::time::Duration;
use worker::Delay;

/// `call`'s output, or `None` when `limit` passed first (the call is dropped).
pub async fn within<T>(limit: Duration, call: impl Future<Output = T>) -> Option<T> {
    match select(Box::pin(call), Box::pin(Delay::from(limit))).await {
        Either::Left((out, _)) => Some(out),
        Either::Right(_) => None,
    }
}
