//! `custom_data` from the page: what is kept, fixed, or refused before it reaches Meta.

use serde_json::{Map, Value};

/// Keys a page must not put in `custom_data`: Meta would receive them unhashed (customer
/// data) or they are credentials (webhooks-and-pitfalls #25: tokens leaked into custom_data).
pub const FORBIDDEN_KEYS: &[&str] = &[
    "em",
    "email",
    "e_mail",
    "ph",
    "phone",
    "telephone",
    "mobile",
    "fn",
    "ln",
    "first_name",
    "last_name",
    "firstname",
    "lastname",
    "name",
    "full_name",
    "address",
    "street",
    "address1",
    "address2",
    "zip",
    "zp",
    "postcode",
    "postal_code",
    "db",
    "dob",
    "birthday",
    "date_of_birth",
    "ip",
    "ip_address",
    "client_ip_address",
    "access_token",
    "token",
    "password",
    "secret",
    "user_data",
];

/// A `custom_data` key dropped or fixed, and why. Never carries the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub field: String,
    pub reason: &'static str,
}

/// Cleans the page's `custom_data`: removes customer data and credentials, makes `value` a
/// finite number ≥ 0, `currency` an uppercase ISO 4217-shaped code, `content_ids` strings.
pub fn sanitized(input: Map<String, Value>, dropped: &mut Vec<Dropped>) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in input {
        let k = key.to_ascii_lowercase();
        if FORBIDDEN_KEYS.contains(&k.as_str()) {
            dropped.push(Dropped {
                field: key,
                reason: "customer_data_not_allowed_in_custom_data",
            });
            continue;
        }
        let fixed = match k.as_str() {
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
            None => dropped.push(Dropped {
                field: key,
                reason: "invalid_custom_data_value",
            }),
        }
    }
    out
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
    (c.len() == 3
        && ISO_4217
            .as_bytes()
            .chunks(3)
            .any(|code| code == c.as_bytes()))
    .then_some(c)
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
    fn customer_data_and_tokens_never_reach_custom_data() {
        let mut dropped = vec![];
        let input = json!({"value": "19.90", "currency": "eur", "email": "a@b.co", "access_token": "x", "content_ids": [1, "b"]});
        let out = sanitized(input.as_object().cloned().unwrap_or_default(), &mut dropped);
        assert_eq!(
            Value::Object(out),
            json!({"value": 19.9, "currency": "EUR", "content_ids": ["1", "b"]})
        );
        assert_eq!(dropped.len(), 2);
    }

    #[test]
    fn bad_amounts_and_currencies_are_dropped() {
        assert_eq!(amount(&json!(-1)), None);
        assert_eq!(amount(&json!("NaN")), None);
        assert_eq!(currency(&json!("usd")).as_deref(), Some("USD"));
        assert_eq!(currency(&json!("XYZ")), None);
        assert_eq!(currency(&json!("JPY")).as_deref(), Some("JPY"));
    }
}
