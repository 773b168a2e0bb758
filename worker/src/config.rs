//! Configuration from wrangler.toml `[vars]` and secrets (names per DESIGN.md).

use crate::error::ApiError;
use worker::Env;

use capi_core::event::DEFAULT_API_VERSION;
use capi_core::privacy::{InvalidSetting, Modes};

/// Ledger shards per pixel unless `LEDGER_SHARDS` says otherwise. One Durable Object serves
/// about 1,000 requests/s; the consumer makes two calls per shard per batch of up to 100
/// events, so 8 shards carry far beyond a large shop's peak while keeping batches together.
pub const DEFAULT_LEDGER_SHARDS: u32 = 8;

#[derive(Clone)]
pub struct Config {
    pub pixel_id: Option<String>,
    pub access_token: Option<String>,
    /// `META_APP_SECRET` (secret): when set, every request carries `appsecret_proof`.
    pub app_secret: Option<String>,
    pub graph_url: String,
    pub api_version: String,
    pub test_event_code: Option<String>,
    /// Extra origins allowed to post beacons (comma separated), besides the shop's own.
    pub allowed_origins: String,
    /// `Domain=` for the `_fbp`/`_fbc` server cookies; host-only when unset.
    pub cookie_domain: Option<String>,
    pub route_prefix: String,
    /// Serves the demo storefront at `/` (local development only).
    pub demo_storefront: bool,
    /// Delivery attempts before an event is dead-lettered (`MAX_DELIVERY_ATTEMPTS`).
    pub max_delivery_attempts: u32,
    /// First retry delay in seconds, doubled per attempt (`RETRY_BASE_SECONDS`).
    pub retry_base_secs: u32,
    /// Longest delay between two attempts in seconds (`RETRY_MAX_SECONDS`, default 1 h).
    pub retry_max_secs: u32,
    /// Bearer token for `/t/receipts` and `/t/stats` (`ADMIN_TOKEN` secret).
    pub admin_token: Option<String>,
    /// Webhook secrets by setting name (each may hold two, comma separated, for rotation).
    webhook_secrets: Vec<(&'static str, String)>,
    /// `CUSTOMER_DATA`, `CONSENT`, `GPC`, `LDU`; an undocumented value is an error (nothing is
    /// relayed until it is fixed: the Worker never guesses a privacy mode).
    pub modes: Result<Modes, InvalidSetting>,
    /// Ledger objects per pixel (`LEDGER_SHARDS`, 1–256).
    pub ledger_shards: u32,
}

/// The webhook secret settings, one per platform.
const WEBHOOK_SECRETS: [&str; 4] = [
    "SHOPIFY_WEBHOOK_SECRET",
    "WOOCOMMERCE_WEBHOOK_SECRET",
    "STRIPE_WEBHOOK_SECRET",
    "ORDER_WEBHOOK_SECRET",
];

impl Config {
    pub fn from_env(env: &Env) -> Config {
        let var = |name: &str| {
            env.var(name)
                .ok()
                .map(|v| v.to_string())
                .or_else(|| env.secret(name).ok().map(|s| s.to_string()))
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Config {
            pixel_id: var("PIXEL_ID"),
            access_token: var("META_ACCESS_TOKEN"),
            app_secret: var("META_APP_SECRET"),
            graph_url: var("META_GRAPH_URL").unwrap_or_else(|| "https://graph.facebook.com".into()),
            api_version: var("META_API_VERSION").unwrap_or_else(|| DEFAULT_API_VERSION.into()),
            test_event_code: var("TEST_EVENT_CODE"),
            allowed_origins: var("ALLOWED_ORIGINS").unwrap_or_default(),
            cookie_domain: var("COOKIE_DOMAIN"),
            route_prefix: var("ROUTE_PREFIX")
                .unwrap_or_else(|| "/t".into())
                .trim_end_matches('/')
                .to_string(),
            demo_storefront: var("DEMO_STOREFRONT").as_deref() == Some("on"),
            max_delivery_attempts: var("MAX_DELIVERY_ATTEMPTS")
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
                .unwrap_or(30),
            retry_base_secs: var("RETRY_BASE_SECONDS")
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
                .unwrap_or(10),
            retry_max_secs: var("RETRY_MAX_SECONDS")
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
                .unwrap_or(capi_core::delivery::MAX_RETRY_DELAY_SECS),
            admin_token: var("ADMIN_TOKEN"),
            webhook_secrets: WEBHOOK_SECRETS
                .iter()
                .filter_map(|name| var(name).map(|v| (*name, v)))
                .collect(),
            modes: Modes::parse(
                var("CUSTOMER_DATA").as_deref(),
                var("CONSENT").as_deref(),
                var("GPC").as_deref(),
                var("LDU").as_deref(),
            ),
            ledger_shards: var("LEDGER_SHARDS")
                .and_then(|v| v.parse().ok())
                .filter(|n| (1..=256).contains(n))
                .unwrap_or(DEFAULT_LEDGER_SHARDS),
        }
    }

    /// The privacy modes, or the setting that holds an undocumented value.
    pub fn privacy(&self) -> Result<Modes, ApiError> {
        self.modes
            .map_err(|InvalidSetting(name)| ApiError::InvalidSetting(name))
    }

    /// Whether any order webhook is configured: then server Purchases come from signed
    /// webhooks only (see `ingest`).
    pub fn has_signed_orders(&self) -> bool {
        !self.webhook_secrets.is_empty()
    }

    /// A webhook secret setting's value, if configured.
    pub fn secret(&self, name: &str) -> Option<String> {
        self.webhook_secrets
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    }

    /// Pixel id and access token, or the name of the missing setting.
    pub fn meta_credentials(&self) -> Result<(String, String), ApiError> {
        match (&self.pixel_id, &self.access_token) {
            (Some(p), Some(t)) => Ok((p.clone(), t.clone())),
            (None, _) => Err(ApiError::NotConfigured("PIXEL_ID")),
            (_, None) => Err(ApiError::NotConfigured("META_ACCESS_TOKEN")),
        }
    }
}
