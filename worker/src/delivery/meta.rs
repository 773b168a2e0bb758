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
    // The answer's body is read under the same deadline: an attempt must not outlive its lease
    // waiting for a body that stalls after the status line.
    let call = async {
        let mut resp = fetch.send_with_signal(&signal).await?;
        let status = resp.status_code();
        Ok::<_, worker::Error>((status, resp.text().await.unwrap_or_default()))
    };
    match crate::deadline::within(META_TIMEOUT, call).await {
        Some(Ok((status, text))) => meta_answer(status, &text),
        Some(Err(_)) => transient,
        None => {
            controller.abort();
            transient
        }
    }
}
