//! Meta's normalization of each `user_data` field, then SHA-256.
//!
//! Rules from Meta's customer-information-parameters docs (D-CIP); where the docs are silent,
//! Meta's Parameter Builder library (PB). Each field has one function, named after it.
//!
//! Long on purpose: one function per Meta field, each with its rule's source.

use crate::hash::{is_sha256_hex, sha256_hex};
use serde::Serialize;

/// The `user_data` keys Meta wants hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Em,
    Ph,
    Fn,
    Ln,
    Ct,
    St,
    Zp,
    Country,
    Ge,
    Db,
    ExternalId,
}

impl Field {
    pub const ALL: [Field; 11] = [
        Field::Em,
        Field::Ph,
        Field::Fn,
        Field::Ln,
        Field::Ct,
        Field::St,
        Field::Zp,
        Field::Country,
        Field::Ge,
        Field::Db,
        Field::ExternalId,
    ];

    /// The key as it appears in Meta's `user_data`.
    pub fn key(self) -> &'static str {
        match self {
            Field::Em => "em",
            Field::Ph => "ph",
            Field::Fn => "fn",
            Field::Ln => "ln",
            Field::Ct => "ct",
            Field::St => "st",
            Field::Zp => "zp",
            Field::Country => "country",
            Field::Ge => "ge",
            Field::Db => "db",
            Field::ExternalId => "external_id",
        }
    }

    /// The field for a `user_data` key (Meta's short keys only).
    pub fn from_key(key: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.key() == key)
    }
}

/// Why a value was dropped instead of hashed. Counted by the Worker; never carries the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    Empty,
    InvalidEmail,
    InvalidPhone,
    InvalidName,
    InvalidCity,
    InvalidState,
    InvalidZip,
    InvalidCountry,
    UnknownGender,
    InvalidDate,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Empty => "empty",
            DropReason::InvalidEmail => "invalid_email",
            DropReason::InvalidPhone => "invalid_phone",
            DropReason::InvalidName => "invalid_name",
            DropReason::InvalidCity => "invalid_city",
            DropReason::InvalidState => "invalid_state",
            DropReason::InvalidZip => "invalid_zip",
            DropReason::InvalidCountry => "invalid_country",
            DropReason::UnknownGender => "unknown_gender",
            DropReason::InvalidDate => "invalid_date",
        }
    }
}

/// What a value becomes before it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Normalized {
    /// Normalized plain text, to be hashed.
    Plain(String),
    /// Already hashed by the caller (64 hex, lowercased) or a Parameter Builder value
    /// (`<64 hex>.<appendix>`, sent as-is): never hashed again.
    PreHashed(String),
}

impl Normalized {
    /// The value to put in `user_data`: SHA-256 of plain text, pre-hashed values unchanged.
    pub fn into_hashed(self) -> String {
        match self {
            Normalized::Plain(s) => sha256_hex(&s),
            Normalized::PreHashed(s) => s,
        }
    }
}

/// Normalizes `value` for `field`. `country` (any form `country` accepts) lets phones get
/// their calling code and zips/states their country's rules.
pub fn normalized(
    field: Field,
    value: &str,
    country: Option<&str>,
) -> Result<Normalized, DropReason> {
    normalized_in(field, value, country.and_then(|c| country_code(c).ok()))
}

/// [`normalized`] with the country already resolved by [`country_code`] (`None` when absent or
/// invalid), for bulk callers that resolve each distinct country string once.
pub fn normalized_in(
    field: Field,
    value: &str,
    country: Option<&'static str>,
) -> Result<Normalized, DropReason> {
    let value = value.trim();
    if value.is_empty() {
        return Err(DropReason::Empty);
    }
    if let Some(pre) = pre_hashed(value) {
        return Ok(Normalized::PreHashed(pre));
    }
    let plain = match field {
        Field::Em => email(value),
        Field::Ph => phone(value, country),
        Field::Fn | Field::Ln => name(value),
        Field::Ct => city(value),
        Field::St => state(value, country),
        Field::Zp => zip(value, country),
        Field::Country => country_code(value).map(str::to_string),
        Field::Ge => gender(value),
        Field::Db => date_of_birth(value),
        Field::ExternalId => Ok(value.to_lowercase()),
    }?;
    Ok(Normalized::Plain(plain))
}

/// Normalizes and hashes: the exact string Meta receives for this field.
pub fn hashed(field: Field, value: &str, country: Option<&str>) -> Result<String, DropReason> {
    normalized(field, value, country).map(Normalized::into_hashed)
}

/// A value the caller already hashed: 64 hex (any case, lowercased) or a Parameter Builder
/// value `<64 hex>.<appendix>` (PB/D-PBL: case-sensitive, send as-is).
fn pre_hashed(value: &str) -> Option<String> {
    if value.len() < 64 {
        return None; // too short to hold a digest
    }
    let (digest, appendix) = match value.split_once('.') {
        Some((d, a)) => (d, Some(a)),
        None => (value, None),
    };
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    match appendix {
        None => Some(digest.to_ascii_lowercase()),
        Some(a)
            if is_sha256_hex(digest)
                && (2..=8).contains(&a.len())
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Some(value.to_string())
        }
        Some(_) => None,
    }
}

/// Meta: trim, lowercase. Something that is not an address is dropped, not hashed.
pub fn email(value: &str) -> Result<String, DropReason> {
    let e = value.trim().to_lowercase();
    let (local, domain) = e.rsplit_once('@').ok_or(DropReason::InvalidEmail)?;
    let ok = !local.is_empty()
        && local.len() <= 64
        && !local.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !e.chars().any(|c| {
            c.is_whitespace() || c.is_control() || c == ',' || c == ';' || c == '<' || c == '>'
        });
    if ok {
        Ok(e)
    } else {
        Err(DropReason::InvalidEmail)
    }
}

/// Meta: digits only, no leading zeros, with the country calling code. A number written in
/// national form gets its country's code when the country is known.
pub fn phone(value: &str, country: Option<&str>) -> Result<String, DropReason> {
    // How it begins (`+`, `00`, a trunk 0) is read after any label or bracket: `(06) …`, `Tel. 0…`.
    let v = value.trim_start_matches(|c: char| !c.is_ascii_digit() && c != '+');
    let international = v.starts_with('+') || v.starts_with("00");
    let national_trunk = !international && v.starts_with('0');
    let digits: String = v.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_start_matches('0');
    let full = match (international, country.and_then(calling_code)) {
        (true, _) | (false, None) => digits.to_string(),
        (false, Some(code)) => with_code(code, digits, national_trunk),
    };
    // E.164: at most 15 digits; shorter than 7 is not a phone number anywhere.
    if (7..=15).contains(&full.len()) {
        Ok(full)
    } else {
        Err(DropReason::InvalidPhone)
    }
}

/// A number written without `+` or `00` (`digits` without leading zeros; `trunk`: it began with
/// the national trunk 0) in the country of calling `code`, with that code.
fn with_code(code: &str, digits: &str, trunk: bool) -> String {
    match code {
        // Italy's trunk 0 stays after the code (+39 06…, Rome).
        "39" if trunk => return prefixed("390", digits),
        // Russia and Kazakhstan dial 8 as their trunk prefix (8 912 … is +7 912 …).
        "7" if digits.len() == 11 && digits.starts_with('8') => {
            return prefixed(code, &digits[1..])
        }
        _ => {}
    }
    // A country whose national numbers have known lengths: a number of such a length is
    // national even when it begins with the calling code's digits (India's 91234 56789).
    let national = national_lengths(code).is_some_and(|l| l.contains(&digits.len()));
    if trunk || national || !digits.starts_with(code) {
        prefixed(code, digits)
    } else {
        digits.to_string()
    }
}

/// The lengths of national significant numbers (without a trunk 0) for calling codes where they
/// are fixed or nearly so (ITU-T E.164 national numbering plans): NANP, Russia and Kazakhstan,
/// France, Spain, Italy's mobiles, the UK, Mexico, Brazil, Australia, Japan, India. Elsewhere a
/// number that begins with the calling code is taken as carrying it.
fn national_lengths(code: &str) -> Option<std::ops::RangeInclusive<usize>> {
    Some(match code {
        "1" | "7" | "52" | "91" => 10..=10,
        "33" | "34" | "61" => 9..=9,
        "39" | "44" | "81" => 9..=10,
        "55" => 10..=11,
        _ => return None,
    })
}

/// `code` then `digits` (what `format!("{code}{digits}")` gives, without the formatter).
fn prefixed(code: &str, digits: &str) -> String {
    let mut s = String::with_capacity(code.len() + digits.len());
    s.push_str(code);
    s.push_str(digits);
    s
}

fn is_punctuation_or_space(c: char) -> bool {
    c.is_whitespace()
        || c.is_ascii_punctuation()
        || matches!(c, '\u{2010}'..='\u{2027}' | '\u{2030}'..='\u{205E}' | '\u{00A1}' | '\u{00AB}' | '\u{00B7}' | '\u{00BB}' | '\u{00BF}' | '\u{3000}'..='\u{3003}')
}

/// Meta: lowercase, no punctuation; PB also removes all whitespace; UTF-8 letters are kept
/// (`Valéry` → `valéry`, `정` stays).
pub fn name(value: &str) -> Result<String, DropReason> {
    let n = compact_lower(value);
    if n.is_empty() {
        Err(DropReason::InvalidName)
    } else {
        Ok(n)
    }
}

/// Meta: lowercase, no punctuation, special characters or spaces (`New York` → `newyork`).
pub fn city(value: &str) -> Result<String, DropReason> {
    let c: String = if value.is_ascii() {
        // As below; for ASCII, `is_numeric` is `is_ascii_digit` (see `compact_lower`).
        value
            .chars()
            .filter(|c| !c.is_whitespace() && !c.is_ascii_punctuation() && !c.is_ascii_digit())
            .map(|c| c.to_ascii_lowercase())
            .collect()
    } else {
        value
            .chars()
            .filter(|c| !is_punctuation_or_space(*c) && !c.is_numeric())
            .flat_map(char::to_lowercase)
            .collect()
    };
    if c.is_empty() {
        Err(DropReason::InvalidCity)
    } else {
        Ok(c)
    }
}

/// Letters and digits only, lowercased.
fn compact_lower(value: &str) -> String {
    if value.is_ascii() {
        // The same result without per-char Unicode tables: for ASCII, `is_punctuation_or_space`
        // is `is_whitespace() || is_ascii_punctuation()` and lowercasing is ASCII lowercasing.
        let mut out = String::with_capacity(value.len());
        out.extend(
            value
                .chars()
                .filter(|c| !c.is_whitespace() && !c.is_ascii_punctuation())
                .map(|c| c.to_ascii_lowercase()),
        );
        return out;
    }
    value
        .chars()
        .filter(|c| !is_punctuation_or_space(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

const US_STATES: &[(&str, &str)] = &[
    ("alabama", "al"),
    ("alaska", "ak"),
    ("arizona", "az"),
    ("arkansas", "ar"),
    ("california", "ca"),
    ("colorado", "co"),
    ("connecticut", "ct"),
    ("delaware", "de"),
    ("districtofcolumbia", "dc"),
    ("florida", "fl"),
    ("georgia", "ga"),
    ("hawaii", "hi"),
    ("idaho", "id"),
    ("illinois", "il"),
    ("indiana", "in"),
    ("iowa", "ia"),
    ("kansas", "ks"),
    ("kentucky", "ky"),
    ("louisiana", "la"),
    ("maine", "me"),
    ("maryland", "md"),
    ("massachusetts", "ma"),
    ("michigan", "mi"),
    ("minnesota", "mn"),
    ("mississippi", "ms"),
    ("missouri", "mo"),
    ("montana", "mt"),
    ("nebraska", "ne"),
    ("nevada", "nv"),
    ("newhampshire", "nh"),
    ("newjersey", "nj"),
    ("newmexico", "nm"),
    ("newyork", "ny"),
    ("northcarolina", "nc"),
    ("northdakota", "nd"),
    ("ohio", "oh"),
    ("oklahoma", "ok"),
    ("oregon", "or"),
    ("pennsylvania", "pa"),
    ("rhodeisland", "ri"),
    ("southcarolina", "sc"),
    ("southdakota", "sd"),
    ("tennessee", "tn"),
    ("texas", "tx"),
    ("utah", "ut"),
    ("vermont", "vt"),
    ("virginia", "va"),
    ("washington", "wa"),
    ("westvirginia", "wv"),
    ("wisconsin", "wi"),
    ("wyoming", "wy"),
    ("puertorico", "pr"),
    ("guam", "gu"),
    ("americansamoa", "as"),
    ("usvirginislands", "vi"),
    ("northernmarianaislands", "mp"),
];

const CA_PROVINCES: &[(&str, &str)] = &[
    ("alberta", "ab"),
    ("britishcolumbia", "bc"),
    ("manitoba", "mb"),
    ("newbrunswick", "nb"),
    ("newfoundlandandlabrador", "nl"),
    ("newfoundland", "nl"),
    ("novascotia", "ns"),
    ("ontario", "on"),
    ("princeedwardisland", "pe"),
    ("quebec", "qc"),
    ("québec", "qc"),
    ("saskatchewan", "sk"),
    ("northwestterritories", "nt"),
    ("nunavut", "nu"),
    ("yukon", "yt"),
];

/// Meta: 2-letter ANSI code, lowercase, for US states (and Canadian provinces, as PB does);
/// elsewhere lowercase without spaces or punctuation.
pub fn state(value: &str, country: Option<&str>) -> Result<String, DropReason> {
    let s = compact_lower(value);
    if s.is_empty() {
        return Err(DropReason::InvalidState);
    }
    // Shopify and others send "US-CA" style ISO 3166-2 codes.
    let s = match s.strip_prefix("us").or_else(|| s.strip_prefix("ca")) {
        Some(rest) if rest.len() == 2 && value.contains('-') => rest.to_string(),
        _ => s,
    };
    let tables: &[&[(&str, &str)]] = match country {
        Some("us") => &[US_STATES],
        Some("ca") => &[CA_PROVINCES],
        None => &[US_STATES, CA_PROVINCES],
        Some(_) => &[],
    };
    for table in tables {
        if let Some((_, code)) = table.iter().find(|(name, code)| *name == s || *code == s) {
            return Ok((*code).to_string());
        }
    }
    Ok(s)
}

/// Meta: lowercase, no spaces, no dash; US: first 5 digits (ZIP+4 → 5).
pub fn zip(value: &str, country: Option<&str>) -> Result<String, DropReason> {
    let z: String = if value.is_ascii() {
        // As below; ASCII lowercases to one ASCII char.
        value
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect()
    } else {
        value
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let looks_us = z.len() >= 5
        && z.len() <= 9
        && z.bytes().all(|b| b.is_ascii_digit())
        && (z.len() == 5 || z.len() == 9);
    let z = match country {
        Some("us") | None if looks_us => z[..5].to_string(),
        Some("us") => return Err(DropReason::InvalidZip),
        _ => z,
    };
    if z.len() < 2 || !z.chars().all(char::is_alphanumeric) {
        Err(DropReason::InvalidZip)
    } else {
        Ok(z)
    }
}

/// ISO 3166-1 (249 countries): alpha-2 then alpha-3, five letters each, in alpha-2 order.
const ALPHA2_ALPHA3: &str = "adandaeareafafgagatgaiaiaalalbamarmaoagoaqataarargasasmatautauausawabwaxalaazazebabihbbbrbbdbgdbebel\
bfbfabgbgrbhbhrbibdibjbenblblmbmbmubnbrnbobolbqbesbrbrabsbhsbtbtnbvbvtbwbwabyblrbzblzcacancccckcdcod\
cfcafcgcogchchecicivckcokclchlcmcmrcnchncocolcrcricucubcvcpvcwcuwcxcxrcycypczczededeudjdjidkdnkdmdma\
dodomdzdzaececueeestegegyeheshereriesespetethfifinfjfjifkflkfmfsmfofrofrfragagabgbgbrgdgrdgegeogfguf\
ggggyghghagigibglgrlgmgmbgngingpglpgqgnqgrgrcgssgsgtgtmgugumgwgnbgyguyhkhkghmhmdhnhndhrhrvhthtihuhun\
ididnieirlilisrimimninindioiotiqirqirirnisislititajejeyjmjamjojorjpjpnkekenkgkgzkhkhmkikirkmcomknkna\
kpprkkrkorkwkwtkycymkzkazlalaolblbnlclcalilielklkalrlbrlslsoltltululuxlvlvalylbymamarmcmcomdmdamemne\
mfmafmgmdgmhmhlmkmkdmlmlimmmmrmnmngmomacmpmnpmqmtqmrmrtmsmsrmtmltmumusmvmdvmwmwimxmexmymysmzmoznanam\
ncnclnenernfnfkngnganinicnlnldnonornpnplnrnrununiunznzlomomnpapanpeperpfpyfpgpngphphlpkpakplpolpmspm\
pnpcnprpripspseptprtpwplwpypryqaqatrereurorourssrbrurusrwrwasasausbslbscsycsdsdnseswesgsgpshshnsisvn\
sjsjmsksvkslslesmsmrsnsensosomsrsurssssdststpsvslvsxsxmsysyrszswztctcatdtcdtfatftgtgoththatjtjktktkl\
tltlstmtkmtntuntotontrturttttotvtuvtwtwntztzauaukrugugaumumiususauyuryuzuzbvavatvcvctvevenvgvgbvivir\
vnvnmvuvutwfwlfwswsmyeyemytmytzazafzmzmbzwzwe";

/// The alpha-2 code for an ISO alpha-2 or alpha-3 code (lowercase input).
fn iso_code(code: &str) -> Option<&'static str> {
    let table = ALPHA2_ALPHA3.as_bytes();
    let i = table.chunks(5).position(|c| match code.len() {
        2 => c.get(..2) == Some(code.as_bytes()),
        3 => c.get(2..) == Some(code.as_bytes()),
        _ => false,
    })?;
    ALPHA2_ALPHA3.get(i * 5..i * 5 + 2)
}

/// (alpha-2, calling code, common English names, written without spaces or punctuation) for the
/// countries shops sell to most; every other ISO country resolves by its alpha-2 or alpha-3 code.
const COUNTRIES: &[(&str, &str, &[&str])] = &[
    (
        "us",
        "1",
        &[
            "unitedstates",
            "unitedstatesofamerica",
            "america",
            "us",
            "usa",
        ],
    ),
    ("ca", "1", &["canada"]),
    (
        "gb",
        "44",
        &[
            "unitedkingdom",
            "uk",
            "greatbritain",
            "england",
            "scotland",
            "wales",
            "northernireland",
            "britain",
        ],
    ),
    ("ie", "353", &["ireland"]),
    ("au", "61", &["australia"]),
    ("nz", "64", &["newzealand"]),
    ("de", "49", &["germany", "deutschland"]),
    ("fr", "33", &["france"]),
    ("es", "34", &["spain", "españa", "espana"]),
    ("it", "39", &["italy", "italia"]),
    ("pt", "351", &["portugal"]),
    ("nl", "31", &["netherlands", "thenetherlands", "holland"]),
    ("be", "32", &["belgium"]),
    ("lu", "352", &["luxembourg"]),
    ("ch", "41", &["switzerland"]),
    ("at", "43", &["austria", "österreich"]),
    ("dk", "45", &["denmark"]),
    ("se", "46", &["sweden"]),
    ("no", "47", &["norway"]),
    ("fi", "358", &["finland"]),
    ("is", "354", &["iceland"]),
    ("pl", "48", &["poland", "polska"]),
    ("cz", "420", &["czechrepublic", "czechia"]),
    ("sk", "421", &["slovakia"]),
    ("hu", "36", &["hungary"]),
    ("ro", "40", &["romania"]),
    ("bg", "359", &["bulgaria"]),
    ("gr", "30", &["greece"]),
    ("hr", "385", &["croatia"]),
    ("si", "386", &["slovenia"]),
    ("ee", "372", &["estonia"]),
    ("lv", "371", &["latvia"]),
    ("lt", "370", &["lithuania"]),
    ("ua", "380", &["ukraine"]),
    ("tr", "90", &["turkey", "türkiye", "turkiye"]),
    ("il", "972", &["israel"]),
    ("ae", "971", &["unitedarabemirates", "uae"]),
    ("sa", "966", &["saudiarabia"]),
    ("bh", "973", &["bahrain"]),
    ("eg", "20", &["egypt"]),
    ("za", "27", &["southafrica"]),
    ("ng", "234", &["nigeria"]),
    ("ke", "254", &["kenya"]),
    ("ma", "212", &["morocco"]),
    ("in", "91", &["india"]),
    ("pk", "92", &["pakistan"]),
    ("cn", "86", &["china"]),
    ("hk", "852", &["hongkong"]),
    ("tw", "886", &["taiwan"]),
    ("jp", "81", &["japan"]),
    ("kr", "82", &["southkorea", "korea", "republicofkorea"]),
    ("sg", "65", &["singapore"]),
    ("my", "60", &["malaysia"]),
    ("th", "66", &["thailand"]),
    ("vn", "84", &["vietnam"]),
    ("id", "62", &["indonesia"]),
    ("ph", "63", &["philippines"]),
    ("mx", "52", &["mexico", "méxico"]),
    ("br", "55", &["brazil", "brasil"]),
    ("ar", "54", &["argentina"]),
    ("cl", "56", &["chile"]),
    ("co", "57", &["colombia"]),
    ("pe", "51", &["peru", "perú"]),
    ("ru", "7", &["russia", "russianfederation"]),
    ("ve", "58", &["venezuela"]),
    ("ec", "593", &["ecuador"]),
    ("uy", "598", &["uruguay"]),
    ("cr", "506", &["costarica"]),
    ("pa", "507", &["panama"]),
    ("do", "1", &["dominicanrepublic"]),
    ("pr", "1", &["puertorico"]),
    ("jm", "1", &["jamaica"]),
    ("qa", "974", &["qatar"]),
    ("kw", "965", &["kuwait"]),
    ("om", "968", &["oman"]),
    ("jo", "962", &["jordan"]),
    ("lb", "961", &["lebanon"]),
    ("gh", "233", &["ghana"]),
    ("cy", "357", &["cyprus"]),
    ("mt", "356", &["malta"]),
    ("rs", "381", &["serbia"]),
    ("bd", "880", &["bangladesh"]),
    ("lk", "94", &["srilanka"]),
    ("np", "977", &["nepal"]),
    ("kz", "7", &["kazakhstan"]),
    ("ge", "995", &["georgia"]),
    ("tn", "216", &["tunisia"]),
    ("dz", "213", &["algeria"]),
    ("by", "375", &["belarus"]),
    ("md", "373", &["moldova"]),
    ("ba", "387", &["bosniaandherzegovina", "bosnia"]),
    ("mk", "389", &["northmacedonia", "macedonia"]),
    ("al", "355", &["albania"]),
    ("me", "382", &["montenegro"]),
];

/// Meta: ISO 3166-1 alpha-2, lowercase. Accepts alpha-2, alpha-3 and common English names
/// (`United States`, `USA`, `U.K.`).
pub fn country_code(value: &str) -> Result<&'static str, DropReason> {
    let c = compact_lower(value);
    if let Some((a2, ..)) = COUNTRIES
        .iter()
        .find(|(a2, _, names)| *a2 == c || names.contains(&c.as_str()))
    {
        return Ok(a2);
    }
    iso_code(&c).ok_or(DropReason::InvalidCountry)
}

/// The calling code for an alpha-2 country, where we know it.
pub fn calling_code(alpha2: &str) -> Option<&'static str> {
    COUNTRIES
        .iter()
        .find(|(a2, ..)| *a2 == alpha2)
        .map(|(_, code, _)| *code)
}

/// Meta: `f` or `m`. Common words map; anything else is dropped rather than guessed.
pub fn gender(value: &str) -> Result<String, DropReason> {
    let g = compact_lower(value);
    match g.as_str() {
        "f" | "female" | "woman" | "w" | "girl" | "mrs" | "ms" | "miss" | "feminine" | "frau"
        | "femme" | "mujer" => Ok("f".into()),
        "m" | "male" | "man" | "boy" | "mr" | "masculine" | "herr" | "homme" | "hombre" => {
            Ok("m".into())
        }
        _ => Err(DropReason::UnknownGender),
    }
}

/// Meta: `YYYYMMDD`. Accepts `YYYY-MM-DD`, `YYYYMMDD`, `MM/DD/YYYY` (US order, as in Meta's
/// example `2/16/1997`), `DD/MM/YYYY` when the first part cannot be a month, and `DD.MM.YYYY`.
/// Impossible dates are dropped.
pub fn date_of_birth(value: &str) -> Result<String, DropReason> {
    let v = value.trim();
    let parts: Vec<&str> = v
        .split(['-', '/', '.', ' '])
        .filter(|p| !p.is_empty())
        .collect();
    let num = |s: &str| -> Option<u32> {
        if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    let (y, m, d) = match parts.as_slice() {
        [one] if one.len() == 8 && one.bytes().all(|b| b.is_ascii_digit()) => {
            (num(&one[..4]), num(&one[4..6]), num(&one[6..]))
        }
        [a, b, c] if a.len() == 4 => (num(a), num(b), num(c)),
        [a, b, c] if c.len() == 4 && v.contains('.') => (num(c), num(b), num(a)),
        [a, b, c] if c.len() == 4 => {
            let (a, b) = (num(a), num(b));
            match a {
                Some(first) if first > 12 => (num(c), b, a),
                _ => (num(c), a, b),
            }
        }
        _ => (None, None, None),
    };
    let (y, m, d) = match (y, m, d) {
        (Some(y), Some(m), Some(d)) => (y, m, d),
        _ => return Err(DropReason::InvalidDate),
    };
    if !(1900..=2100).contains(&y) || !is_calendar_date(y, m, d) {
        return Err(DropReason::InvalidDate);
    }
    Ok(format!("{y:04}{m:02}{d:02}"))
}

/// Whether the day exists (no 31 April, 29 February only in leap years), by the `time` crate
/// that also reads the webhooks' timestamps.
fn is_calendar_date(y: u32, m: u32, d: u32) -> bool {
    let (Ok(y), Ok(m), Ok(d)) = (i32::try_from(y), u8::try_from(m), u8::try_from(d)) else {
        return false;
    };
    time::Month::try_from(m).is_ok_and(|m| time::Date::from_calendar_date(y, m, d).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_codes_resolve_from_every_form() {
        for v in ["US", "usa", "United States", "u.s.a."] {
            assert_eq!(country_code(v), Ok("us"), "{v}");
        }
        assert_eq!(country_code("U.K."), Ok("gb"));
        assert_eq!(country_code("zw"), Ok("zw"));
        assert_eq!(country_code("xx"), Err(DropReason::InvalidCountry));
    }

    #[test]
    fn compact_lower_ascii_path_matches_the_unicode_path() {
        let all: String = (0u8..0x80).map(char::from).collect();
        for v in [all.as_str(), "U.S.A.", " New-York ", "a\u{b}b\u{c}c", ""] {
            let unicode: String = v
                .chars()
                .filter(|c| !is_punctuation_or_space(*c))
                .flat_map(char::to_lowercase)
                .collect();
            assert_eq!(compact_lower(v), unicode, "{v:?}");
            let city_unicode: String = v
                .chars()
                .filter(|c| !is_punctuation_or_space(*c) && !c.is_numeric())
                .flat_map(char::to_lowercase)
                .collect();
            assert_eq!(city(v).unwrap_or_default(), city_unicode, "{v:?}");
            let zip_unicode: String = v
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '-')
                .flat_map(char::to_lowercase)
                .collect();
            let expected = zip_unicode.len() >= 2 && zip_unicode.chars().all(char::is_alphanumeric);
            assert_eq!(
                zip(v, Some("de")).ok(),
                expected.then_some(zip_unicode),
                "{v:?}"
            );
        }
    }

    #[test]
    fn pre_hashed_values_are_never_hashed_again() {
        let h = sha256_hex("a@b.co");
        assert_eq!(hashed(Field::Em, &h.to_uppercase(), None), Ok(h.clone()));
        let pb = format!("{h}.AQQCAQIB");
        assert_eq!(hashed(Field::Em, &pb, None), Ok(pb.clone()));
    }
}
