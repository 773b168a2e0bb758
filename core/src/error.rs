//! The one error type of capi-core: why an input was refused.

use std::fmt;

/// Why a beacon or webhook body was refused. Each maps to a 4xx at the edge; retrying the
/// same input never helps.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The body is not JSON (or not UTF-8).
    MalformedJson(String),
    /// The body is JSON but not an object.
    NotAnObject,
    /// A required field is absent or empty.
    MissingField(&'static str),
    /// A field is present but unusable; the message says why (never echoes customer data).
    InvalidField {
        field: &'static str,
        why: &'static str,
    },
}

impl Error {
    /// Stable machine-readable code for the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            Error::MalformedJson(_) => "malformed_json",
            Error::NotAnObject => "not_an_object",
            Error::MissingField(_) => "missing_field",
            Error::InvalidField { .. } => "invalid_field",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::MalformedJson(why) => write!(f, "body is not valid JSON: {why}"),
            Error::NotAnObject => f.write_str("body must be a JSON object"),
            Error::MissingField(field) => write!(f, "`{field}` is required"),
            Error::InvalidField { field, why } => write!(f, "`{field}` {why}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
