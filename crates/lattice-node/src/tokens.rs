//! HTTP access tokens (docs/design.md, Control plane and HTTP API), kept in the root store under
//! `/tokens/{id}/` (spelled in [`crate::control`]) so every node of the mesh accepts them.
//!
//! A client presents `{id}:{secret}`. The secret is shown once, at creation; only its hash (hex
//! sha256) is stored, and it is compared in constant time. This module is pure (what a token
//! means: permissions, checks, generation, `--expires`); [`crate::Node`] reads and writes it.

use std::time::Duration;

use jiff::{Span, SpanRelativeTo};
use lattice_core::StoreId;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::NodeError;
use crate::time::parse_rfc3339;

/// What a token lets its holder do in its store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permissions {
    /// `r`: get, list, watch.
    Read,
    /// `w`: put, delete, batch.
    Write,
    /// `rw`: both.
    ReadWrite,
}

impl Permissions {
    /// The stored spelling: `r`, `w` or `rw`.
    pub fn as_str(self) -> &'static str {
        match self {
            Permissions::Read => "r",
            Permissions::Write => "w",
            Permissions::ReadWrite => "rw",
        }
    }

    /// True for `r` and `rw`.
    pub fn can_read(self) -> bool {
        matches!(self, Permissions::Read | Permissions::ReadWrite)
    }

    /// True for `w` and `rw`.
    pub fn can_write(self) -> bool {
        matches!(self, Permissions::Write | Permissions::ReadWrite)
    }
}

impl std::str::FromStr for Permissions {
    type Err = NodeError;
    fn from_str(s: &str) -> Result<Self, NodeError> {
        match s {
            "r" => Ok(Permissions::Read),
            "w" => Ok(Permissions::Write),
            "rw" | "wr" => Ok(Permissions::ReadWrite),
            other => Err(NodeError::Invalid(format!("permissions must be r, w or rw, not {other:?}"))),
        }
    }
}

/// A token as the root store describes it (never its secret).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenRecord {
    /// 16 lowercase hex digits, the `{id}` of its keys.
    pub id: String,
    /// The store it grants access to; `None` if absent or not a uuid.
    pub store_id: Option<StoreId>,
    /// Hex sha256 of the secret.
    pub secret_hash: String,
    /// What it allows; `None` if absent or not `r|w|rw` (then it allows nothing).
    pub permissions: Option<Permissions>,
    /// A label for people; may be empty.
    pub name: String,
    /// RFC 3339 creation time.
    pub created_at: Option<String>,
    /// RFC 3339 expiry; `None`: never.
    pub expires_at: Option<String>,
    /// RFC 3339 revocation time; `None`: not revoked.
    pub revoked_at: Option<String>,
    /// Its own HTTP request rate, per second (`create-token --rate N/s`, stored as `N/s`);
    /// `None`: the server's default (`serve --http-rate`). A stored rate that does not read as
    /// one limits the token to 1/s: a malformed record never grants more on doubt.
    pub rate: Option<u32>,
}

/// Why a presented token is refused. Every variant is a 401 to an HTTP client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejected {
    /// Not `ID:SECRET`.
    #[error("expected `Authorization: Bearer ID:SECRET`")]
    Malformed,
    /// No token has that id.
    #[error("unknown token")]
    Unknown,
    /// The secret does not hash to the stored hash.
    #[error("wrong token secret")]
    WrongSecret,
    /// `revoked_at` is set.
    #[error("token revoked")]
    Revoked,
    /// `expires_at` has passed (or does not read as a time).
    #[error("token expired")]
    Expired,
}

impl TokenRecord {
    /// Checks a presented secret and the token's validity at `now_ms`.
    pub fn check(&self, secret: &str, now_ms: u64) -> Result<(), TokenRejected> {
        let presented = secret_hash(secret);
        // Both are 64 hex digits when the record is well formed; a malformed record never matches.
        if presented.len() != self.secret_hash.len()
            || !bool::from(presented.as_bytes().ct_eq(self.secret_hash.as_bytes()))
        {
            return Err(TokenRejected::WrongSecret);
        }
        if self.revoked_at.is_some() {
            return Err(TokenRejected::Revoked);
        }
        if let Some(expires) = &self.expires_at {
            // An expiry that does not parse is treated as past: never grant on doubt.
            if parse_rfc3339(expires).is_none_or(|at| now_ms >= at) {
                return Err(TokenRejected::Expired);
            }
        }
        Ok(())
    }

    /// `active`, `revoked` or `expired` at `now_ms`.
    pub fn state(&self, now_ms: u64) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at.as_deref().is_some_and(|e| parse_rfc3339(e).is_none_or(|at| now_ms >= at)) {
            "expired"
        } else {
            "active"
        }
    }
}

/// Hex sha256 of a secret, as stored in `/tokens/{id}/secret_hash`.
pub(crate) fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Splits a presented `ID:SECRET`.
pub fn split_token(token: &str) -> Result<(&str, &str), TokenRejected> {
    match token.split_once(':') {
        Some((id, secret)) if is_token_id(id) && !secret.is_empty() => Ok((id, secret)),
        _ => Err(TokenRejected::Malformed),
    }
}

/// Token ids are 16 lowercase hex digits.
pub(crate) fn is_token_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A fresh id (16 hex digits) and secret (64 hex digits, 244 random bits), from the OS's
/// random source (uuid v4).
pub(crate) fn generate() -> (String, String) {
    let id = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
    let secret = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    (id, secret)
}

/// A token's lifetime (`--expires`): `30d`, `12h`, `45m`, `90s`, `2w`, or any positive duration
/// in jiff's friendly format (`1h30m`, `2 weeks`); days and weeks are 24 hours and 7 days, and
/// calendar units (months, years) are refused, since their length depends on the date.
pub fn parse_duration(text: &str) -> Result<Duration, NodeError> {
    let bad = || NodeError::Invalid(format!("expected a duration like 30d, 12h, 45m, 90s or 2w, not {text:?}"));
    let span: Span = text.parse().map_err(|_| bad())?;
    let duration = span.to_duration(SpanRelativeTo::days_are_24_hours()).map_err(|_| bad())?;
    let duration = Duration::try_from(duration).map_err(|_| bad())?;
    if duration.is_zero() {
        return Err(NodeError::Invalid(format!("a token cannot expire after {text}")));
    }
    Ok(duration)
}

/// The largest rate `parse_rate` accepts, per second.
pub const MAX_RATE: u32 = 1_000_000;

/// A request rate as `--rate` and `--http-rate` take it: `N/s`, N a whole number from 1 to
/// [`MAX_RATE`] (`100/s`); nothing else (no spaces, units or fractions).
pub fn parse_rate(text: &str) -> Result<u32, NodeError> {
    let bad =
        || NodeError::Invalid(format!("expected a rate like 100/s (1 to {MAX_RATE} requests a second), not {text:?}"));
    let digits = text.strip_suffix("/s").ok_or_else(bad)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match digits.parse::<u32>() {
        Ok(n) if (1..=MAX_RATE).contains(&n) => Ok(n),
        _ => Err(bad()),
    }
}

/// A rate as stored and shown: `N/s`.
pub fn format_rate(per_second: u32) -> String {
    format!("{per_second}/s")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::rfc3339;

    #[test]
    fn rates_are_whole_requests_a_second() {
        assert_eq!(parse_rate("100/s").ok(), Some(100));
        assert_eq!(parse_rate("1/s").ok(), Some(1));
        assert_eq!(parse_rate(&format_rate(MAX_RATE)).ok(), Some(MAX_RATE));
        for bad in
            ["", "/s", "0/s", "100", "100/m", " 5/s", "5/s ", "+5/s", "-5/s", "1.5/s", "1000001/s", "99999999999/s"]
        {
            match parse_rate(bad) {
                Err(NodeError::Invalid(message)) => {
                    assert!(message.starts_with("expected a rate like 100/s"), "{bad:?}")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    fn record(secret: &str) -> TokenRecord {
        TokenRecord {
            id: "0123456789abcdef".into(),
            store_id: Some(StoreId::new_random()),
            secret_hash: secret_hash(secret),
            permissions: Some(Permissions::Read),
            ..Default::default()
        }
    }

    #[test]
    fn a_secret_is_checked_against_its_hash_and_the_token_state() {
        let mut r = record("s3cret");
        assert_eq!(r.check("s3cret", 1_000), Ok(()));
        assert_eq!(r.check("s3creT", 1_000), Err(TokenRejected::WrongSecret));
        assert_eq!(r.check("", 1_000), Err(TokenRejected::WrongSecret));
        r.expires_at = Some(rfc3339(5_000));
        assert_eq!(r.check("s3cret", 4_999), Ok(()));
        assert_eq!(r.check("s3cret", 5_000), Err(TokenRejected::Expired));
        assert_eq!(r.state(5_000), "expired");
        r.expires_at = Some("not a time".into());
        assert_eq!(r.check("s3cret", 0), Err(TokenRejected::Expired), "an unreadable expiry grants nothing");
        r.expires_at = None;
        r.revoked_at = Some(rfc3339(2_000));
        assert_eq!(r.check("s3cret", 1_000), Err(TokenRejected::Revoked));
        assert_eq!(r.check("wrong", 1_000), Err(TokenRejected::WrongSecret), "the secret is checked first");
        let mut broken = record("x");
        broken.secret_hash = String::new();
        assert_eq!(broken.check("", 0), Err(TokenRejected::WrongSecret));
    }

    #[test]
    fn tokens_parse_and_generate() {
        let (id, secret) = generate();
        assert!(is_token_id(&id));
        assert_eq!(secret.len(), 64);
        let presented = format!("{id}:{secret}");
        assert_eq!(split_token(&presented), Ok((id.as_str(), secret.as_str())));
        for bad in ["", "abc", "0123456789abcdef", "0123456789abcdef:", "0123456789ABCDEF:x", "012:x"] {
            assert_eq!(split_token(bad), Err(TokenRejected::Malformed), "{bad:?}");
        }
        assert_eq!("rw".parse::<Permissions>().unwrap(), Permissions::ReadWrite);
        assert!("x".parse::<Permissions>().is_err());
        assert_eq!(parse_duration("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        for bad in ["", "d", "30", "30y", "0d", "-1d", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn expiries_take_every_unit_the_cli_documents_and_refuse_zero_and_calendar_units() {
        let secs = |text| parse_duration(text).map(|d| d.as_secs()).ok();
        assert_eq!(secs("2w"), Some(14 * 86_400));
        assert_eq!(secs("12h"), Some(12 * 3600));
        assert_eq!(secs("45m"), Some(45 * 60));
        assert_eq!(secs("1h30m"), Some(5400));
        assert_eq!(secs("1mo"), None, "a month has no fixed length");
        match parse_duration("0h") {
            Err(NodeError::Invalid(message)) => assert_eq!(message, "a token cannot expire after 0h"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
