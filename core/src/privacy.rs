//! The privacy modes a shop sets, and what they mean for one event: relay it or not, with
//! which Limited Data Use flags, and whether customer data may leave at all.
//!
//! Meta's `fbq('consent', …)` governs only the browser pixel; these rules are the server
//! copies' own gate, applied at the edge to beacons and order webhooks alike.

/// `CUSTOMER_DATA`: the data-controls toggle. Off by default: personal data goes to Meta only
/// after the shop decides it may (a privacy review), as the seed product does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CustomerData {
    /// Only what Meta's browser pixel itself sends (fbp, fbc, client IP, user agent, page URL)
    /// plus the event's own data: no contact information from any source.
    #[default]
    Off,
    /// Contact information normalized and SHA-256-hashed as Meta specifies.
    Hashed,
}

/// `CONSENT`: whether an event needs a stated, granted consent to be relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConsentMode {
    /// Opt-out: relayed unless consent was refused.
    #[default]
    Optional,
    /// Opt-in (what EU shops need): relayed only with consent granted.
    Required,
}

/// `GPC`: what a Global Privacy Control signal (an opt-out of sale/sharing) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpcMode {
    /// Relay with Limited Data Use (Meta geolocates the state).
    #[default]
    Ldu,
    /// Do not relay.
    Drop,
    /// Relay as if there were no signal.
    Ignore,
}

/// `LDU`: Limited Data Use for every event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LduMode {
    #[default]
    Off,
    /// LDU on every event, as Meta treats California (`country 1, state 1000`).
    On,
    /// LDU on every event, Meta geolocating where the law applies (`country 0, state 0`).
    Geo,
}

/// A shop's privacy modes; `Default` is the safe set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Modes {
    pub customer_data: CustomerData,
    pub consent: ConsentMode,
    pub gpc: GpcMode,
    pub ldu: LduMode,
}

/// A privacy setting with a value that is not one of its documented ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidSetting(pub &'static str);

/// Each setting's documented values: what `parse` accepts and `names` reports, in one place.
const CUSTOMER_DATA: &[(&str, CustomerData)] =
    &[("off", CustomerData::Off), ("hashed", CustomerData::Hashed)];
const CONSENT: &[(&str, ConsentMode)] = &[
    ("optional", ConsentMode::Optional),
    ("required", ConsentMode::Required),
];
const GPC: &[(&str, GpcMode)] = &[
    ("ldu", GpcMode::Ldu),
    ("drop", GpcMode::Drop),
    ("ignore", GpcMode::Ignore),
];
const LDU: &[(&str, LduMode)] = &[
    ("off", LduMode::Off),
    ("on", LduMode::On),
    ("geo", LduMode::Geo),
];

/// The value of a setting (absent or empty = default); undocumented = the setting's name.
pub(crate) fn pick<T: Copy + Default>(
    value: Option<&str>,
    setting: &'static str,
    table: &[(&'static str, T)],
) -> Result<T, InvalidSetting> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(T::default());
    };
    table
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(v))
        .map(|(_, t)| *t)
        .ok_or(InvalidSetting(setting))
}

/// The documented name of a setting's value.
fn name_of<T: PartialEq>(value: T, table: &[(&'static str, T)]) -> &'static str {
    table
        .iter()
        .find(|(_, t)| *t == value)
        .map_or("", |(name, _)| name)
}

impl Modes {
    /// Reads the four settings (absent or empty = default). A value that is not documented is
    /// an error naming the setting, never guessed.
    pub fn parse(
        customer_data: Option<&str>,
        consent: Option<&str>,
        gpc: Option<&str>,
        ldu: Option<&str>,
    ) -> Result<Modes, InvalidSetting> {
        Ok(Modes {
            customer_data: pick(customer_data, "CUSTOMER_DATA", CUSTOMER_DATA)?,
            consent: pick(consent, "CONSENT", CONSENT)?,
            gpc: pick(gpc, "GPC", GPC)?,
            ldu: pick(ldu, "LDU", LDU)?,
        })
    }

    /// The modes as the shim and `/t/health` see them: setting names, never a secret.
    pub fn names(&self) -> [(&'static str, &'static str); 4] {
        [
            ("customer_data", name_of(self.customer_data, CUSTOMER_DATA)),
            ("consent", name_of(self.consent, CONSENT)),
            ("gpc", name_of(self.gpc, GPC)),
            ("ldu", name_of(self.ldu, LDU)),
        ]
    }
}

/// What an event says of the visitor's consent to marketing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consent {
    Granted,
    Denied,
    #[default]
    Unknown,
}

impl Consent {
    /// Reads a consent signal as shops and consent tools spell it (`granted`, `yes`, `true`,
    /// `1`, Shopify's `marketing=yes`; `denied`, `revoked`, `no`, `false`, `0`, …). Anything
    /// else is unknown, never granted.
    pub fn from_signal(value: &str) -> Consent {
        const GRANTED: &[&str] = &[
            "granted", "grant", "yes", "y", "true", "1", "accepted", "allow", "allowed", "opt_in",
            "opt-in", "optin",
        ];
        const DENIED: &[&str] = &[
            "denied", "deny", "revoke", "revoked", "no", "n", "false", "0", "refused", "declined",
            "rejected", "opt_out", "opt-out", "optout",
        ];
        let v = value.trim();
        if GRANTED.iter().any(|g| g.eq_ignore_ascii_case(v)) {
            Consent::Granted
        } else if DENIED.iter().any(|d| d.eq_ignore_ascii_case(v)) {
            Consent::Denied
        } else {
            Consent::Unknown
        }
    }

    /// A JSON consent value: a string as in [`Consent::from_signal`], or a boolean.
    pub fn from_json(value: Option<&serde_json::Value>) -> Consent {
        match value {
            Some(serde_json::Value::Bool(true)) => Consent::Granted,
            Some(serde_json::Value::Bool(false)) => Consent::Denied,
            Some(serde_json::Value::String(s)) => Consent::from_signal(s),
            Some(serde_json::Value::Number(n)) => Consent::from_signal(&n.to_string()),
            _ => Consent::Unknown,
        }
    }
}

/// A truthy GPC flag as carried in JSON or metadata (`true`, `"1"`, `"true"`).
pub fn gpc_flag(value: Option<&serde_json::Value>) -> bool {
    match value {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => {
            matches!(s.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes")
        }
        Some(serde_json::Value::Number(n)) => n.as_u64() == Some(1),
        _ => false,
    }
}

/// Meta's Limited Data Use flags for one event (`data_processing_options` and its location).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ldu {
    /// `data_processing_options_country`: 1 (US) or 0 (Meta geolocates).
    pub country: u32,
    /// `data_processing_options_state`: 1000 (California) or 0 (Meta geolocates).
    pub state: u32,
}

/// Meta: `["LDU"], 0, 0` lets Meta geolocate the visitor.
pub const LDU_GEOLOCATE: Ldu = Ldu {
    country: 0,
    state: 0,
};
/// Meta: `["LDU"], 1, 1000` is California, where LDU always applies.
pub const LDU_CALIFORNIA: Ldu = Ldu {
    country: 1,
    state: 1000,
};

/// The decision for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it, with these LDU flags if any.
    Relay { ldu: Option<Ldu> },
    /// Do not send it; the reason is counted and written on its receipt.
    Ignore(&'static str),
}

/// Reason: consent was refused (by the visitor, the consent tool or the order).
pub const CONSENT_REFUSED: &str = "consent_refused";
/// Reason: `CONSENT = required` and the event does not carry a granted consent.
pub const NO_CONSENT: &str = "no_consent";
/// Reason: a Global Privacy Control signal with `GPC = drop`.
pub const GPC_OPT_OUT: &str = "gpc_opt_out";
/// Reason: contact information dropped because `CUSTOMER_DATA = off`.
pub const DATA_CONTROLS_OFF: &str = "data_controls_off";

/// Whether (and how) an event with this consent and GPC signal may be relayed.
pub fn verdict(modes: &Modes, consent: Consent, gpc: bool) -> Verdict {
    match (consent, modes.consent) {
        (Consent::Denied, _) => return Verdict::Ignore(CONSENT_REFUSED),
        (Consent::Unknown, ConsentMode::Required) => return Verdict::Ignore(NO_CONSENT),
        _ => {}
    }
    if gpc && modes.gpc == GpcMode::Drop {
        return Verdict::Ignore(GPC_OPT_OUT);
    }
    let ldu = ldu_for_every_event(modes)
        .or_else(|| (gpc && modes.gpc == GpcMode::Ldu).then_some(LDU_GEOLOCATE));
    Verdict::Relay { ldu }
}

/// The flags `LDU` puts on every event (none with `off`; GPC's own are per event).
pub fn ldu_for_every_event(modes: &Modes) -> Option<Ldu> {
    match modes.ldu {
        LduMode::On => Some(LDU_CALIFORNIA),
        LduMode::Geo => Some(LDU_GEOLOCATE),
        LduMode::Off => None,
    }
}

/// Today's settings on an event accepted earlier and sent now (a retry, a replay of a dead
/// letter, an order's refund): contact data goes only while `CUSTOMER_DATA` still allows it, and
/// `LDU` turned on since marks it. Never loosens: an event marked for Limited Data Use stays
/// marked. Consent and GPC are the event's own signals, decided when it arrived. Returns whether
/// anything was dropped or marked.
pub fn as_of_now(modes: &Modes, event: &mut crate::event::ServerEvent) -> bool {
    if !is_stale(modes, event) {
        return false;
    }
    if modes.customer_data == CustomerData::Off {
        event.user_data.keep_pixel_fields_only();
    }
    if event.data_processing_options.is_none() {
        event.set_ldu(ldu_for_every_event(modes));
    }
    true
}

/// Whether [`as_of_now`] would change `event`: it carries contact data `CUSTOMER_DATA` no
/// longer allows, or lacks the LDU flags `LDU` now asks for.
pub fn is_stale(modes: &Modes, event: &crate::event::ServerEvent) -> bool {
    (modes.customer_data == CustomerData::Off && event.user_data.has_contact_data())
        || event.data_processing_options.is_none() && ldu_for_every_event(modes).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modes(consent: ConsentMode, gpc: GpcMode, ldu: LduMode) -> Modes {
        Modes {
            consent,
            gpc,
            ldu,
            ..Modes::default()
        }
    }

    #[test]
    fn an_event_sent_later_follows_todays_settings_and_is_never_loosened() {
        let text = r#"{"event_name":"Purchase","event_time":1,"event_id":"purchase:1","action_source":"website",
            "user_data":{"em":"aa","external_id":"bb","lead_id":"L1","fbp":"fb.1.1.2","client_ip_address":"198.51.100.4"},
            "custom_data":{"value":5}}"#;
        let accepted: crate::event::ServerEvent = serde_json::from_str(text).expect("event");
        // Still hashed, LDU still off: unchanged.
        let mut e = accepted.clone();
        let hashed = Modes {
            customer_data: CustomerData::Hashed,
            ..Modes::default()
        };
        assert!(!as_of_now(&hashed, &mut e));
        assert_eq!(e, accepted);
        // Data controls turned off, LDU turned on since: contact data goes, LDU comes.
        let now = Modes {
            ldu: LduMode::Geo,
            ..Modes::default()
        };
        assert!(as_of_now(&now, &mut e));
        let u = serde_json::to_value(&e.user_data).expect("json");
        assert_eq!(
            u,
            serde_json::json!({"fbp": "fb.1.1.2", "client_ip_address": "198.51.100.4"})
        );
        assert_eq!(e.data_processing_options, Some(vec!["LDU".to_string()]));
        assert_eq!(e.data_processing_options_state, Some(0));
        // The same whatever CONSENT says: the event's consent was decided when it arrived.
        let mut e = accepted.clone();
        let required = Modes {
            consent: ConsentMode::Required,
            ldu: LduMode::On,
            ..hashed
        };
        assert!(as_of_now(&required, &mut e));
        assert_eq!(e.data_processing_options_state, Some(1000));
        assert_eq!(e.user_data, accepted.user_data, "still hashed: kept");
        // An event marked California keeps its own flags when LDU is off again.
        let mut marked = accepted.clone();
        marked.set_ldu(Some(LDU_CALIFORNIA));
        assert!(!as_of_now(&hashed, &mut marked));
        assert_eq!(marked.data_processing_options_state, Some(1000));
    }

    #[test]
    fn the_defaults_are_the_safe_ones() {
        let m = Modes::parse(None, Some(""), None, None).expect("defaults");
        assert_eq!(m.customer_data, CustomerData::Off);
        assert_eq!(m.consent, ConsentMode::Optional);
        assert_eq!(m.gpc, GpcMode::Ldu);
        assert_eq!(m.ldu, LduMode::Off);
        assert_eq!(
            Modes::parse(Some("HASHED"), Some("required"), Some("drop"), Some("geo"))
                .expect("valid")
                .names()
                .map(|(_, v)| v),
            ["hashed", "required", "drop", "geo"]
        );
    }

    #[test]
    fn an_undocumented_value_is_an_error_not_a_guess() {
        assert_eq!(
            Modes::parse(Some("plain"), None, None, None),
            Err(InvalidSetting("CUSTOMER_DATA"))
        );
        assert_eq!(
            Modes::parse(None, Some("yes"), None, None),
            Err(InvalidSetting("CONSENT"))
        );
        assert_eq!(
            Modes::parse(None, None, None, Some("1")),
            Err(InvalidSetting("LDU"))
        );
    }

    #[test]
    fn consent_decides_before_anything_else() {
        let optional = Modes::default();
        let required = modes(ConsentMode::Required, GpcMode::Ldu, LduMode::Off);
        assert_eq!(
            verdict(&optional, Consent::Unknown, false),
            Verdict::Relay { ldu: None }
        );
        assert_eq!(
            verdict(&optional, Consent::Denied, false),
            Verdict::Ignore(CONSENT_REFUSED)
        );
        assert_eq!(
            verdict(&required, Consent::Unknown, false),
            Verdict::Ignore(NO_CONSENT)
        );
        assert_eq!(
            verdict(&required, Consent::Granted, false),
            Verdict::Relay { ldu: None }
        );
    }

    #[test]
    fn gpc_and_ldu_follow_metas_documented_flags() {
        let d = Modes::default();
        assert_eq!(
            verdict(&d, Consent::Granted, true),
            Verdict::Relay {
                ldu: Some(LDU_GEOLOCATE)
            }
        );
        assert_eq!(
            verdict(
                &modes(ConsentMode::Optional, GpcMode::Drop, LduMode::Off),
                Consent::Unknown,
                true
            ),
            Verdict::Ignore(GPC_OPT_OUT)
        );
        assert_eq!(
            verdict(
                &modes(ConsentMode::Optional, GpcMode::Ignore, LduMode::Off),
                Consent::Unknown,
                true
            ),
            Verdict::Relay { ldu: None }
        );
        assert_eq!(
            verdict(
                &modes(ConsentMode::Optional, GpcMode::Ignore, LduMode::On),
                Consent::Unknown,
                false
            ),
            Verdict::Relay {
                ldu: Some(LDU_CALIFORNIA)
            }
        );
    }

    #[test]
    fn consent_signals_are_read_leniently_and_never_guessed_granted() {
        for g in ["granted", "YES", " true ", "1", "opt-in"] {
            assert_eq!(Consent::from_signal(g), Consent::Granted, "{g}");
        }
        for d in ["denied", "revoke", "No", "0", "refused"] {
            assert_eq!(Consent::from_signal(d), Consent::Denied, "{d}");
        }
        for u in ["", "maybe", "pending"] {
            assert_eq!(Consent::from_signal(u), Consent::Unknown, "{u}");
        }
        assert_eq!(
            Consent::from_json(Some(&serde_json::json!(false))),
            Consent::Denied
        );
    }
}
