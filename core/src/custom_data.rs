//! `custom_data` from the page: what is kept, fixed, or refused before it reaches Meta.
//!
//! Meta sends `custom_data` on as it is: nothing in it is hashed (D-CD). So contact data found
//! anywhere in it — any depth, objects and arrays, `contents` items included — is scrubbed,
//! whatever `CUSTOMER_DATA` says; only where it goes differs ([`sanitized`]):
//!
//! - **By key**, split into words (`customer_email`, `billingCity`, `Shipping-Zip`,
//!   `EMAIL_ADDRESS` and `customeremail` all name what they hold): email; phone / telephone /
//!   mobile number; first, last, full, middle and user names; street and address lines; zip /
//!   postal code; date of birth; IP address; Meta's own `user_data` keys (`em`, `ph`, `fn`,
//!   `ln`, `ct`, `st`, `zp`, `db`, `ge`, `external_id`); credentials (`access_token`, tokens,
//!   passwords, secrets) and a nested `user_data`. Words that describe a person only when the
//!   key is about one — `name`, `city`, `state` / `province` / `region`, `country`, `gender`,
//!   `mobile` — are scrubbed with a personal prefix (`billing_city`, `recipient_name`,
//!   `customerCountry`) or inside a personal object (`customer`, `billing`, `shipping`,
//!   `user`, `buyer`, `contact`, `recipient`, …; in an `address` object every text is scrubbed).
//!   At the top level a bare `name`, `state` or `gender` is scrubbed too, but `city`, `region`
//!   and `country` are kept: they are Meta's standard parameters for the location of the
//!   user's intent (hotel, travel, real estate; D-CD). Elsewhere (`contents` items, other
//!   objects) a bare `name`, `country` or `gender` describes the product and is kept, as are
//!   `content_name`, `product_name`, `store_city`. A key with a flag word (`email_opt_in`,
//!   `phone_verified`, `email_count`, `address_type`) is not contact data; ids the shop assigns
//!   (`customer_id`, `user_id`) are not contact data either and are kept.
//! - **By value**, under any key: a text holding an email address, or a phone number written
//!   as one (`+1 (555) 010-9999`, `0049 30 1234567`, `030 1234567`, `555-010-9999`). Bare digit
//!   runs (order numbers, EANs), dates, prices, IPv4 addresses and digits glued to letters
//!   (`SKU-12345`) are not phone numbers, and values under id, price and quantity keys
//!   (`order_id`, `content_ids`, `contents[].id`, `quantity`, `item_price`, `value`, …) are
//!   never phones by shape. A key that is itself an email or phone number is dropped with its
//!   value.
//!
//! Booleans and nulls carry no contact data and are kept. Every scrubbed value is counted as a
//! [`Dropped`] with a bounded field name ([`COUNTED_FIELDS`]) and never the value.
//!
//! Long on purpose: the scrubber's key shapes and value shapes are one rule set a privacy review reads together; split, its decisions would scatter.

use crate::event::{UserData, UNHASHED_IDS};
use crate::normalize::{self, Field};
use crate::privacy::CustomerData;
use serde_json::{Map, Value};

/// A `custom_data` key dropped or fixed, and why. Never carries the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub field: String,
    pub reason: &'static str,
}

/// Reason: contact data or a credential found in `custom_data`, dropped.
pub const NOT_ALLOWED: &str = "customer_data_not_allowed_in_custom_data";
/// Reason: contact data found in `custom_data` under a key naming a Meta match key, moved to
/// `user_data` normalized and hashed (`CUSTOMER_DATA = hashed`, and `user_data` lacked it).
pub const HASHED_INTO_USER_DATA: &str = "hashed_into_user_data";
/// Reason: `value`, `currency`, `content_ids` or `num_items` of a shape Meta refuses.
pub const INVALID_VALUE: &str = "invalid_custom_data_value";

/// What a scrubbed value is: the name it is counted under and where it may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Email,
    Phone,
    FirstName,
    LastName,
    /// A full, middle or user name, or a bare `name` about a person: no Meta key takes it.
    Name,
    Address,
    City,
    State,
    Zip,
    Country,
    BirthDate,
    Gender,
    Ip,
    ExternalId,
    /// One of Meta's own ids of a person (`lead_id`, `madid`, …): it belongs in `user_data`,
    /// where data controls govern it; in `custom_data` it is dropped in every mode.
    MetaId,
    /// A `user_data` object inside `custom_data`: dropped whole.
    UserData,
    AccessToken,
    Token,
    Password,
    Secret,
}

impl Kind {
    #[cfg(test)]
    const ALL: [Kind; 20] = [
        Kind::Email,
        Kind::Phone,
        Kind::FirstName,
        Kind::LastName,
        Kind::Name,
        Kind::Address,
        Kind::City,
        Kind::State,
        Kind::Zip,
        Kind::Country,
        Kind::BirthDate,
        Kind::Gender,
        Kind::Ip,
        Kind::ExternalId,
        Kind::MetaId,
        Kind::UserData,
        Kind::AccessToken,
        Kind::Token,
        Kind::Password,
        Kind::Secret,
    ];

    /// The field name it is counted under (a `/t/stats` row).
    fn label(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Phone => "phone",
            Kind::FirstName => "first_name",
            Kind::LastName => "last_name",
            Kind::Name => "name",
            Kind::Address => "address",
            Kind::City => "city",
            Kind::State => "state",
            Kind::Zip => "zip",
            Kind::Country => "country",
            Kind::BirthDate => "date_of_birth",
            Kind::Gender => "gender",
            Kind::Ip => "ip_address",
            Kind::ExternalId => "external_id",
            Kind::MetaId => "meta_id",
            Kind::UserData => "user_data",
            Kind::AccessToken => "access_token",
            Kind::Token => "token",
            Kind::Password => "password",
            Kind::Secret => "secret",
        }
    }

    /// The Meta match key a value of this kind becomes with `CUSTOMER_DATA = hashed`. Names
    /// Meta has no key for (full name), addresses and IPs (the edge sets the IP) have none.
    fn user_data_field(self) -> Option<Field> {
        Some(match self {
            Kind::Email => Field::Em,
            Kind::Phone => Field::Ph,
            Kind::FirstName => Field::Fn,
            Kind::LastName => Field::Ln,
            Kind::City => Field::Ct,
            Kind::State => Field::St,
            Kind::Zip => Field::Zp,
            Kind::Country => Field::Country,
            Kind::BirthDate => Field::Db,
            Kind::Gender => Field::Ge,
            Kind::ExternalId => Field::ExternalId,
            _ => return None,
        })
    }

    /// Credentials and nested `user_data` go whole, whatever their shape.
    fn drops_whole(self) -> bool {
        matches!(
            self,
            Kind::UserData | Kind::AccessToken | Kind::Token | Kind::Password | Kind::Secret
        )
    }
}

/// Meta's unhashed `user_data` ids that name no person: a subscription, a Facebook page.
const META_IDS_OF_NO_PERSON: [&str; 2] = ["subscription_id", "page_id"];

/// Whether `words`, run together, spell `key` without its underscores (`lead_id` for `leadId`,
/// `lead_id`, `LEADID`; no allocation: this runs for every key).
fn spells(words: &[String], key: &str) -> bool {
    key.chars()
        .filter(|c| *c != '_')
        .eq(words.iter().flat_map(|w| w.chars()))
}

/// Field names a `custom_data` drop is counted under: the kinds above, plus the key names
/// earlier versions counted (so rows already stored keep their names).
pub const COUNTED_FIELDS: &[&str] = &[
    "email",
    "phone",
    "first_name",
    "last_name",
    "name",
    "address",
    "city",
    "state",
    "zip",
    "country",
    "date_of_birth",
    "gender",
    "ip_address",
    "external_id",
    "meta_id",
    "user_data",
    "access_token",
    "token",
    "password",
    "secret",
    // Earlier versions' names.
    "e_mail",
    "telephone",
    "mobile",
    "firstname",
    "lastname",
    "full_name",
    "street",
    "address1",
    "address2",
    "postcode",
    "postal_code",
    "dob",
    "birthday",
    "ip",
];

/// Where in `custom_data` a key sits: it decides whether a word like `name` is about a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// `custom_data` itself.
    Top,
    /// `contents` items and other objects not about a person.
    Other,
    /// Inside an object about a person (`customer`, `billing`, `recipient`, …).
    Personal,
    /// Inside an address: every text is part of it.
    Address,
}

/// Words that make a key (or the object under it) about a person: `billing_city`,
/// `recipientName`, `{"customer": {…}}`.
const PERSONAL: &[&str] = &[
    "customer",
    "billing",
    "bill",
    "shipping",
    "ship",
    "user",
    "buyer",
    "contact",
    "recipient",
    "payer",
    "shopper",
    "purchaser",
    "person",
    "personal",
    "member",
    "guest",
    "owner",
    "holder",
    "cardholder",
    "delivery",
    "sender",
    "receiver",
    "consignee",
    "addressee",
    "traveler",
    "traveller",
    "passenger",
    "patient",
    "beneficiary",
    "profile",
    "identity",
];

/// A string under one of these bare keys is a person (`"recipient": "Jane Doe"`).
const PERSON_NOUNS: &[&str] = &[
    "customer",
    "buyer",
    "recipient",
    "payer",
    "shopper",
    "purchaser",
    "cardholder",
    "addressee",
    "consignee",
    "sender",
    "receiver",
    "traveler",
    "traveller",
    "passenger",
    "patient",
    "beneficiary",
];

/// Words that make a personal-sounding object about something else: `shipping_method`,
/// `shipping_lines`, `customer_segmentation`.
const NOT_A_PERSON: &[&str] = &[
    "method",
    "methods",
    "rate",
    "rates",
    "option",
    "options",
    "cost",
    "costs",
    "fee",
    "fees",
    "price",
    "prices",
    "tax",
    "taxes",
    "carrier",
    "provider",
    "line",
    "lines",
    "item",
    "items",
    "product",
    "products",
    "category",
    "type",
    "zone",
    "class",
    "tier",
    "total",
    "totals",
    "segmentation",
    "status",
    "speed",
    "policy",
    "settings",
    "preference",
    "preferences",
];

/// Words that make a key a flag or a statistic about contact data, not contact data:
/// `email_opt_in`, `phone_verified`, `email_count`, `address_type`.
const FLAG_WORDS: &[&str] = &[
    "count",
    "consent",
    "consents",
    "opt",
    "optin",
    "optout",
    "verified",
    "verification",
    "subscribed",
    "subscription",
    "enabled",
    "type",
    "format",
    "status",
    "valid",
    "validated",
    "confirmed",
    "domain",
    "provider",
    "length",
    "method",
    "preference",
    "preferences",
    "required",
    "allowed",
];

/// Words that make a `name`, `city` or `country` describe a thing, not a person, even in a
/// personal object: `store_name`, `product_country`.
const THING_WORDS: &[&str] = &[
    "product",
    "products",
    "item",
    "items",
    "content",
    "contents",
    "store",
    "shop",
    "brand",
    "category",
    "variant",
    "company",
    "event",
    "page",
    "campaign",
    "merchant",
    "seller",
    "vendor",
    "plan",
    "coupon",
    "promo",
    "promotion",
    "discount",
    "file",
    "list",
    "collection",
    "origin",
    "destination",
    "pickup",
    "warehouse",
    "carrier",
];

/// Bare top-level keys scrubbed although they only sometimes name a person. `city`, `region`
/// and `country` are not here: at the top level they are Meta's standard parameters for the
/// location of the user's intent (D-CD).
const TOP_BARE: &[&str] = &[
    "name",
    "names",
    "state",
    "province",
    "county",
    "prefecture",
    "town",
    "gender",
    "sex",
    "mobile",
    "cell",
];

/// Last words of keys whose values are ids, amounts or counts: never a phone by shape
/// (`order_id`, `content_ids`, `contents[].id`, `item_price`, `quantity`, `value`).
const NOT_A_PHONE: &[&str] = &[
    "id",
    "ids",
    "sku",
    "skus",
    "gtin",
    "ean",
    "upc",
    "isbn",
    "mpn",
    "price",
    "amount",
    "total",
    "subtotal",
    "quantity",
    "qty",
    "count",
    "value",
    "ltv",
    "revenue",
    "currency",
    "items",
    "number",
    "no",
    "nr",
    "date",
    "time",
    "timestamp",
    "version",
];

/// Meta's standard `custom_data` keys as a page sends them, with whether a phone's shape never
/// counts under them ([`phone_shape_never`]). None of them names contact data: read as a key
/// at the top, each gives no kind, no person, no address scope (a test derives all of it, and
/// the phone flag, from the rules below), so a scalar or an array of scalars under one needs
/// only the shape check of its texts. Beacons carry these keys on every event; the words of
/// the rest are read as before.
const STANDARD_KEYS: &[(&str, bool)] = &[
    ("value", true),
    ("currency", true),
    ("content_ids", true),
    ("content_type", false),
    ("content_name", false),
    ("content_category", false),
    ("num_items", true),
    ("order_id", true),
    ("search_string", false),
    ("status", false),
    ("predicted_ltv", true),
    ("delivery_category", false),
];

/// [`STANDARD_KEYS`]' phone flag for `key` (exact spelling), or `None` for any other key.
fn standard_key(key: &str) -> Option<bool> {
    STANDARD_KEYS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, no_phone)| *no_phone)
}

/// Cleans the page's `custom_data`: scrubs contact data and credentials at any depth (see the
/// module docs), makes `value` a finite number ≥ 0, `currency` an uppercase ISO 4217-shaped
/// code, `content_ids` strings.
///
/// With `CUSTOMER_DATA = off` every scrubbed value is dropped. With `hashed` a value found
/// under a key naming one of Meta's match keys (email → `em`, phone → `ph`, first / last name
/// → `fn` / `ln`, city → `ct`, state → `st`, zip → `zp`, country, date of birth → `db`,
/// gender → `ge`, `external_id`) moves into `user_data`, normalized and hashed by
/// [`normalize`], when `user_data` has no value for that key yet; the first one found wins
/// (keys in order, depth first) and everything else is dropped — a value found only by its
/// shape (an email in a `note`) may be someone else's and is never moved. `country` is the
/// event's `user_data` country, used for phones, states and zips when the value's own object
/// has no country. Each scrubbed value is one [`Dropped`], reason [`NOT_ALLOWED`] or
/// [`HASHED_INTO_USER_DATA`].
pub fn sanitized(
    input: Map<String, Value>,
    customer_data: CustomerData,
    user_data: &mut UserData,
    country: Option<&str>,
    dropped: &mut Vec<Dropped>,
) -> Map<String, Value> {
    let mut scrub = Scrub {
        customer_data,
        user_data,
        country,
        dropped,
    };
    let hint = own_country(&input, Scope::Top);
    let mut out = Map::new();
    for (key, value) in input {
        let Some(value) = scrub.entry(&key, value, Scope::Top, None, hint.as_deref()) else {
            continue;
        };
        let fixed = match key.to_ascii_lowercase().as_str() {
            "value" | "predicted_ltv" | "net_revenue" => amount(&value).map(Value::from),
            "currency" => currency(&value).map(Value::String),
            "content_ids" => content_ids(&value),
            "num_items" => value.as_u64().map(Value::from),
            _ => Some(value),
        };
        match fixed {
            Some(v) => {
                out.insert(key, v);
            }
            None => scrub.dropped.push(Dropped {
                field: key,
                reason: INVALID_VALUE,
            }),
        }
    }
    out
}

/// One pass over a `custom_data` tree.
struct Scrub<'a> {
    customer_data: CustomerData,
    user_data: &'a mut UserData,
    country: Option<&'a str>,
    dropped: &'a mut Vec<Dropped>,
}

impl Scrub<'_> {
    /// An entry of an object, scrubbed; `None` when nothing of it may stay.
    fn entry(
        &mut self,
        key: &str,
        value: Value,
        scope: Scope,
        inherited: Option<Kind>,
        hint: Option<&str>,
    ) -> Option<Value> {
        if scope == Scope::Top && inherited.is_none() {
            if let Some(no_phone) = standard_key(key) {
                let flat = match &value {
                    Value::Object(_) => false,
                    Value::Array(items) => items
                        .iter()
                        .all(|i| !matches!(i, Value::Object(_) | Value::Array(_))),
                    _ => true,
                };
                if flat {
                    return self.standard(value, no_phone, hint);
                }
            }
        }
        if let Some(kind) = shape_kind(key, false) {
            self.remove(kind, None, hint);
            return None;
        }
        let words = key_words(key);
        let own = key_kind(&words, scope);
        if let Some(kind) = own.filter(|k| k.drops_whole()) {
            self.remove(kind, None, hint);
            return None;
        }
        let passed_down = match own {
            Some(k) if k == Kind::Name || strong_kind(&words).is_some() => Some(k),
            Some(_) => None,
            None => inherited_kind(&words, inherited),
        };
        match value {
            Value::Object(map) => {
                let scope = child_scope(&words, scope, own);
                self.container(Value::Object(map), scope, passed_down, &words, hint)
            }
            Value::Array(items) => {
                let scope = child_scope(&words, scope, own);
                self.container(Value::Array(items), scope, passed_down, &words, hint)
            }
            Value::String(_) if own.is_none() && passed_down.is_none() && is_person(&words) => {
                self.remove(Kind::Name, None, hint);
                None
            }
            scalar => {
                let kind = own.or(passed_down).or_else(|| address_part(scope, &words));
                self.leaf(scalar, kind, &words, hint)
            }
        }
    }

    /// A scalar or an array of scalars under one of [`STANDARD_KEYS`] at the top: what
    /// [`Self::entry`] does with it, the key's reading known beforehand.
    fn standard(&mut self, value: Value, no_phone: bool, hint: Option<&str>) -> Option<Value> {
        let text = |v: Value, scrub: &mut Self| match &v {
            Value::String(s) => match shape_kind(s, no_phone) {
                Some(kind) => {
                    scrub.remove(kind, None, hint);
                    None
                }
                None => Some(v),
            },
            _ => Some(v),
        };
        match value {
            Value::Array(items) if items.is_empty() => Some(Value::Array(items)),
            Value::Array(items) => {
                let out: Vec<Value> = items.into_iter().filter_map(|v| text(v, self)).collect();
                (!out.is_empty()).then_some(Value::Array(out))
            }
            scalar => text(scalar, self),
        }
    }

    /// An object or array, scrubbed; `None` when scrubbing emptied it (an empty one stays).
    fn container(
        &mut self,
        value: Value,
        scope: Scope,
        inherited: Option<Kind>,
        words: &[String],
        hint: Option<&str>,
    ) -> Option<Value> {
        match value {
            Value::Object(map) => {
                if map.is_empty() {
                    return Some(Value::Object(map));
                }
                let own = own_country(&map, scope);
                let hint = own.as_deref().or(hint);
                let mut out = Map::new();
                for (k, v) in map {
                    if let Some(v) = self.entry(&k, v, scope, inherited, hint) {
                        out.insert(k, v);
                    }
                }
                (!out.is_empty()).then_some(Value::Object(out))
            }
            Value::Array(items) => {
                if items.is_empty() {
                    return Some(Value::Array(items));
                }
                let out: Vec<Value> = items
                    .into_iter()
                    .filter_map(|item| match item {
                        Value::Object(_) | Value::Array(_) => {
                            self.container(item, scope, inherited, words, hint)
                        }
                        scalar => {
                            let kind = inherited.or_else(|| address_part(scope, words));
                            self.leaf(scalar, kind, words, hint)
                        }
                    })
                    .collect();
                (!out.is_empty()).then_some(Value::Array(out))
            }
            scalar => Some(scalar),
        }
    }

    /// A string, number, boolean or null under the key `words`: scrubbed when its key says it
    /// is contact data (`kind`) or, for a string, when its shape does.
    fn leaf(
        &mut self,
        value: Value,
        kind: Option<Kind>,
        words: &[String],
        hint: Option<&str>,
    ) -> Option<Value> {
        match (&value, kind) {
            (Value::String(_) | Value::Number(_), Some(kind)) => {
                self.remove(kind, Some(&value), hint);
                None
            }
            (Value::String(s), None) => match shape_kind(s, phone_shape_never(words)) {
                Some(kind) => {
                    // Found by its shape only: it may be someone else's, so never moved.
                    self.remove(kind, None, hint);
                    None
                }
                None => Some(value),
            },
            _ => Some(value),
        }
    }

    /// Counts a scrubbed value; with `hashed`, first moves a `movable` one into `user_data`.
    fn remove(&mut self, kind: Kind, movable: Option<&Value>, hint: Option<&str>) {
        let moved = self.customer_data == CustomerData::Hashed
            && movable.is_some_and(|value| self.hashed_into_user_data(kind, value, hint));
        self.dropped.push(Dropped {
            field: kind.label().into(),
            reason: if moved {
                HASHED_INTO_USER_DATA
            } else {
                NOT_ALLOWED
            },
        });
    }

    /// Sets the `user_data` key of `kind` from `value` when it is empty and the value
    /// normalizes (`normalize`, as for `user_data` itself).
    fn hashed_into_user_data(&mut self, kind: Kind, value: &Value, hint: Option<&str>) -> bool {
        let Some(field) = kind.user_data_field() else {
            return false;
        };
        let slot = self.user_data.hashed_mut(field);
        if slot.is_some() {
            return false;
        }
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return false,
        };
        match normalize::hashed(field, &text, hint.or(self.country)) {
            Ok(h) => {
                *slot = Some(h);
                true
            }
            Err(_) => false,
        }
    }
}

/// The country of an object about a person (`{"phone": "030 1234567", "country": "DE"}`), to
/// read its phone, state and zip by.
fn own_country(map: &Map<String, Value>, scope: Scope) -> Option<String> {
    map.iter()
        .filter(|(k, _)| scope != Scope::Top || standard_key(k).is_none())
        .find(|(k, _)| key_kind(&key_words(k), scope) == Some(Kind::Country))
        .and_then(|(_, v)| v.as_str())
        .map(str::to_string)
}

/// A key's words, lowercase: split at anything not a letter or digit and at camelCase humps
/// (`billingCity`, `EMAILAddress`), trailing digits dropped (`address1` → `address`).
fn key_words(key: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut prev: Option<char> = None;
    let mut chars = key.chars().peekable();
    while let Some(c) = chars.next() {
        if !c.is_alphanumeric() {
            words.push(std::mem::take(&mut word));
            prev = None;
            continue;
        }
        if c.is_uppercase() && !word.is_empty() {
            let next_lower = chars.peek().is_some_and(|n| n.is_lowercase());
            let hump = prev.is_some_and(|p| {
                p.is_lowercase() || p.is_ascii_digit() || (p.is_uppercase() && next_lower)
            });
            if hump {
                words.push(std::mem::take(&mut word));
            }
        }
        word.extend(c.to_lowercase());
        prev = Some(c);
    }
    words.push(word);
    words
        .into_iter()
        .map(|w| w.trim_end_matches(|c: char| c.is_ascii_digit()).to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

fn has(words: &[String], set: &[&str]) -> bool {
    words.iter().any(|w| set.contains(&w.as_str()))
}

/// Whether `a` is directly followed by one of `b` in the key (`first name`, `postal code`).
fn pair(words: &[String], a: &[&str], b: &[&str]) -> bool {
    words
        .windows(2)
        .any(|p| matches!(p, [x, y] if a.contains(&x.as_str()) && b.contains(&y.as_str())))
}

fn ends_with_any(words: &[String], stems: &[&str]) -> bool {
    words
        .iter()
        .any(|w| stems.iter().any(|s| w.len() > s.len() && w.ends_with(s)))
}

fn is_personal(words: &[String]) -> bool {
    words.iter().any(|w| {
        PERSONAL.contains(&w.as_str()) || w.strip_suffix('s').is_some_and(|s| PERSONAL.contains(&s))
    })
}

/// A bare key naming a person (`"recipient": "Jane Doe"`).
fn is_person(words: &[String]) -> bool {
    matches!(words, [w] if PERSON_NOUNS.contains(&w.as_str()))
}

/// What a key says its value is, at `scope`.
fn key_kind(words: &[String], scope: Scope) -> Option<Kind> {
    if let Some(kind) = strong_kind(words) {
        return Some(kind);
    }
    if has(words, FLAG_WORDS) || has(words, THING_WORDS) {
        return None;
    }
    let weak = weak_kind(words)?;
    let about_a_person = match scope {
        Scope::Personal | Scope::Address => true,
        Scope::Top => matches!(words, [w] if TOP_BARE.contains(&w.as_str())) || is_personal(words),
        Scope::Other => is_personal(words),
    };
    about_a_person.then_some(weak)
}

/// Keys that hold contact data (or a credential) wherever they are.
fn strong_kind(words: &[String]) -> Option<Kind> {
    // Meta's own user_data keys, whole (D-CIP).
    if let [w] = words {
        let meta = match w.as_str() {
            "em" => Some(Kind::Email),
            "ph" => Some(Kind::Phone),
            "fn" => Some(Kind::FirstName),
            "ln" => Some(Kind::LastName),
            "ct" => Some(Kind::City),
            "st" => Some(Kind::State),
            "zp" => Some(Kind::Zip),
            "db" => Some(Kind::BirthDate),
            "ge" => Some(Kind::Gender),
            "externalid" => Some(Kind::ExternalId),
            "userdata" => Some(Kind::UserData),
            _ => None,
        };
        if meta.is_some() {
            return meta;
        }
    }
    match words {
        [a, b] if a == "external" && b == "id" => return Some(Kind::ExternalId),
        [a, b] if a == "user" && b == "data" => return Some(Kind::UserData),
        _ => {}
    }
    // Meta's own ids of a person, whole (`lead_id`, `leadId`, `madid`, …).
    if UNHASHED_IDS
        .iter()
        .any(|id| !META_IDS_OF_NO_PERSON.contains(id) && spells(words, id))
    {
        return Some(Kind::MetaId);
    }
    // Credentials (webhooks-and-pitfalls #25: tokens leaked into custom_data).
    if has(words, &["password", "passwd", "passphrase", "pwd"]) {
        return Some(Kind::Password);
    }
    if has(words, &["secret", "secrets"]) {
        return Some(Kind::Secret);
    }
    if has(words, &["accesstoken"]) || pair(words, &["access"], &["token"]) {
        return Some(Kind::AccessToken);
    }
    if has(
        words,
        &["token", "tokens", "apikey", "authorization", "bearer"],
    ) || pair(words, &["api"], &["key"])
    {
        return Some(Kind::Token);
    }
    if has(words, FLAG_WORDS) {
        return None;
    }
    if has(words, &["ip", "ipv", "ipaddress"]) {
        return Some(Kind::Ip);
    }
    if has(words, &["email", "emails", "emailaddress"])
        || ends_with_any(words, &["email"])
        || pair(words, &["e"], &["mail"])
        || pair(words, &["mail"], &["address"])
        || matches!(words, [w] if w == "mail")
    {
        return Some(Kind::Email);
    }
    if has(
        words,
        &[
            "phone",
            "phones",
            "phonenumber",
            "telephone",
            "tel",
            "telefon",
            "telefono",
            "telefone",
            "msisdn",
            "whatsapp",
            "fax",
            "cellphone",
            "mobilephone",
            "mobilenumber",
        ],
    ) || pair(
        words,
        &["mobile", "cell", "sms", "contact"],
        &["number", "no", "nr", "phone"],
    ) || words.iter().any(|w| {
        w.strip_suffix("phone").is_some_and(|p| {
            PERSONAL.contains(&p) || matches!(p, "home" | "work" | "cell" | "mobile")
        })
    }) {
        return Some(Kind::Phone);
    }
    if has(
        words,
        &["birthday", "birthdate", "dob", "dateofbirth", "birth"],
    ) {
        return Some(Kind::BirthDate);
    }
    if has(
        words,
        &["firstname", "givenname", "forename", "fname", "vorname"],
    ) || ends_with_any(words, &["firstname"])
        || pair(words, &["first", "given", "fore"], &["name"])
    {
        return Some(Kind::FirstName);
    }
    if has(
        words,
        &["lastname", "surname", "familyname", "lname", "nachname"],
    ) || ends_with_any(words, &["lastname"])
        || pair(words, &["last", "family", "sur"], &["name"])
    {
        return Some(Kind::LastName);
    }
    if has(
        words,
        &[
            "fullname",
            "middlename",
            "maidenname",
            "username",
            "nickname",
        ],
    ) || ends_with_any(words, &["fullname"])
        || pair(
            words,
            &["full", "middle", "maiden", "user", "nick"],
            &["name"],
        )
    {
        return Some(Kind::Name);
    }
    if has(
        words,
        &["zip", "zips", "zipcode", "postcode", "postalcode", "plz"],
    ) || ends_with_any(words, &["zipcode", "postcode", "postalcode"])
        || pair(words, &["postal", "post", "zip"], &["code"])
        || matches!(words, [w] if w == "postal")
    {
        return Some(Kind::Zip);
    }
    if has(
        words,
        &[
            "street",
            "streetaddress",
            "addressline",
            "address",
            "addresses",
            "addr",
            "strasse",
        ],
    ) || ends_with_any(words, &["address"])
    {
        return Some(Kind::Address);
    }
    None
}

/// Words that name contact data only when the key or its object is about a person.
fn weak_kind(words: &[String]) -> Option<Kind> {
    if has(words, &["country", "countries"]) {
        Some(Kind::Country)
    } else if has(words, &["city", "cities", "town"]) {
        Some(Kind::City)
    } else if has(
        words,
        &["state", "province", "region", "county", "prefecture"],
    ) {
        Some(Kind::State)
    } else if has(words, &["gender", "sex"]) {
        Some(Kind::Gender)
    } else if has(words, &["mobile", "cell"]) {
        Some(Kind::Phone)
    } else if has(words, &["name", "names"]) {
        Some(Kind::Name)
    } else if has(
        words,
        &["line", "house", "apartment", "apt", "suite", "building"],
    ) {
        Some(Kind::Address)
    } else {
        None
    }
}

/// The kind a key inherits from the key of its object or array (`"phones": [...]`,
/// `"name": {"first": …, "last": …}`), unless it is a flag or an id.
fn inherited_kind(words: &[String], inherited: Option<Kind>) -> Option<Kind> {
    let kind = inherited?;
    if has(words, FLAG_WORDS) || words.last().is_some_and(|w| w == "id") {
        return None;
    }
    Some(match (kind, words) {
        (Kind::Name, [w]) if matches!(w.as_str(), "first" | "given") => Kind::FirstName,
        (Kind::Name, [w]) if matches!(w.as_str(), "last" | "family" | "sur") => Kind::LastName,
        _ => kind,
    })
}

/// Inside an address every text or number is part of it, except flags and ids.
fn address_part(scope: Scope, words: &[String]) -> Option<Kind> {
    (scope == Scope::Address && !has(words, FLAG_WORDS) && words.last().is_none_or(|w| w != "id"))
        .then_some(Kind::Address)
}

/// The scope of the object or array under a key.
fn child_scope(words: &[String], scope: Scope, own: Option<Kind>) -> Scope {
    if own == Some(Kind::Address)
        || (has(words, &["address", "addresses", "addr"])
            && !has(words, NOT_A_PERSON)
            && !matches!(own, Some(Kind::Email | Kind::Ip)))
    {
        Scope::Address
    } else if own.is_some() || (is_personal(words) && !has(words, NOT_A_PERSON)) {
        Scope::Personal
    } else if scope == Scope::Top || (scope == Scope::Personal && has(words, NOT_A_PERSON)) {
        // `customer.delivery_options`, `buyer.line_items`: about the order, not the person.
        Scope::Other
    } else {
        scope
    }
}

/// Values under these keys are ids, amounts or counts: never a phone by shape.
fn phone_shape_never(words: &[String]) -> bool {
    words
        .last()
        .is_some_and(|w| NOT_A_PHONE.contains(&w.as_str()))
        && !is_personal(words)
}

/// What a text is by its shape: an email address anywhere in it, or a phone number (unless
/// `no_phone`).
fn shape_kind(text: &str, no_phone: bool) -> Option<Kind> {
    if has_email(text) {
        Some(Kind::Email)
    } else if !no_phone && has_phone(text) {
        Some(Kind::Phone)
    } else {
        None
    }
}

/// Whether any word of `text` is an email address (`mailto:`, `<…>`, `?email=…`, a URL's path
/// included), also percent-encoded (`jane%40example.com`). A file's name in a URL or a path
/// (`/img/logo@2x.png`, `/p/shirt@large.jpg`) is not an address.
fn has_email(text: &str) -> bool {
    (text.contains('@') && word_is_email(text))
        || text.contains("%40")
            && word_is_email(&percent_encoding::percent_decode_str(text).decode_utf8_lossy())
}

fn word_is_email(text: &str) -> bool {
    // In a URL or a path, a word before `.png` is a file's name (`/img/logo@2x.png`).
    let in_path = text.contains('/');
    text.split(|c: char| {
        c.is_whitespace()
            || matches!(
                c,
                ',' | ';'
                    | ':'
                    | '<'
                    | '>'
                    | '('
                    | ')'
                    | '['
                    | ']'
                    | '"'
                    | '\''
                    | '='
                    | '&'
                    | '?'
                    | '|'
                    | '/'
            )
    })
    .map(|w| w.trim_matches(|c: char| matches!(c, '.' | '!' | '*' | '{' | '}')))
    .any(|w| {
        normalize::email(w).is_ok_and(|e| {
            e.rsplit_once('@').is_some_and(|(_, domain)| {
                domain.split('.').all(|label| {
                    !label.is_empty() && label.chars().all(|c| c.is_alphanumeric() || c == '-')
                }) && domain.rsplit('.').next().is_some_and(|tld| {
                    tld.chars().count() >= 2 && tld.chars().all(char::is_alphabetic)
                }) && !(in_path && is_file_name(domain))
            })
        })
    })
}

/// `2x.png`, `large.jpg`: what follows the `@` of a file's name, not a mail domain (none of
/// these extensions is a top-level domain; `.mov` is one, so it is not here).
fn is_file_name(domain: &str) -> bool {
    const FILE_EXTENSIONS: &[&str] = &[
        "png", "jpg", "jpeg", "gif", "webp", "avif", "svg", "ico", "bmp", "tif", "tiff", "heic",
        "css", "js", "mjs", "json", "html", "htm", "pdf", "mp4", "webm", "woff", "woff2", "ttf",
        "otf",
    ];
    domain
        .rsplit('.')
        .next()
        .is_some_and(|ext| FILE_EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)))
}

/// Characters a written phone number is made of.
fn is_phone_char(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '+' | '(' | ')' | '-' | '.' | '/' | ' ' | '\u{a0}')
}

/// Whether `text` holds a phone number written as one: each run of phone characters that
/// stands apart from letters (`SKU-12345`, `#555-010-9999` do not) is checked with
/// [`is_phone_shape`].
fn has_phone(text: &str) -> bool {
    let starts_number = |c: char| c.is_ascii_digit() || c == '+' || c == '(';
    let ends_number = |c: char| c.is_ascii_digit() || c == ')';
    let mut rest = text;
    while let Some(start) = rest.find(is_phone_char) {
        let before = rest.get(..start).and_then(|b| b.chars().next_back());
        let tail = rest.get(start..).unwrap_or_default();
        let end = tail.find(|c: char| !is_phone_char(c)).unwrap_or(tail.len());
        let (run, after) = tail.split_at(end);
        let core = run
            .trim_start_matches(|c: char| !starts_number(c))
            .trim_end_matches(|c: char| !ends_number(c));
        // What separates the number from the text around it: a space, or nothing (glued).
        let lead = run.get(..run.len() - run.trim_start_matches(|c: char| !starts_number(c)).len());
        let trail = run.get(run.trim_end_matches(|c: char| !ends_number(c)).len()..);
        let spaced = |part: Option<&str>| part.is_some_and(|p| p.contains(char::is_whitespace));
        let glued_before =
            before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '#') && !spaced(lead);
        let glued_after = after
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
            && !spaced(trail);
        if !glued_before && !glued_after && is_phone_shape(core) {
            return true;
        }
        rest = after;
    }
    false
}

/// A phone number as people write one: 7–15 digits (E.164), and either international (`+…`,
/// or `00…` in groups), national with its trunk `0` in groups (`030 1234567`), an area code
/// in parentheses, or North American groups (`555-010-9999`, `1-800-555-0199`). Not a date,
/// an IPv4 address or a decimal amount; a bare digit run is an id, not a phone.
fn is_phone_shape(s: &str) -> bool {
    let groups: Vec<&str> = s
        .split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .collect();
    let digits: usize = groups.iter().map(|g| g.len()).sum();
    if !(7..=15).contains(&digits) {
        return false;
    }
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let date = matches!(lens.as_slice(), [4, 1..=2, 1..=2] | [1..=2, 1..=2, 4]);
    let ipv4 = lens.len() == 4
        && lens.iter().all(|l| *l <= 3)
        && s.chars().all(|c| c.is_ascii_digit() || c == '.');
    let decimal = s.matches('.').count() == 1
        && s.rsplit_once('.').is_some_and(|(_, cents)| {
            (1..=2).contains(&cents.len()) && cents.bytes().all(|b| b.is_ascii_digit())
        });
    if date || ipv4 || decimal {
        return false;
    }
    if s.starts_with('+') {
        return true;
    }
    let parenthesized_area = s.starts_with('(')
        && s.find(')')
            .and_then(|close| s.get(1..close))
            .is_some_and(|area| (2..=5).contains(&area.len()));
    let trunk = groups.len() >= 2
        && groups
            .first()
            .is_some_and(|g| g.len() >= 2 && g.starts_with('0'));
    let nanp = matches!(lens.as_slice(), [3, 3, 4] | [1, 3, 3, 4]);
    ((parenthesized_area || trunk) && digits >= 9) || nanp
}

/// A monetary amount: a finite number ≥ 0, also from a numeric string (`"19.90"`).
pub fn amount(value: &Value) -> Option<f64> {
    let n = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (n.is_finite() && n >= 0.0).then_some(n)
}

/// ISO 4217 codes in use (2024 list), concatenated.
const ISO_4217: &str = "AEDAFNALLAMDANGAOAARSAUDAWGAZNBAMBBDBDTBGNBHDBIFBMDBNDBOBBRLBSDBTNBWPBYNBZDCADCDFCHFCLPCNYCOPCRCCUPCVE\
CZKDJFDKKDOPDZDEGPERNETBEURFJDFKPGBPGELGHSGIPGMDGNFGTQGYDHKDHNLHTGHUFIDRILSINRIQDIRRISKJMDJODJPYKESKGSKHRKMFKPWKRWKWDKYD\
KZTLAKLBPLKRLRDLSLLYDMADMDLMGAMKDMMKMNTMOPMRUMURMVRMWKMXNMYRMZNNADNGNNIONOKNPRNZDOMRPABPENPGKPHPPKRPLNPYGQARRONRSDRUB\
RWFSARSBDSCRSDGSEKSGDSHPSLESOSSRDSSPSTNSVCSYPSZLTHBTJSTMTTNDTOPTRYTTDTWDTZSUAHUGXUSDUYUUZSVEDVESVNDVUVWSTXAFXCDXCGXOF\
XPFYERZARZMWZWGZWL";

/// Meta: `currency` is a valid ISO 4217 code; sent uppercase.
pub fn currency(value: &Value) -> Option<String> {
    let c = value.as_str()?.trim().to_ascii_uppercase();
    (c.len() == 3 && is_iso_4217(c.as_bytes())).then_some(c)
}

/// Whether `code` (three uppercase letters) is in [`ISO_4217`], by binary search: the codes are
/// sorted (a test checks it), and every beacon with a value has a currency.
fn is_iso_4217(code: &[u8]) -> bool {
    let (codes, _) = ISO_4217.as_bytes().as_chunks::<3>();
    <[u8; 3]>::try_from(code).is_ok_and(|code| codes.binary_search(&code).is_ok())
}

/// `content_ids`: a list of SKUs as strings (numbers are converted; anything else refused).
fn content_ids(value: &Value) -> Option<Value> {
    let ids = value.as_array()?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        match id {
            Value::String(s) if !s.is_empty() => out.push(Value::String(s.clone())),
            Value::Number(n) => out.push(Value::String(n.to_string())),
            _ => return None,
        }
    }
    Some(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bad_amounts_and_currencies_are_dropped() {
        assert_eq!(amount(&json!(-1)), None);
        assert_eq!(amount(&json!("NaN")), None);
        assert_eq!(currency(&json!("usd")).as_deref(), Some("USD"));
        assert_eq!(currency(&json!("XYZ")), None);
        assert_eq!(currency(&json!("JPY")).as_deref(), Some("JPY"));
    }

    #[test]
    fn currency_codes_are_sorted_and_each_is_found() {
        let codes: Vec<&[u8]> = ISO_4217.as_bytes().chunks(3).collect();
        assert!(codes.windows(2).all(|w| w[0] < w[1]));
        assert!(codes.iter().all(|c| c.len() == 3 && is_iso_4217(c)));
        for absent in [b"AAA", b"EUX", b"ZZZ", b"eur"] {
            assert!(!is_iso_4217(absent));
        }
    }

    #[test]
    fn standard_keys_read_as_the_rules_read_them() {
        for (key, no_phone) in STANDARD_KEYS {
            let words = key_words(key);
            assert_eq!(shape_kind(key, false), None, "{key}");
            assert_eq!(key_kind(&words, Scope::Top), None, "{key}");
            assert_eq!(inherited_kind(&words, None), None, "{key}");
            assert!(!is_person(&words), "{key}");
            let below = child_scope(&words, Scope::Top, None);
            assert_eq!(address_part(below, &words), None, "{key}");
            assert_eq!(phone_shape_never(&words), *no_phone, "{key}");
        }
        // The shortcut gives what the long way gives, values found by shape included.
        for (key, _) in STANDARD_KEYS {
            for value in [
                json!("jane@example.com"),
                json!("+1 650 555 1212"),
                json!("Ceramic mug"),
                json!(12.5),
                json!(null),
                json!([]),
                json!(["a@b.co", "sku-1", 6505551212_i64, "650-555-1212"]),
                json!(true),
                json!([true, null, "+49 30 1234567"]),
            ] {
                for hint in [None, Some("DE")] {
                    let run = |fast: bool| {
                        let (mut user, mut dropped) = (UserData::default(), Vec::new());
                        let mut scrub = Scrub {
                            customer_data: CustomerData::Hashed,
                            user_data: &mut user,
                            country: Some("US"),
                            dropped: &mut dropped,
                        };
                        let out = if fast {
                            scrub.entry(key, value.clone(), Scope::Top, None, hint)
                        } else {
                            // The long way: the same key read by its words (nothing in `entry`
                            // past the shortcut depends on the spelling, only on the words).
                            scrub.entry(&key.to_uppercase(), value.clone(), Scope::Top, None, hint)
                        };
                        (out, dropped, user)
                    };
                    assert_eq!(run(true), run(false), "{key}: {value}");
                }
            }
        }
    }

    #[test]
    fn keys_split_into_words_at_separators_and_humps() {
        for (key, words) in [
            ("customer_email", &["customer", "email"][..]),
            ("billingCity", &["billing", "city"]),
            ("Shipping-Zip", &["shipping", "zip"]),
            ("EMAIL_ADDRESS", &["email", "address"]),
            ("EMAILAddress", &["email", "address"]),
            ("address1", &["address"]),
            ("ipV4", &["ip", "v"]),
            ("e-mail", &["e", "mail"]),
            ("", &[]),
        ] {
            assert_eq!(key_words(key), words, "{key}");
        }
    }

    #[test]
    fn every_kind_is_counted_under_a_bounded_name() {
        for kind in Kind::ALL {
            assert!(COUNTED_FIELDS.contains(&kind.label()), "{kind:?}");
            assert_eq!(crate::counters::counted_field(kind.label()), kind.label());
        }
    }

    #[test]
    fn phone_shapes() {
        for phone in [
            "+1 (555) 010-9999",
            "0049 30 1234567",
            "030 1234567",
            "030/1234567",
            "07700 900123",
            "06 12 34 56 78",
            "555-010-9999",
            "555.010.9999",
            "1-800-555-0199",
            "(555) 010-9999",
            "+4930123456",
            "call +1 555 010 9999 after 5",
            "Tel. 030 1234567",
        ] {
            assert!(has_phone(phone), "{phone}");
        }
        for not in [
            "SKU-12345",
            "10009876543",
            "2024-01-15",
            "15.01.2024",
            "01/15/2024",
            "192.168.100.200",
            "12345.67",
            "1 299 999.00",
            "0-306-40615-2",
            "978-3-16-148410-0",
            "94043-1351",
            "2024-000123",
            "0800-1700",
            "4111 1111 1111 1111",
            "ORD-555-010-9999",
            "#555-010-9999",
            "Stoneware mug, 350 ml, 2 pack, model 2024 1234",
            "Fits 2015-2019 models",
            "+100 points",
        ] {
            assert!(!has_phone(not), "{not}");
        }
    }

    #[test]
    fn email_shapes() {
        for email in [
            "jane@example.com",
            "Reach me: <Jane.Doe+shop@Example.co.uk>.",
            "mailto:jane@example.com",
            "https://shop.example/?email=jane@example.com&x=1",
            "https://shop.example/u/jane@example.com",
            "https://shop.example/account/jane@example.com/orders",
            "https://shop.example/signup?email=jane%40example.com",
            "jane%40example.com",
            "write to jane@2x.de",
        ] {
            assert!(has_email(email), "{email}");
        }
        for not in [
            "https://cdn.example/img/logo@2x.png",
            "https://cdn.example/img/icon@1.5x.png",
            "https://cdn.example/img/logo@2x-min.PNG",
            "https://cdn.example/p/shirt@large.jpg?v=3",
            "50%40off",
            "https://cdn.example/a%40b",
            "2@3.99",
            "@handle",
            "a@b",
            "x@y.z",
            "user@localhost",
        ] {
            assert!(!has_email(not), "{not}");
        }
    }
}
