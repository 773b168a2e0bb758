//! Configuration from wrangler.toml `[vars]` and secrets (names per DESIGN.md).
//!
//! One deployment serves many shops: `TENANTS` (JSON, see README "Many shops") maps request
//! hosts to tenants — pixels, origins, cookie domain, privacy modes, webhook secrets, admin
//! token, test code — with every secret referenced by the name it was stored under
//! (`wrangler secret put NAME`), never inlined. Without `TENANTS`, the single-shop vars
//! (`PIXEL_ID`, `META_ACCESS_TOKEN`, …) are the one tenant, `default`, for any host.
//! A tenant that cannot be read is reported at `/t/health` (names only, never a value) and
//! nothing is relayed for it.
//!
//! Long on purpose: every setting, its default and its validation in one place (docs/configuration.md's table mirrors it).

use crate::error::ApiError;
use capi_core::event::DEFAULT_API_VERSION;
use capi_core::privacy::{InvalidSetting, Modes};
use capi_core::webhook::lifecycle::OrderSettings;
use serde::Deserialize;
use std::cell::RefCell;
use std::rc::Rc;
use worker::Env;

/// Ledger shards per pixel unless `LEDGER_SHARDS` says otherwise. One Durable Object serves
/// about 1,000 requests/s; the consumer makes two calls per shard per batch of up to 100
/// events, so 8 shards carry far beyond a large shop's peak while keeping batches together.
pub const DEFAULT_LEDGER_SHARDS: u32 = 8;

/// Where claims lived before the ledger layout changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreviousLayout {
    /// `{tenant}/{pixel}/{shard}` with this many shards.
    Shards(u32),
    /// One object per pixel, named by the pixel id (before tenants and shards).
    Legacy,
}

/// The tenant built from the single-shop vars.
pub const DEFAULT_TENANT: &str = "default";

/// One pixel of a tenant: where its events go and with which credentials.
#[derive(Clone, Debug)]
pub struct Pixel {
    pub id: String,
    pub access_token: Option<String>,
    /// When set, every request carries `appsecret_proof`.
    pub app_secret: Option<String>,
}

/// One shop: everything that differs between the shops of one deployment.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub id: String,
    /// Request hosts that belong to this tenant. A `TENANTS` tenant serves only these (none
    /// when the list is empty: that is an error of its own, not a wildcard).
    pub hosts: Vec<String>,
    /// Serves any host: only the single-shop tenant built from `PIXEL_ID` without `TENANTS`.
    any_host: bool,
    /// Every event fans out to each of these pixels.
    pub pixels: Vec<Pixel>,
    /// Extra origins allowed to post beacons (comma separated), besides the shop's own.
    pub allowed_origins: String,
    /// `Domain=` for the `_fbp`/`_fbc` server cookies; the registrable domain when unset.
    pub cookie_domain: Option<String>,
    /// `CUSTOMER_DATA`, `CONSENT`, `GPC`, `LDU`; an undocumented value is an error.
    pub modes: Result<Modes, InvalidSetting>,
    /// `PURCHASE_ON`, `REFUNDS`, `RENEWALS`, `OFFLINE_ORDERS`, `ORDER_VALUE`; an undocumented
    /// value is an error.
    pub orders: Result<OrderSettings, InvalidSetting>,
    /// Webhook secrets by platform (`shopify`, `woocommerce`, `stripe`, `order`), each may hold
    /// two values, comma separated, for rotation.
    webhook_secrets: Vec<(&'static str, String)>,
    /// Bearer token for this tenant's admin routes.
    pub admin_token: Option<String>,
    /// Where incidents are announced (`ALERT_WEBHOOK`, a secret: a Slack-compatible URL).
    pub alert_webhook: Option<String>,
    pub test_event_code: Option<String>,
    /// The only session test codes (`?capi_test=CODE`) attached to events
    /// (`TEST_EVENT_CODES`, comma separated; TENANTS `test_event_codes`). Empty: none
    /// (`capi_core::website::session_test_code`).
    pub test_event_codes: Vec<String>,
    /// What is wrong with this tenant's configuration (setting names only, never a value);
    /// nothing is relayed while it is not empty.
    pub errors: Vec<String>,
    /// What is not honoured without stopping the tenant (an admin token it shares), shown by
    /// `/t/health` beside its errors.
    pub warnings: Vec<String>,
}

#[derive(Clone)]
pub struct Config {
    pub graph_url: String,
    pub api_version: String,
    pub route_prefix: String,
    /// Serves the demo storefront at `/` (local development only).
    pub demo_storefront: bool,
    /// Delivery attempts before an event is dead-lettered (`MAX_DELIVERY_ATTEMPTS`).
    pub max_delivery_attempts: u32,
    /// First retry delay in seconds, doubled per attempt (`RETRY_BASE_SECONDS`).
    pub retry_base_secs: u32,
    /// Longest delay between two attempts in seconds (`RETRY_MAX_SECONDS`, default 1 h).
    pub retry_max_secs: u32,
    /// The ledger layout before `LEDGER_SHARDS` last changed (`LEDGER_PREVIOUS_SHARDS`: its
    /// shard count, or `legacy` for one object per pixel): claims are looked up there too.
    pub previous_layout: Option<PreviousLayout>,
    /// The operator's bearer token (`ADMIN_TOKEN` secret): every tenant's admin routes.
    pub admin_token: Option<String>,
    /// Ledger objects per pixel (`LEDGER_SHARDS`, 1–256).
    pub ledger_shards: u32,
    /// The tenants, or why `TENANTS` cannot be read at all.
    pub tenants: Result<Vec<Tenant>, String>,
}

/// The platforms of `/t/hooks/{platform}` and their single-shop secret settings.
pub const PLATFORMS: [(&str, &str); 4] = [
    ("shopify", "SHOPIFY_WEBHOOK_SECRET"),
    ("woocommerce", "WOOCOMMERCE_WEBHOOK_SECRET"),
    ("stripe", "STRIPE_WEBHOOK_SECRET"),
    ("order", "ORDER_WEBHOOK_SECRET"),
];

/// `TENANTS` entries as written in wrangler.toml; secrets by name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantIn {
    id: String,
    hosts: Vec<String>,
    pixels: Vec<PixelIn>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default)]
    cookie_domain: Option<String>,
    #[serde(default)]
    customer_data: Option<String>,
    #[serde(default)]
    consent: Option<String>,
    #[serde(default)]
    gpc: Option<String>,
    #[serde(default)]
    ldu: Option<String>,
    #[serde(default)]
    purchase_on: Option<String>,
    #[serde(default)]
    refunds: Option<String>,
    #[serde(default)]
    renewals: Option<String>,
    #[serde(default)]
    offline_orders: Option<String>,
    #[serde(default)]
    order_value: Option<String>,
    /// Platform → the name of the secret holding its webhook secret.
    #[serde(default)]
    webhook_secrets: std::collections::BTreeMap<String, String>,
    /// The name of the secret holding this tenant's admin token.
    #[serde(default)]
    admin_token: Option<String>,
    /// The name of the secret holding this tenant's alert webhook URL.
    #[serde(default)]
    alert_webhook: Option<String>,
    #[serde(default)]
    test_event_code: Option<String>,
    #[serde(default)]
    test_event_codes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PixelIn {
    id: String,
    /// The name of the secret holding this pixel's access token.
    access_token: String,
    /// The name of the secret holding the app secret, for `appsecret_proof`.
    #[serde(default)]
    app_secret: Option<String>,
}

thread_local! {
    /// Vars and secrets are fixed for the life of an isolate: read them once.
    static CACHED: RefCell<Option<Rc<Config>>> = const { RefCell::new(None) };
}

impl Config {
    /// The configuration, read once per isolate (shared, not copied, per call).
    pub fn from_env(env: &Env) -> Rc<Config> {
        if let Some(c) = CACHED.with(|c| c.borrow().clone()) {
            return c;
        }
        let cfg = Rc::new(Config::read(env));
        cfg.log_problems();
        CACHED.with(|c| *c.borrow_mut() = Some(cfg.clone()));
        cfg
    }

    /// Once per isolate: what cannot be read, by setting and secret names only.
    fn log_problems(&self) {
        match &self.tenants {
            Err(e) => crate::log::error("tenants_not_readable", &[("error", e.clone().into())]),
            Ok(ts) => {
                for t in ts.iter().filter(|t| t.usable().is_err()) {
                    crate::log::error(
                        "tenant_not_configured",
                        &[
                            ("tenant", t.id.clone().into()),
                            ("errors", t.errors.clone().into()),
                            (
                                "invalid_setting",
                                t.modes.and(t.orders).err().map(|e| e.0).into(),
                            ),
                        ],
                    );
                }
            }
        }
    }

    fn read(env: &Env) -> Config {
        let var = |name: &str| {
            env.var(name)
                .ok()
                .map(|v| v.to_string())
                .or_else(|| env.secret(name).ok().map(|s| s.to_string()))
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let num = |name: &str, default: u32, ok: &dyn Fn(u32) -> bool| {
            var(name)
                .and_then(|v| v.parse().ok())
                .filter(|n| ok(*n))
                .unwrap_or(default)
        };
        let tenants = match var("TENANTS") {
            None => Ok(vec![single_shop(&var)]),
            Some(json) => tenants_from(&json, &var),
        };
        Config {
            graph_url: var("META_GRAPH_URL").unwrap_or_else(|| "https://graph.facebook.com".into()),
            api_version: var("META_API_VERSION").unwrap_or_else(|| DEFAULT_API_VERSION.into()),
            route_prefix: var("ROUTE_PREFIX")
                .unwrap_or_else(|| "/t".into())
                .trim_end_matches('/')
                .to_string(),
            demo_storefront: var("DEMO_STOREFRONT").as_deref() == Some("on"),
            max_delivery_attempts: num("MAX_DELIVERY_ATTEMPTS", 30, &|n| n > 0),
            retry_base_secs: num("RETRY_BASE_SECONDS", 10, &|n| n > 0),
            retry_max_secs: num(
                "RETRY_MAX_SECONDS",
                capi_core::delivery::MAX_RETRY_DELAY_SECS,
                &|n| n > 0,
            ),
            admin_token: var("ADMIN_TOKEN"),
            ledger_shards: num("LEDGER_SHARDS", DEFAULT_LEDGER_SHARDS, &|n| {
                (1..=256).contains(&n)
            }),
            previous_layout: var("LEDGER_PREVIOUS_SHARDS").and_then(|v| match v.trim() {
                "legacy" => Some(PreviousLayout::Legacy),
                n => n
                    .parse()
                    .ok()
                    .filter(|n| (1..=256).contains(n))
                    .map(PreviousLayout::Shards),
            }),
            tenants,
        }
    }

    /// The tenant a request host belongs to (the single-shop tenant serves any host), or a
    /// documented error: `not_configured` when `TENANTS` or that tenant cannot be read.
    pub fn tenant_for_host(&self, host: &str) -> Result<&Tenant, ApiError> {
        self.listed_tenant_for_host(host).and_then(Tenant::usable)
    }

    /// The tenant a host belongs to, readable or not (the admin routes authenticate its admin
    /// token whatever else is wrong with it, as they do for `?tenant=`).
    pub fn listed_tenant_for_host(&self, host: &str) -> Result<&Tenant, ApiError> {
        if self.tenants.is_err() {
            return Err(ApiError::NotConfigured("TENANTS"));
        }
        self.host_tenant(host).ok_or(ApiError::UnknownTenant)
    }

    /// The tenant a host belongs to, readable or not: a `TENANTS` tenant takes only the hosts
    /// it lists, so a broken one affects its own hosts only; the single-shop tenant takes any.
    pub fn host_tenant(&self, host: &str) -> Option<&Tenant> {
        let host = host.trim_end_matches('.');
        self.tenants
            .as_ref()
            .ok()?
            .iter()
            .find(|t| t.any_host || t.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)))
    }

    /// A tenant by id.
    pub fn tenant(&self, id: &str) -> Option<&Tenant> {
        self.tenants.as_ref().ok()?.iter().find(|t| t.id == id)
    }
}

impl Tenant {
    /// The tenant if its configuration can be read, else `not_configured` naming what is wrong.
    pub fn usable(&self) -> Result<&Tenant, ApiError> {
        if let Err(InvalidSetting(name)) = self.modes.and(self.orders) {
            return Err(ApiError::InvalidSetting(name));
        }
        if !self.errors.is_empty() || self.pixels.is_empty() {
            // The single-shop tenant names the setting to set; others point at TENANTS.
            return Err(ApiError::NotConfigured(match self.id.as_str() {
                DEFAULT_TENANT if self.pixels.is_empty() => "PIXEL_ID",
                DEFAULT_TENANT => "META_ACCESS_TOKEN",
                _ => "TENANTS",
            }));
        }
        Ok(self)
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

    /// A platform's webhook secret (`shopify`, `woocommerce`, `stripe`, `order`), if set.
    pub fn webhook_secret(&self, platform: &str) -> Option<&str> {
        self.webhook_secrets
            .iter()
            .find(|(p, _)| *p == platform)
            .map(|(_, v)| v.as_str())
    }

    /// A pixel of this tenant with its credentials.
    pub fn pixel(&self, id: &str) -> Option<&Pixel> {
        self.pixels.iter().find(|p| p.id == id)
    }
}

/// Whether this build reads the secrets. The beacon Worker of the split deployment (built
/// without `backend`) holds none: it never calls Meta, and it forwards webhooks and admin
/// routes, so a secret it lacks is no error there (the whole Worker behind it reports its own).
const SECRETS_READ_HERE: bool = cfg!(feature = "backend");

/// The one tenant of a single-shop deployment, from `PIXEL_ID`, `META_ACCESS_TOKEN`, … .
fn single_shop(var: &dyn Fn(&str) -> Option<String>) -> Tenant {
    let mut errors = Vec::new();
    let pixels = match var("PIXEL_ID") {
        Some(id) => vec![Pixel {
            id,
            access_token: var("META_ACCESS_TOKEN"),
            app_secret: var("META_APP_SECRET"),
        }],
        None => {
            errors.push("PIXEL_ID is not set".to_string());
            Vec::new()
        }
    };
    if SECRETS_READ_HERE && pixels.iter().any(|p| p.access_token.is_none()) {
        errors.push("META_ACCESS_TOKEN is not set".to_string());
    }
    Tenant {
        id: DEFAULT_TENANT.into(),
        hosts: Vec::new(),
        any_host: true,
        pixels,
        allowed_origins: var("ALLOWED_ORIGINS").unwrap_or_default(),
        cookie_domain: var("COOKIE_DOMAIN"),
        modes: Modes::parse(
            var("CUSTOMER_DATA").as_deref(),
            var("CONSENT").as_deref(),
            var("GPC").as_deref(),
            var("LDU").as_deref(),
        ),
        orders: OrderSettings::parse(
            var("PURCHASE_ON").as_deref(),
            var("REFUNDS").as_deref(),
            var("RENEWALS").as_deref(),
            var("OFFLINE_ORDERS").as_deref(),
            var("ORDER_VALUE").as_deref(),
        ),
        webhook_secrets: PLATFORMS
            .iter()
            .filter_map(|(p, name)| var(name).map(|v| (*p, v)))
            .collect(),
        admin_token: None,
        alert_webhook: var("ALERT_WEBHOOK"),
        test_event_code: var("TEST_EVENT_CODE"),
        test_event_codes: var("TEST_EVENT_CODES")
            .map(|v| code_list(v.split(',')))
            .unwrap_or_default(),
        errors,
        warnings: Vec::new(),
    }
}

/// An allow-list of test codes as written: trimmed, empty entries left out.
fn code_list<'a>(codes: impl Iterator<Item = &'a str>) -> Vec<String> {
    codes
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// Tenants from the `TENANTS` JSON, each secret resolved by name. A JSON error fails the whole
/// setting; a missing secret or a bad field fails only its tenant.
fn tenants_from(json: &str, var: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Tenant>, String> {
    // serde's message may quote the input (a secret name or worse): only its position is kept.
    let list: Vec<TenantIn> = serde_json::from_str(json).map_err(|e| {
        format!(
            "TENANTS is not a valid tenants list ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        )
        .to_lowercase()
    })?;
    let mut seen_ids = std::collections::BTreeSet::new();
    let mut seen_hosts = std::collections::BTreeSet::new();
    let mut tenants = Vec::with_capacity(list.len());
    for t in list {
        let mut errors = Vec::new();
        let valid_id = !t.id.is_empty()
            && t.id.len() <= 64
            && t.id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid_id {
            errors.push("id must be 1-64 letters, digits, `-` or `_`".to_string());
        }
        let unique_id = seen_ids.insert(t.id.clone());
        if !unique_id {
            errors.push("id is used by another tenant".to_string());
        }
        let id_ok = valid_id && unique_id;
        if t.hosts.is_empty() {
            errors.push("hosts must list at least one host".to_string());
        }
        for h in &t.hosts {
            if !h.is_ascii() {
                // Requests name their host in ASCII, and the Worker reads no Unicode hosts
                // (core/Cargo.toml: no IDNA tables): such a host would never match.
                errors.push("hosts must be ASCII: write a Unicode host in punycode (xn--…)".into());
            } else if !seen_hosts.insert(h.to_ascii_lowercase()) {
                errors.push("a host is listed by another tenant".to_string());
            }
        }
        let mut missing = Vec::new();
        let mut secret = |what: &str, name: &str| {
            let value = var(name);
            if value.is_none() {
                // Named only when it reads as a name: what a merchant pasted where the name
                // belongs may be the secret itself, and errors are logged and shown by health.
                missing.push(if looks_like_secret_name(name) {
                    format!("{what}: secret {name} is not set")
                } else {
                    format!(
                        "{what}: the secret it names is not set (the name is not shown: a \
                         secret's name is A-Z, 0-9 and _, up to 64; was a value pasted?)"
                    )
                });
            }
            value
        };
        let mut pixels = Vec::with_capacity(t.pixels.len());
        for p in &t.pixels {
            pixels.push(Pixel {
                id: p.id.clone(),
                access_token: secret(&format!("pixel {}", p.id), &p.access_token),
                app_secret: p
                    .app_secret
                    .as_deref()
                    .and_then(|n| secret(&format!("pixel {} app secret", p.id), n)),
            });
        }
        let mut webhook_secrets = Vec::new();
        let mut unknown_platform = false;
        for (platform, name) in &t.webhook_secrets {
            match PLATFORMS.iter().find(|(p, _)| p == platform) {
                Some((p, _)) => {
                    if let Some(v) = secret(&format!("{p} webhook"), name) {
                        webhook_secrets.push((*p, v));
                    }
                }
                None => unknown_platform = true,
            }
        }
        let admin_token = t
            .admin_token
            .as_deref()
            .and_then(|n| secret("admin token", n));
        let alert_webhook = t
            .alert_webhook
            .as_deref()
            .and_then(|n| secret("alert webhook", n));
        if SECRETS_READ_HERE {
            errors.append(&mut missing);
        }
        if unknown_platform {
            errors.push("webhook_secrets keys are shopify, woocommerce, stripe or order".into());
        }
        if pixels.is_empty() {
            errors.push("pixels must list at least one pixel".to_string());
        }
        if pixels
            .iter()
            .any(|p| p.id.is_empty() || !p.id.bytes().all(|b| b.is_ascii_digit()))
        {
            errors.push("a pixel id must be digits".to_string());
        }
        tenants.push(Tenant {
            id: t.id,
            hosts: t.hosts,
            any_host: false,
            pixels,
            allowed_origins: t.allowed_origins.join(","),
            cookie_domain: t.cookie_domain,
            modes: Modes::parse(
                t.customer_data.as_deref(),
                t.consent.as_deref(),
                t.gpc.as_deref(),
                t.ldu.as_deref(),
            ),
            orders: OrderSettings::parse(
                t.purchase_on.as_deref(),
                t.refunds.as_deref(),
                t.renewals.as_deref(),
                t.offline_orders.as_deref(),
                t.order_value.as_deref(),
            ),
            webhook_secrets,
            // A tenant whose id is not its own would open another tenant's ledger with it.
            admin_token: if id_ok { admin_token } else { None },
            alert_webhook,
            test_event_code: t.test_event_code,
            test_event_codes: code_list(t.test_event_codes.iter().map(String::as_str)),
            errors,
            warnings: Vec::new(),
        });
    }
    // One admin token per tenant, never the operator's: a token two tenants share would read
    // both, and the operator's reads every tenant. Such a token is not honoured; the tenant
    // relays as before (an admin route's setting never stops its events).
    let operator = var("ADMIN_TOKEN");
    let tokens: Vec<Option<String>> = tenants.iter().map(|t| t.admin_token.clone()).collect();
    for (n, t) in tenants.iter_mut().enumerate() {
        let Some(mine) = &tokens[n] else { continue };
        let shared = tokens
            .iter()
            .enumerate()
            .any(|(m, other)| m != n && other.as_ref() == Some(mine));
        if operator.as_ref() == Some(mine) {
            t.warnings
                .push("admin token: it is the operator's ADMIN_TOKEN, not honoured".into());
        } else if shared {
            t.warnings
                .push("admin token: another tenant has the same one, not honoured".into());
        } else {
            continue;
        }
        t.admin_token = None;
    }
    // Only `/t/health` shows warnings: the beacon Worker has none to show.
    #[cfg(feature = "backend")]
    warn_shared_cookie_domains(&mut tenants);
    Ok(tenants)
}

/// Browser cookies (`_fbp`, `_fbc`, `_capi_eid`) go on a host's registrable domain unless the
/// tenant sets `cookie_domain`: two shops on hosts of one domain would read, and clear, each
/// other's. Said to each of them (the other is not named).
#[cfg(feature = "backend")]
fn warn_shared_cookie_domains(tenants: &mut [Tenant]) {
    let domains: Vec<Vec<String>> = tenants
        .iter()
        .map(|t| {
            t.hosts
                .iter()
                .filter_map(|h| capi_core::fbc::cookie_domain(t.cookie_domain.as_deref(), h))
                .collect()
        })
        .collect();
    // Another tenant's cookies reach this tenant's host when their domain is the host or a
    // parent of it (and the other way round, said to the other tenant).
    let reaches = |d: &str, host: &str| {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        host == d || host.ends_with(&format!(".{d}"))
    };
    for (n, t) in tenants.iter_mut().enumerate() {
        let shared = domains.iter().enumerate().find_map(|(m, other)| {
            (m != n)
                .then(|| {
                    other
                        .iter()
                        .find(|d| t.hosts.iter().any(|h| reaches(d, h)) || domains[n].contains(d))
                })
                .flatten()
        });
        if let Some(d) = shared {
            t.warnings.push(format!(
                "cookie domain {d}: another tenant's host sets its cookies there too; set cookie_domain to this shop's own host"
            ));
        }
    }
}

/// Whether `name` reads as the name of a secret (`SHOP_A_TOKEN`), not as a value.
fn looks_like_secret_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_uppercase()
        && b.iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
}
