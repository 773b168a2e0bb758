//! The CAPI server event and request body, exactly as Meta receives them (D-SE, D-PAR).

use crate::normalize::Field;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One event in the `data` array of `POST /{version}/{pixel}/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerEvent {
    pub event_name: String,
    /// Unix seconds (Meta: seconds, not ms).
    pub event_time: i64,
    pub event_id: String,
    pub action_source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_source_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer_url: Option<String>,
    pub user_data: UserData,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub custom_data: Map<String, Value>,
    /// Limited Data Use (D-LDU): `["LDU"]` with the visitor's country/state (0, 0 = Meta
    /// geolocates), set by `privacy::verdict`; absent when LDU does not apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_processing_options: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_processing_options_country: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_processing_options_state: Option<u32>,
}

impl ServerEvent {
    /// Marks the event for Limited Data Use, or leaves it unmarked.
    pub fn set_ldu(&mut self, ldu: Option<crate::privacy::Ldu>) {
        self.data_processing_options = ldu.map(|_| vec!["LDU".to_string()]);
        self.data_processing_options_country = ldu.map(|l| l.country);
        self.data_processing_options_state = ldu.map(|l| l.state);
    }
}

/// `user_data`: hashed match keys plus the fields Meta wants unhashed. Read by hand
/// ([`UserData`]'s `Deserialize`): serde's derive for a `flatten`ed map buffers every field
/// through its `Content` type, which cost the Worker ≈ 10 KB of gzipped wasm.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UserData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub em: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ph: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "fn")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ln: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ct: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub st: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ge: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    // Never hashed (D-CIP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbc: Option<String>,
    /// Other ids Meta wants unhashed (`subscription_id`, `lead_id`, …; see `UNHASHED_IDS`).
    #[serde(default, flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub unhashed_ids: BTreeMap<String, String>,
}

impl<'de> Deserialize<'de> for UserData {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = UserData;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a user_data object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UserData, A::Error> {
                let mut u = UserData::default();
                while let Some(key) = map.next_key::<String>()? {
                    let slot = match key.as_str() {
                        "em" => &mut u.em,
                        "ph" => &mut u.ph,
                        "fn" => &mut u.first_name,
                        "ln" => &mut u.ln,
                        "ct" => &mut u.ct,
                        "st" => &mut u.st,
                        "zp" => &mut u.zp,
                        "country" => &mut u.country,
                        "ge" => &mut u.ge,
                        "db" => &mut u.db,
                        "external_id" => &mut u.external_id,
                        "client_ip_address" => &mut u.client_ip_address,
                        "client_user_agent" => &mut u.client_user_agent,
                        "fbp" => &mut u.fbp,
                        "fbc" => &mut u.fbc,
                        _ => {
                            // As the derived flatten did: any other string-valued key is kept.
                            if let Some(v) = map.next_value::<Option<String>>()? {
                                u.unhashed_ids.insert(key, v);
                            }
                            continue;
                        }
                    };
                    *slot = map.next_value()?;
                }
                Ok(u)
            }
        }
        d.deserialize_map(Fields)
    }
}

/// `user_data` ids Meta lists as "do not hash" (D-CIP), passed through as given. IP, user
/// agent, fbp and fbc are not here: the edge sets those itself.
pub const UNHASHED_IDS: &[&str] = &[
    "subscription_id",
    "fb_login_id",
    "lead_id",
    "anon_id",
    "madid",
    "page_id",
    "page_scoped_user_id",
    "ctwa_clid",
    "ig_account_id",
    "ig_sid",
];

impl UserData {
    /// Drops every contact field (`CUSTOMER_DATA = off`), keeping only what Meta's browser
    /// pixel itself sends: fbp, fbc, client IP and user agent. Returns the dropped keys.
    pub fn keep_pixel_fields_only(&mut self) -> Vec<String> {
        let mut dropped: Vec<String> = Field::ALL
            .iter()
            .filter(|f| self.hashed_mut(**f).take().is_some())
            .map(|f| f.key().to_string())
            .collect();
        dropped.extend(std::mem::take(&mut self.unhashed_ids).into_keys());
        dropped
    }

    /// Whether any contact field is set (what [`UserData::keep_pixel_fields_only`] drops).
    pub fn has_contact_data(&self) -> bool {
        [
            &self.em,
            &self.ph,
            &self.first_name,
            &self.ln,
            &self.ct,
            &self.st,
            &self.zp,
            &self.country,
            &self.ge,
            &self.db,
            &self.external_id,
        ]
        .iter()
        .any(|f| f.is_some())
            || !self.unhashed_ids.is_empty()
    }

    /// The slot of a hashed field.
    pub fn hashed_mut(&mut self, field: Field) -> &mut Option<String> {
        match field {
            Field::Em => &mut self.em,
            Field::Ph => &mut self.ph,
            Field::Fn => &mut self.first_name,
            Field::Ln => &mut self.ln,
            Field::Ct => &mut self.ct,
            Field::St => &mut self.st,
            Field::Zp => &mut self.zp,
            Field::Country => &mut self.country,
            Field::Ge => &mut self.ge,
            Field::Db => &mut self.db,
            Field::ExternalId => &mut self.external_id,
        }
    }
}

/// The Graph API version used unless configured: the newest one Meta's own business SDKs use
/// (facebook-nodejs-business-sdk 26.0.0; the Python and PHP SDKs are on v25.0).
pub const DEFAULT_API_VERSION: &str = "v26.0";

/// Whether `v` is a Graph API version as Meta writes it in a path: `v<major>.<minor>`.
pub fn is_api_version(v: &str) -> bool {
    v.strip_prefix('v')
        .and_then(|v| v.split_once('.'))
        .is_some_and(|(major, minor)| {
            [major, minor]
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// A test code of the shape Events Manager issues (`TEST12345`, D-USE `TEST123`): 4–20
/// uppercase ASCII letters and digits. Anything else is dropped rather than sent: each
/// distinct code costs a Conversions API request of its own.
pub fn is_test_event_code(code: &str) -> bool {
    (4..=20).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Identifies capi-edge to Meta (D-BP "Agencies: send partner_agent").
pub const PARTNER_AGENT: &str = "capi-edge";

/// The JSON body of one CAPI request. The access token travels in this body, never in the
/// URL: URLs end up in logs and traces. The body is therefore never logged.
///
/// With an app secret, the body also carries `appsecret_proof` (Graph API: hex HMAC-SHA256 of
/// the access token keyed with the app secret), so a leaked token alone is not enough.
pub fn request_body(
    events: &[ServerEvent],
    access_token: &str,
    app_secret: Option<&str>,
    test_event_code: Option<&str>,
) -> String {
    #[derive(Serialize)]
    struct Body<'a> {
        data: &'a [ServerEvent],
        #[serde(skip_serializing_if = "Option::is_none")]
        test_event_code: Option<&'a str>,
        partner_agent: &'a str,
        access_token: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        appsecret_proof: Option<String>,
    }
    let body = Body {
        data: events,
        test_event_code: test_event_code.filter(|c| !c.is_empty()),
        partner_agent: PARTNER_AGENT,
        access_token,
        appsecret_proof: app_secret
            .filter(|s| !s.is_empty())
            .map(|s| appsecret_proof(access_token, s)),
    };
    serde_json::to_string(&body).unwrap_or_default()
}

/// Graph API `appsecret_proof`: lowercase hex HMAC-SHA256(key = app secret, message = token).
pub fn appsecret_proof(access_token: &str, app_secret: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = match Hmac::<sha2::Sha256>::new_from_slice(app_secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(access_token.as_bytes());
    crate::hash::lower_hex(&mac.finalize().into_bytes())
}

/// `{graph}/{version}/{pixel}/events`; no credentials in it.
pub fn events_url(graph_url: &str, api_version: &str, pixel_id: &str) -> String {
    format!(
        "{}/{}/{}/events",
        graph_url.trim_end_matches('/'),
        api_version.trim_matches('/'),
        pixel_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_are_v_major_dot_minor() {
        for ok in ["v26.0", "v9.12"] {
            assert!(is_api_version(ok), "{ok}");
        }
        for bad in ["26.0", "v26", "v26.", "v.0", "vX.0", "v26.0/x", ""] {
            assert!(!is_api_version(bad), "{bad}");
        }
    }

    #[test]
    fn appsecret_proof_is_hmac_sha256_of_the_token() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            appsecret_proof("what do ya want for nothing?", "Jefe"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let body = request_body(&[], "tok", Some("Jefe"), None);
        assert!(body.contains(&format!(
            "\"appsecret_proof\":\"{}\"",
            appsecret_proof("tok", "Jefe")
        )));
        assert!(!request_body(&[], "tok", None, None).contains("appsecret_proof"));
    }
}
