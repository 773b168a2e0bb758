//! Offline and CRM conversions — store sales, phone orders, lead stages — as CAPI events: one
//! record (a CSV row or a JSON line, read by `capi-edge send`) becomes one event on the same
//! `/events` edge, with a non-website `action_source` (D-OFF).
//!
//! A record's columns are named by Meta's keys or their common spellings ([`COLUMNS`]). Contact
//! data is normalized and hashed here ([`crate::normalize`]), so only hashes leave the machine;
//! values already hashed (64 hex) pass through. The event is then held to Meta's rules
//! ([`crate::meta_rules::check_event`], with the 62-day window of `physical_store`): a record
//! Meta would refuse is a [`Skip`] with the rule's name, never an event that sinks its batch.
//! An event without an `event_id` gets one derived from its content ([`derived_event_id`]), so
//! a file uploaded twice names each conversion the same way twice.

use crate::custom_data::{amount, currency, Dropped};
use crate::event::{ServerEvent, UserData};
use crate::hash::sha256_hex;
use crate::meta_rules::check_event;
use crate::normalize::{self, Field};
use serde_json::{Map, Value};

/// What a column of an offline record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// A contact field, normalized and hashed.
    User(Field),
    /// Meta's lead id (lead ads), sent unhashed as `user_data.lead_id` (D-CIP).
    LeadId,
    ClientIpAddress,
    ClientUserAgent,
    EventName,
    EventTime,
    EventId,
    ActionSource,
    EventSourceUrl,
    Value,
    Currency,
    OrderId,
    ContentIds,
    Contents,
    ContentType,
    ContentName,
    ContentCategory,
    NumItems,
    /// D-OFF: tells apart events of one order (part of Meta's offline deduplication key).
    ItemNumber,
}

/// Each column with the header spellings that name it, Meta's name first. Headers are compared
/// by their letters and digits only, lowercased ([`compact_header`]): `E-Mail`, `e_mail` and
/// `EMAIL` all name `em`.
pub const COLUMNS: &[(Column, &[&str])] = &[
    (
        Column::User(Field::Em),
        &["em", "email", "emailaddress", "mail"],
    ),
    (
        Column::User(Field::Ph),
        &[
            "ph",
            "phone",
            "phonenumber",
            "telephone",
            "tel",
            "mobile",
            "mobilephone",
        ],
    ),
    (Column::User(Field::Fn), &["fn", "firstname", "givenname"]),
    (
        Column::User(Field::Ln),
        &["ln", "lastname", "surname", "familyname"],
    ),
    (Column::User(Field::Ct), &["ct", "city", "town"]),
    (
        Column::User(Field::St),
        &["st", "state", "province", "region"],
    ),
    (
        Column::User(Field::Zp),
        &["zp", "zip", "zipcode", "postalcode", "postcode"],
    ),
    (Column::User(Field::Country), &["country", "countrycode"]),
    (Column::User(Field::Ge), &["ge", "gender", "sex"]),
    (
        Column::User(Field::Db),
        &["db", "dob", "dateofbirth", "birthdate", "birthday"],
    ),
    (
        Column::User(Field::ExternalId),
        &["externalid", "customerid", "clientid", "crmid"],
    ),
    (Column::LeadId, &["leadid"]),
    (
        Column::ClientIpAddress,
        &["clientipaddress", "ip", "ipaddress"],
    ),
    (Column::ClientUserAgent, &["clientuseragent", "useragent"]),
    (Column::EventName, &["eventname", "event"]),
    (
        Column::EventTime,
        &["eventtime", "timestamp", "time", "datetime"],
    ),
    (Column::EventId, &["eventid"]),
    (Column::ActionSource, &["actionsource"]),
    (Column::EventSourceUrl, &["eventsourceurl"]),
    (Column::Value, &["value", "amount", "revenue", "total"]),
    (Column::Currency, &["currency", "currencycode"]),
    (
        Column::OrderId,
        &["orderid", "order", "ordernumber", "transactionid"],
    ),
    (
        Column::ContentIds,
        &[
            "contentids",
            "contentid",
            "sku",
            "skus",
            "productid",
            "productids",
        ],
    ),
    (Column::Contents, &["contents"]),
    (Column::ContentType, &["contenttype"]),
    (Column::ContentName, &["contentname"]),
    (Column::ContentCategory, &["contentcategory"]),
    (Column::NumItems, &["numitems", "itemcount"]),
    (Column::ItemNumber, &["itemnumber"]),
];

impl Column {
    /// Meta's name for what the column holds (`em`, `event_time`, `order_id`, …).
    pub fn name(self) -> &'static str {
        match self {
            Column::User(f) => f.key(),
            Column::LeadId => "lead_id",
            Column::ClientIpAddress => "client_ip_address",
            Column::ClientUserAgent => "client_user_agent",
            Column::EventName => "event_name",
            Column::EventTime => "event_time",
            Column::EventId => "event_id",
            Column::ActionSource => "action_source",
            Column::EventSourceUrl => "event_source_url",
            Column::Value => "value",
            Column::Currency => "currency",
            Column::OrderId => "order_id",
            Column::ContentIds => "content_ids",
            Column::Contents => "contents",
            Column::ContentType => "content_type",
            Column::ContentName => "content_name",
            Column::ContentCategory => "content_category",
            Column::NumItems => "num_items",
            Column::ItemNumber => "item_number",
        }
    }

    /// The column a header names, or `None` for a header no column answers to.
    pub fn for_header(header: &str) -> Option<Column> {
        let h = compact_header(header);
        COLUMNS
            .iter()
            .find(|(_, names)| names.contains(&h.as_str()))
            .map(|(c, _)| *c)
    }
}

/// A header by its letters and digits, lowercased (a leading byte-order mark dropped).
pub fn compact_header(header: &str) -> String {
    header
        .trim_start_matches('\u{feff}')
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Two headers of one file that name the same column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateColumn {
    pub column: Column,
    /// Positions (0-based) of the two headers.
    pub first: usize,
    pub second: usize,
}

/// The column of each header of a file (`None`: not a column; its cells are never read).
pub fn header_columns<S: AsRef<str>>(
    headers: &[S],
) -> Result<Vec<Option<Column>>, DuplicateColumn> {
    let columns: Vec<Option<Column>> = headers
        .iter()
        .map(|h| Column::for_header(h.as_ref()))
        .collect();
    for (second, c) in columns.iter().enumerate() {
        let Some(c) = c else { continue };
        if let Some(first) = columns[..second].iter().position(|x| x == &Some(*c)) {
            return Err(DuplicateColumn {
                column: *c,
                first,
                second,
            });
        }
    }
    Ok(columns)
}

/// One offline record: the value of each column it has (CSV cells are strings; a JSON line may
/// hold numbers and, for `content_ids` and `contents`, arrays).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    cells: Vec<(Column, Value)>,
}

impl Record {
    /// Sets `column` (a later value replaces an earlier one).
    pub fn set(&mut self, column: Column, value: Value) {
        match self.cells.iter_mut().find(|(c, _)| *c == column) {
            Some(cell) => cell.1 = value,
            None => self.cells.push((column, value)),
        }
    }

    /// A JSON object's keys as columns, one level into `user_data` and `custom_data` objects
    /// (an event written in Meta's shape). Returns the keys no column answers to.
    pub fn from_object(object: &Map<String, Value>) -> (Record, Vec<String>) {
        let mut record = Record::default();
        let mut unknown = Vec::new();
        let mut take = |key: &str, value: &Value, record: &mut Record| match Column::for_header(key)
        {
            Some(c) => record.set(c, value.clone()),
            None => unknown.push(key.to_string()),
        };
        for (key, value) in object {
            match (key.as_str(), value) {
                ("user_data" | "custom_data", Value::Object(inner)) => {
                    for (k, v) in inner {
                        take(k, v, &mut record);
                    }
                }
                _ => take(key, value, &mut record),
            }
        }
        (record, unknown)
    }

    /// The value of `column`, unless absent, null or blank.
    pub fn get(&self, column: Column) -> Option<&Value> {
        self.cells
            .iter()
            .find(|(c, _)| *c == column)
            .map(|(_, v)| v)
            .filter(|v| match v {
                Value::Null => false,
                Value::String(s) => !s.trim().is_empty(),
                _ => true,
            })
    }

    /// The value of `column` as trimmed text (a number as its decimal text).
    fn text(&self, column: Column) -> Option<String> {
        match self.get(column)? {
            Value::String(s) => Some(s.trim().to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// What applies to records that do not say it themselves.
#[derive(Debug, Clone, Copy)]
pub struct Defaults<'a> {
    /// `action_source` of records without one (`capi-edge send` defaults to `physical_store`).
    pub action_source: &'a str,
    /// `event_name` of records without one; without either, a record is skipped.
    pub event_name: Option<&'a str>,
    /// The country phones, zips and states are read in when a record has no `country` (it is
    /// not sent).
    pub country: Option<&'a str>,
}

/// Why a record is not sent: a stable reason (Meta's rule name where Meta has the rule) and a
/// message that names fields, never values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub reason: &'static str,
    pub message: String,
}

impl Skip {
    fn new(reason: &'static str, message: &str) -> Skip {
        Skip {
            reason,
            message: message.to_string(),
        }
    }
}

/// A record's event, and the contact fields dropped on the way (the event is sent without them).
#[derive(Debug, Clone, PartialEq)]
pub struct OfflineEvent {
    pub event: ServerEvent,
    pub dropped: Vec<Dropped>,
}

/// The event Meta receives for `record`, or why it is not sent. `now_secs` is the time the
/// window rule is checked against.
pub fn offline_event(
    record: &Record,
    defaults: &Defaults<'_>,
    now_secs: i64,
) -> Result<OfflineEvent, Skip> {
    let event_name = record
        .text(Column::EventName)
        .or_else(|| defaults.event_name.map(str::to_string))
        .ok_or_else(|| Skip::new("event_name_missing", "event_name is required"))?;
    let event_time = match record.get(Column::EventTime) {
        None => {
            return Err(Skip::new(
                "event_time_missing",
                "event_time is required (Unix seconds or ISO 8601)",
            ))
        }
        Some(v) => unix_secs(v).ok_or_else(|| {
            Skip::new(
                "event_time_invalid",
                "event_time is neither Unix seconds nor an ISO 8601 date and time",
            )
        })?,
    };
    let action_source = record
        .text(Column::ActionSource)
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_else(|| defaults.action_source.to_string());

    let (user_data, dropped) = user_data(record, defaults);
    let custom_data = custom_data(record)?;
    let mut event = ServerEvent {
        event_name,
        event_time,
        event_id: String::new(),
        action_source,
        event_source_url: record.text(Column::EventSourceUrl),
        referrer_url: None,
        user_data,
        custom_data,
        data_processing_options: None,
        data_processing_options_country: None,
        data_processing_options_state: None,
    };
    event.event_id = record
        .text(Column::EventId)
        .unwrap_or_else(|| derived_event_id(&event));
    let json = serde_json::to_value(&event)
        .map_err(|_| Skip::new("unserializable", "the event could not be written as JSON"))?;
    check_event(&json, now_secs).map_err(|v| Skip {
        reason: v.rule,
        message: match v.rule {
            "user_data_missing" => "no contact field is left after normalization".into(),
            _ => v.message,
        },
    })?;
    Ok(OfflineEvent { event, dropped })
}

/// Unix seconds from an integer (a number or its digits) or an ISO 8601 date and time.
fn unix_secs(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => {
            let s = s.trim();
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                s.parse().ok()
            } else {
                crate::webhook::iso8601_secs(s)
            }
        }
        _ => None,
    }
}

/// `user_data` from the contact columns (normalized and hashed, each in the record's country)
/// and the ids Meta wants as they are; what could not be normalized is dropped and named.
fn user_data(record: &Record, defaults: &Defaults<'_>) -> (UserData, Vec<Dropped>) {
    let mut user_data = UserData::default();
    let mut dropped = Vec::new();
    let country = record
        .text(Column::User(Field::Country))
        .or_else(|| defaults.country.map(str::to_string));
    for field in Field::ALL {
        let Some(value) = record.get(Column::User(field)) else {
            continue;
        };
        let hashed = match value {
            Value::String(s) => normalize::hashed(field, s, country.as_deref()),
            Value::Number(n) => normalize::hashed(field, &n.to_string(), country.as_deref()),
            _ => {
                dropped.push(Dropped {
                    field: field.key().into(),
                    reason: "not_text",
                });
                continue;
            }
        };
        match hashed {
            Ok(h) => *user_data.hashed_mut(field) = Some(h),
            Err(reason) => dropped.push(Dropped {
                field: field.key().into(),
                reason: reason.as_str(),
            }),
        }
    }
    if let Some(lead) = record.text(Column::LeadId) {
        user_data.unhashed_ids.insert("lead_id".into(), lead);
    }
    if let Some(ip) = record.text(Column::ClientIpAddress) {
        match ip.parse::<std::net::IpAddr>() {
            Ok(ip) => user_data.client_ip_address = Some(ip.to_string()),
            Err(_) => dropped.push(Dropped {
                field: "client_ip_address".into(),
                reason: "invalid_ip",
            }),
        }
    }
    user_data.client_user_agent = record
        .text(Column::ClientUserAgent)
        .map(|ua| ua.chars().take(512).collect());
    (user_data, dropped)
}

/// `contents` item keys Meta documents (D-CD); others are not sent.
const CONTENT_ITEM_KEYS: &[&str] = &["id", "quantity", "item_price", "delivery_category"];

/// `custom_data` from the record's value, currency, order and product columns.
fn custom_data(record: &Record) -> Result<Map<String, Value>, Skip> {
    let mut cd = Map::new();
    let value =
        match record.get(Column::Value) {
            None => None,
            Some(v) => Some(amount(v).ok_or_else(|| {
                Skip::new("value_invalid", "value is not an amount (a number ≥ 0)")
            })?),
        };
    let currency = match record.get(Column::Currency) {
        None => None,
        Some(c) => Some(
            currency(c)
                .ok_or_else(|| Skip::new("currency_invalid", "currency is not an ISO 4217 code"))?,
        ),
    };
    // Meta (D-CD): a value is an amount of money only with its currency.
    if value.is_some() && currency.is_none() {
        return Err(Skip::new(
            "value_without_currency",
            "value needs a currency (ISO 4217)",
        ));
    }
    if let Some(v) = value {
        cd.insert("value".into(), Value::from(v));
    }
    if let Some(c) = currency {
        cd.insert("currency".into(), Value::String(c));
    }
    for (column, key) in [
        (Column::OrderId, "order_id"),
        (Column::ContentType, "content_type"),
        (Column::ContentName, "content_name"),
        (Column::ContentCategory, "content_category"),
        (Column::ItemNumber, "item_number"),
    ] {
        if let Some(t) = record.text(column) {
            cd.insert(key.into(), Value::String(t));
        }
    }
    if let Some(v) = record.get(Column::NumItems) {
        let n = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        }
        .ok_or_else(|| Skip::new("num_items_invalid", "num_items is not a whole number"))?;
        cd.insert("num_items".into(), Value::from(n));
    }
    if let Some(v) = record.get(Column::ContentIds) {
        let ids = content_ids(v).ok_or_else(|| {
            Skip::new(
                "content_ids_invalid",
                "content_ids is not a list of product ids",
            )
        })?;
        cd.insert("content_ids".into(), Value::Array(ids));
    }
    if let Some(v) = record.get(Column::Contents) {
        let items = contents(v).ok_or_else(|| {
            Skip::new("contents_invalid", "contents is not a JSON list of objects")
        })?;
        cd.insert("contents".into(), Value::Array(items));
    }
    Ok(cd)
}

/// Product ids from a JSON list, or from text separated by `,`, `;` or `|`.
fn content_ids(v: &Value) -> Option<Vec<Value>> {
    let ids: Vec<Value> = match v {
        Value::String(s) => s
            .split([',', ';', '|'])
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(|id| Value::String(id.to_string()))
            .collect(),
        Value::Number(n) => vec![Value::String(n.to_string())],
        Value::Array(items) => items
            .iter()
            .map(|id| match id {
                Value::String(s) if !s.trim().is_empty() => {
                    Some(Value::String(s.trim().to_string()))
                }
                Value::Number(n) => Some(Value::String(n.to_string())),
                _ => None,
            })
            .collect::<Option<_>>()?,
        _ => return None,
    };
    (!ids.is_empty()).then_some(ids)
}

/// `contents` items from a JSON list (or its text, in a CSV cell), each kept to Meta's keys.
fn contents(v: &Value) -> Option<Vec<Value>> {
    let parsed;
    let items = match v {
        Value::Array(items) => items,
        Value::String(s) => {
            parsed = serde_json::from_str::<Value>(s).ok()?;
            parsed.as_array()?
        }
        _ => return None,
    };
    items
        .iter()
        .map(|item| {
            let item = item.as_object()?;
            Some(Value::Object(
                item.iter()
                    .filter(|(k, _)| CONTENT_ITEM_KEYS.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ))
        })
        .collect()
}

/// An `event_id` derived from what identifies the conversion, the same on every upload:
/// - with an `order_id`: the event's name, source, time, order and `item_number` — Meta's own
///   offline deduplication key (D-OFF);
/// - else with a `lead_id`: the event's name, source and lead (one event per lead stage);
/// - else the whole event: name, source, time, hashed `user_data` and `custom_data`.
///
/// Only normalized, hashed data goes into it, so the same customer written `Jane@Example.com`
/// or ` jane@example.com` gives the same id. `offline:` and 32 hex digits of a SHA-256.
pub fn derived_event_id(event: &ServerEvent) -> String {
    let cd = &event.custom_data;
    let text = |k: &str| cd.get(k).and_then(Value::as_str).unwrap_or_default();
    let mut key = format!("{}\n{}\n", event.event_name, event.action_source);
    if let Some(order) = cd.get("order_id").and_then(Value::as_str) {
        key.push_str(&format!(
            "order\n{}\n{order}\n{}",
            event.event_time,
            text("item_number")
        ));
    } else if let Some(lead) = event.user_data.unhashed_ids.get("lead_id") {
        key.push_str(&format!("lead\n{lead}"));
    } else {
        let user_data = serde_json::to_value(&event.user_data).unwrap_or_default();
        key.push_str(&format!(
            "event\n{}\n{}\n{}",
            event.event_time,
            canonical(&user_data),
            canonical(&Value::Object(cd.clone()))
        ));
    }
    let digest = sha256_hex(&key);
    format!("offline:{}", &digest[..32])
}

/// JSON text with every object's keys sorted, whatever order the map keeps them in.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_780_000_000;
    const DAY: i64 = 86_400;
    const DEFAULTS: Defaults<'static> = Defaults {
        action_source: "physical_store",
        event_name: None,
        country: None,
    };

    fn record(pairs: &[(&str, Value)]) -> Record {
        let mut r = Record::default();
        for (header, value) in pairs {
            let column = Column::for_header(header).unwrap_or_else(|| panic!("{header}"));
            r.set(column, value.clone());
        }
        r
    }

    fn sale() -> Vec<(&'static str, Value)> {
        vec![
            ("event_name", json!("Purchase")),
            ("event_time", json!((NOW - 3 * DAY).to_string())),
            ("email", json!(" Jane.Doe@Example.COM ")),
            ("phone", json!("(650) 555-1212")),
            ("country", json!("US")),
            ("value", json!("42.50")),
            ("currency", json!("usd")),
            ("order_id", json!("S-1001")),
        ]
    }

    fn skip_reason(pairs: &[(&str, Value)]) -> Option<&'static str> {
        offline_event(&record(pairs), &DEFAULTS, NOW)
            .err()
            .map(|s| s.reason)
    }

    #[test]
    fn headers_map_meta_names_and_common_spellings() {
        let cases = [
            ("email", "em"),
            ("E-Mail", "em"),
            ("em", "em"),
            ("Email Address", "em"),
            ("phone", "ph"),
            ("ph", "ph"),
            ("phone_number", "ph"),
            ("first_name", "fn"),
            ("fn", "fn"),
            ("FirstName", "fn"),
            ("last_name", "ln"),
            ("ln", "ln"),
            ("city", "ct"),
            ("ct", "ct"),
            ("state", "st"),
            ("st", "st"),
            ("zip", "zp"),
            ("zp", "zp"),
            ("postal_code", "zp"),
            ("country", "country"),
            ("external_id", "external_id"),
            ("customer_id", "external_id"),
            ("event_name", "event_name"),
            ("event_time", "event_time"),
            ("event_id", "event_id"),
            ("action_source", "action_source"),
            ("value", "value"),
            ("currency", "currency"),
            ("order_id", "order_id"),
            ("lead_id", "lead_id"),
            ("content_ids", "content_ids"),
            ("\u{feff}email", "em"),
            (" Order ID ", "order_id"),
        ];
        for (header, name) in cases {
            assert_eq!(
                Column::for_header(header).map(Column::name),
                Some(name),
                "{header}"
            );
        }
        for header in ["notes", "", "address", "source", "date"] {
            assert_eq!(Column::for_header(header), None, "{header}");
        }
    }

    #[test]
    fn every_spelling_names_one_column() {
        let mut seen = std::collections::HashSet::new();
        for (_, names) in COLUMNS {
            for name in *names {
                assert!(seen.insert(*name), "{name} names two columns");
                assert_eq!(compact_header(name), *name);
            }
        }
    }

    #[test]
    fn a_file_naming_one_column_twice_is_refused() {
        assert_eq!(
            header_columns(&["email", "notes", "E-mail"]),
            Err(DuplicateColumn {
                column: Column::User(Field::Em),
                first: 0,
                second: 2
            })
        );
        assert_eq!(
            header_columns(&["email", "notes"]),
            Ok(vec![Some(Column::User(Field::Em)), None])
        );
    }

    #[test]
    fn a_row_becomes_an_event_with_hashed_contact_data_only() {
        let e = offline_event(&record(&sale()), &DEFAULTS, NOW).expect("a good sale");
        assert!(e.dropped.is_empty());
        let ev = e.event;
        assert_eq!(ev.event_name, "Purchase");
        assert_eq!(ev.event_time, NOW - 3 * DAY);
        assert_eq!(ev.action_source, "physical_store");
        assert_eq!(ev.user_data.em, Some(sha256_hex("jane.doe@example.com")));
        // Meta's example (D-CIP): (650)555-1212 in the US.
        assert_eq!(
            ev.user_data.ph.as_deref(),
            Some("e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176")
        );
        assert_eq!(ev.user_data.country, Some(sha256_hex("us")));
        assert_eq!(
            Value::Object(ev.custom_data.clone()),
            json!({"value": 42.5, "currency": "USD", "order_id": "S-1001"})
        );
        assert!(ev.event_id.starts_with("offline:"));
        let body = serde_json::to_string(&ev).unwrap_or_default();
        assert!(!body.contains("Jane") && !body.contains("jane") && !body.contains("example"));
    }

    #[test]
    fn a_json_line_in_meta_shape_reads_like_a_row() {
        let line = json!({"event_name": "Lead", "event_time": NOW - 60, "action_source": "system_generated",
            "user_data": {"em": "a@b.co", "lead_id": 123456789012345_u64},
            "custom_data": {"content_ids": ["A", 7], "contents": [{"id": "A", "quantity": 2, "title": "x"}]},
            "notes": "called twice"});
        let (rec, unknown) = Record::from_object(line.as_object().expect("object"));
        assert_eq!(unknown, vec!["notes".to_string()]);
        let ev = offline_event(&rec, &DEFAULTS, NOW).expect("a lead").event;
        assert_eq!(ev.action_source, "system_generated");
        assert_eq!(
            ev.user_data.unhashed_ids.get("lead_id").map(String::as_str),
            Some("123456789012345")
        );
        assert_eq!(ev.custom_data["content_ids"], json!(["A", "7"]));
        assert_eq!(
            ev.custom_data["contents"],
            json!([{"id": "A", "quantity": 2}])
        );
    }

    #[test]
    fn iso_times_content_lists_and_defaults_apply() {
        let mut pairs = sale();
        pairs[1] = ("event_time", json!("2026-05-27T10:00:00+02:00"));
        pairs.push(("content_ids", json!("SKU-1, SKU-2|SKU-3")));
        pairs.retain(|(k, _)| *k != "event_name");
        let defaults = Defaults {
            event_name: Some("Purchase"),
            ..DEFAULTS
        };
        let ev = offline_event(&record(&pairs), &defaults, 1_780_000_000)
            .expect("ISO time")
            .event;
        assert_eq!(ev.event_time, 1_779_868_800);
        assert_eq!(ev.event_name, "Purchase");
        assert_eq!(
            ev.custom_data["content_ids"],
            json!(["SKU-1", "SKU-2", "SKU-3"])
        );
        // A default country reads national phone numbers; it is not sent.
        let phone_only = record(&[
            ("event_name", json!("Lead")),
            ("event_time", json!(NOW)),
            ("phone", json!("030 1234567")),
        ]);
        let de = Defaults {
            country: Some("DE"),
            ..DEFAULTS
        };
        let ev = offline_event(&phone_only, &de, NOW).expect("phone").event;
        assert_eq!(ev.user_data.ph, Some(sha256_hex("49301234567")));
        assert_eq!(ev.user_data.country, None);
    }

    #[test]
    fn rows_meta_would_refuse_are_skipped_with_the_rule() {
        let with = |k: &'static str, v: Value| {
            let mut p = sale();
            p.retain(|(key, _)| *key != k);
            p.push((k, v));
            p
        };
        let without = |ks: &[&str]| {
            let mut p = sale();
            p.retain(|(key, _)| !ks.contains(key));
            p
        };
        let cases = [
            (
                with("event_time", json!((NOW - 63 * DAY).to_string())),
                "event_time_too_old",
            ),
            (
                with("action_source", json!("store")),
                "action_source_invalid",
            ),
            (
                with("event_time", json!("last tuesday")),
                "event_time_invalid",
            ),
            (with("event_time", json!(NOW + DAY)), "event_time_in_future"),
            (without(&["event_time"]), "event_time_missing"),
            (without(&["event_name"]), "event_name_missing"),
            (without(&["currency"]), "value_without_currency"),
            (without(&["value"]), "purchase_value_currency"),
            (with("value", json!("12,50 €")), "value_invalid"),
            (with("currency", json!("dollars")), "currency_invalid"),
            (with("num_items", json!("two")), "num_items_invalid"),
            (
                with("contents", json!("[{\"quantity\": 1}]")),
                "contents_item_missing_id",
            ),
            (with("contents", json!("not json")), "contents_invalid"),
            (
                vec![
                    ("event_name", json!("Lead")),
                    ("event_time", json!(NOW)),
                    ("email", json!("not an email")),
                ],
                "user_data_missing",
            ),
        ];
        for (pairs, reason) in cases {
            assert_eq!(skip_reason(&pairs), Some(reason), "{reason}");
        }
        // Other sources keep Meta's 7 days; a store sale may be 62 days old.
        assert_eq!(
            skip_reason(&with("event_time", json!(NOW - 30 * DAY))),
            None
        );
        let mut call = with("event_time", json!(NOW - 8 * DAY));
        call.push(("action_source", json!("phone_call")));
        assert_eq!(skip_reason(&call), Some("event_time_too_old"));
    }

    #[test]
    fn fields_that_do_not_normalize_are_dropped_and_named() {
        let mut pairs = sale();
        pairs.push(("zip", json!("!!")));
        let e = offline_event(&record(&pairs), &DEFAULTS, NOW).expect("kept");
        assert_eq!(e.event.user_data.zp, None);
        assert_eq!(
            e.dropped,
            vec![Dropped {
                field: "zp".into(),
                reason: "invalid_zip"
            }]
        );
    }

    #[test]
    fn hashed_values_pass_through() {
        let h = sha256_hex("jane.doe@example.com");
        let mut pairs = sale();
        pairs.retain(|(k, _)| *k != "email");
        pairs.push(("em", json!(h.to_uppercase())));
        let ev = offline_event(&record(&pairs), &DEFAULTS, NOW)
            .expect("pre-hashed")
            .event;
        assert_eq!(ev.user_data.em, Some(h));
    }

    #[test]
    fn event_ids_are_given_or_derived_the_same_on_every_upload() {
        let id = |pairs: &[(&str, Value)]| {
            offline_event(&record(pairs), &DEFAULTS, NOW)
                .map(|e| e.event.event_id)
                .unwrap_or_default()
        };
        let first = id(&sale());
        assert_eq!(first.len(), "offline:".len() + 32);
        assert_eq!(first, id(&sale()), "same row, same id");
        // The order identifies the sale: another spelling of the same customer is the same id.
        let mut respelled = sale();
        respelled[2] = ("email", json!("jane.doe@example.com"));
        assert_eq!(id(&respelled), first);
        let mut other_order = sale();
        other_order[7] = ("order_id", json!("S-1002"));
        assert_ne!(id(&other_order), first);
        let mut second_item = sale();
        second_item.push(("item_number", json!("2")));
        assert_ne!(id(&second_item), first);
        let mut refund = sale();
        refund[0] = ("event_name", json!("Refund"));
        assert_ne!(id(&refund), first);
        // Without an order, the whole event is the identity.
        let no_order: Vec<_> = sale()
            .into_iter()
            .filter(|(k, _)| *k != "order_id")
            .collect();
        let mut no_order_respelled = no_order.clone();
        no_order_respelled[2] = ("email", json!("JANE.DOE@example.com"));
        assert_eq!(id(&no_order), id(&no_order_respelled));
        let mut other_value = no_order.clone();
        other_value[5] = ("value", json!("43"));
        assert_ne!(id(&no_order), id(&other_value));
        // A lead stage is one event per lead.
        let lead = |stage: &str, t: i64| {
            id(&[
                ("event_name", json!(stage)),
                ("event_time", json!(t)),
                ("lead_id", json!("777")),
                ("email", json!("a@b.co")),
            ])
        };
        assert_eq!(lead("Lead", NOW), lead("Lead", NOW - 60));
        assert_ne!(lead("Lead", NOW), lead("QualifiedLead", NOW));
        // A given event_id is kept as it is.
        let mut given = sale();
        given.push(("event_id", json!(" pos-42 ")));
        assert_eq!(id(&given), "pos-42");
    }

    #[test]
    fn canonical_json_ignores_key_order() {
        let a = json!({"b": 1, "a": [{"y": 2, "x": "s"}]});
        let b = json!({"a": [{"x": "s", "y": 2}], "b": 1});
        assert_eq!(canonical(&a), canonical(&b));
        assert_eq!(canonical(&a), r#"{"a":[{"x":"s","y":2}],"b":1}"#);
    }
}
