//! The Graph API request: one POST with Meta's recommended client timeout.

use capi_core::delivery::META_CLIENT_TIMEOUT_MS;
use capi_core::meta_answer::{meta_answer, MetaAnswer};
use std::time::Duration;
use worker::{AbortController, Fetch};

const META_TIMEOUT: Duration = Duration::from_millis(META_CLIENT_TIMEOUT_MS);

/// One POST; network errors and timeouts are transient. The token is in the body, never in
/// the URL.
pub async fn post(url: &str, body: String) -> MetaAnswer {
    let transient = MetaAnswer::Transient {
        code: None,
        fbtrace_id: None,
    };
    let Some(req) = crate::body::post(url, body, true) else {
        return transient;
    };
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(req);
    crate::stats::add(crate::stats::Stat::MetaRequests, 1);
    match crate::deadline::within(META_TIMEOUT, fetch.send_with_signal(&signal)).await {
        Some(Ok(mut resp)) => {
            let status = resp.status_code();
            let text = resp.text().await.unwrap_or_default();
            meta_answer(status, &text)
        }
        Some(Err(_)) => transient,
        None => {
            controller.abort();
            transient
        }
    }
}
