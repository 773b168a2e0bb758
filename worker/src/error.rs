//! The Worker's error type and its HTTP answers: `{"error": {"code", "message"}}`.
//! Detail goes to the log (never customer data); a browser never sees a secret or Meta's body.

use worker::{Headers, Response};

#[derive(Debug)]
#[non_exhaustive]
pub enum ApiError {
    /// The beacon was refused by `capi-core`; resending it unchanged will fail again.
    BadBeacon(capi_core::Error),
    /// Body over the size limit.
    TooLarge {
        limit: usize,
    },
    /// The event, encoded for the queue, is over `limit` bytes (non-ASCII text escapes to up
    /// to 6 bytes a character): refused before it is answered as taken.
    EventTooLarge {
        limit: usize,
    },
    /// Content-Type is neither JSON nor text/plain.
    UnsupportedMediaType,
    /// The request's Origin is not the shop's own nor in ALLOWED_ORIGINS.
    ForbiddenOrigin,
    /// A webhook's signature did not verify (missing, malformed, wrong secret, stale).
    BadSignature(&'static str),
    /// A verified webhook body is not an order we can read; the platform should not resend it.
    BadWebhook(&'static str),
    /// Meta could not take the event now; the webhook's platform should redeliver later.
    UpstreamUnavailable,
    /// An admin route could not read the ledger now (a shard timed out or failed): try again.
    LedgerUnavailable,
    /// A webhook found its order's event being sent by another copy (a cancellation its
    /// Purchase, a copy the event itself): redeliver after `retry_secs`.
    PurchaseInFlight {
        retry_secs: u32,
    },
    /// An admin route's query parameter is unusable; the message says which.
    BadQuery(&'static str),
    /// `/t/receipts` or `/t/stats` without the right bearer token.
    Unauthorized,
    /// A required setting is missing; retrying helps once the operator sets it.
    NotConfigured(&'static str),
    /// A setting holds an undocumented value; nothing is relayed until it is fixed.
    InvalidSetting(&'static str),
    /// The request host (or webhook route) belongs to no tenant of this deployment.
    UnknownTenant,
    /// Too many beacons from one client IP; retrying after a minute helps.
    RateLimited,
    /// The built pixel shim is not embedded in this build.
    ShimNotBuilt,
    NotFound,
    MethodNotAllowed,
    /// The runtime failed (reading the body, building a response); detail is logged only.
    Runtime(worker::Error),
}

impl From<worker::Error> for ApiError {
    fn from(e: worker::Error) -> Self {
        ApiError::Runtime(e)
    }
}

impl ApiError {
    fn parts(&self) -> (u16, &'static str, String) {
        match self {
            ApiError::BadBeacon(e) => (400, e.code(), e.to_string()),
            ApiError::TooLarge { limit } => (
                413,
                "body_too_large",
                format!("body must be at most {limit} bytes"),
            ),
            ApiError::EventTooLarge { limit } => (
                413,
                "event_too_large",
                format!("the event must encode to at most {limit} bytes (non-ASCII text counts up to 6 bytes a character)"),
            ),
            ApiError::UnsupportedMediaType => (
                415,
                "unsupported_media_type",
                "send JSON as application/json or text/plain".into(),
            ),
            ApiError::ForbiddenOrigin => (
                403,
                "origin_not_allowed",
                "this origin may not send events here; add it to ALLOWED_ORIGINS".into(),
            ),
            ApiError::BadSignature(why) => (
                401,
                "invalid_signature",
                format!("webhook signature refused: {why}"),
            ),
            ApiError::BadWebhook(why) => (400, "invalid_webhook", why.to_string()),
            ApiError::BadQuery(why) => (400, "invalid_query", why.to_string()),
            ApiError::UpstreamUnavailable => (
                503,
                "meta_unavailable",
                "the Conversions API is not reachable now; redeliver later".into(),
            ),
            ApiError::LedgerUnavailable => (
                503,
                "ledger_unavailable",
                "the ledger could not be read now; try again".into(),
            ),
            ApiError::PurchaseInFlight { .. } => (
                503,
                "purchase_in_flight",
                "the order's event is being sent now; redeliver later".into(),
            ),
            ApiError::Unauthorized => (
                401,
                "unauthorized",
                "send Authorization: Bearer <ADMIN_TOKEN>".into(),
            ),
            ApiError::NotConfigured(name) => (
                503,
                "not_configured",
                format!("the Worker is missing the {name} setting"),
            ),
            ApiError::InvalidSetting(name) => (
                503,
                "not_configured",
                format!("the Worker's {name} setting has an undocumented value"),
            ),
            ApiError::UnknownTenant => (
                404,
                "unknown_tenant",
                "this host is not a shop of this deployment; add it to a tenant's hosts".into(),
            ),
            ApiError::RateLimited => (
                429,
                "rate_limited",
                "too many events from this address; retry later".into(),
            ),
            ApiError::ShimNotBuilt => (
                404,
                "shim_not_built",
                "this build has no pixel shim; run `make build`".into(),
            ),
            ApiError::NotFound => (404, "not_found", "no such route".into()),
            ApiError::MethodNotAllowed => (
                405,
                "method_not_allowed",
                "method not allowed on this route".into(),
            ),
            ApiError::Runtime(_) => (500, "internal", "internal error".into()),
        }
    }

    /// The JSON answer for this error.
    pub fn into_response(self) -> worker::Result<Response> {
        if let ApiError::Runtime(e) = &self {
            crate::log::error("runtime_error", &[("error", crate::log::kind_of(e).into())]);
        }
        let (status, code, message) = self.parts();
        let retry_after = match &self {
            ApiError::PurchaseInFlight { retry_secs } => Some(*retry_secs),
            ApiError::RateLimited => Some(60),
            ApiError::LedgerUnavailable => Some(5),
            _ => None,
        };
        let body = serde_json::json!({"error": {"code": code, "message": message}});
        let headers = Headers::new();
        headers.set("content-type", "application/json")?;
        headers.set("cache-control", "no-store")?;
        if let Some(secs) = retry_after {
            headers.set("retry-after", &secs.to_string())?;
        }
        Ok(Response::from_bytes(body.to_string().into_bytes())?
            .with_status(status)
            .with_headers(headers))
    }
}
