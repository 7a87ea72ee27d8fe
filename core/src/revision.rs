//! Ordering uploads of one key: which upload is newer.
//!
//! S3 puts a `sequencer` in every PUT and DELETE notification. AWS documents
//! how to compare two of them for the same key: the greater hexadecimal value
//! happened later, and "the sequencers can be of different lengths, so to
//! compare these values, first right pad the shorter value with zeros, and then
//! do a lexicographical comparison". A [`Revision`] stores the sequencer right
//! padded to a fixed width, so that DynamoDB's plain string comparison in a
//! condition expression orders revisions exactly as AWS says.
//!
//! Some sources carry no sequencer (S3 emulators, listings during a backfill).
//! Their revision falls back to the event time. Time revisions sort below any
//! sequencer revision: a real notification always outranks a listing.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Width, in hex digits, that sequencers are right padded to. Sequencers seen
/// in the wild are 16 to 18 digits; anything wider than this is rejected.
pub const SEQUENCER_WIDTH: usize = 40;

const SEQUENCER_TAG: &str = "2.";
const TIME_TAG: &str = "1.";

/// A totally ordered, string-comparable identity of one upload of a key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Revision(String);

/// Why a revision could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevisionError {
    /// The sequencer has characters other than hex digits, or is too long.
    #[error("sequencer {0:?} is not a hex string of at most 40 digits")]
    BadSequencer(String),
    /// The event time is not an RFC 3339 UTC timestamp.
    #[error("event time {0:?} is not an RFC 3339 UTC timestamp")]
    BadTime(String),
    /// A stored revision string that this code did not write.
    #[error("{0:?} is not a revision")]
    Unrecognised(String),
}

impl Revision {
    /// The revision of an upload that S3 gave `sequencer`.
    pub fn from_sequencer(sequencer: &str) -> Result<Self, RevisionError> {
        if sequencer.is_empty()
            || sequencer.len() > SEQUENCER_WIDTH
            || !sequencer.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(RevisionError::BadSequencer(sequencer.to_owned()));
        }
        let mut s = String::with_capacity(SEQUENCER_TAG.len() + SEQUENCER_WIDTH);
        s.push_str(SEQUENCER_TAG);
        s.push_str(&sequencer.to_ascii_uppercase());
        while s.len() < SEQUENCER_TAG.len() + SEQUENCER_WIDTH {
            s.push('0');
        }
        Ok(Self(s))
    }

    /// The revision of an upload known only by its time (RFC 3339, UTC).
    pub fn from_event_time(time: &str) -> Result<Self, RevisionError> {
        let digits =
            normalise_utc_timestamp(time).ok_or_else(|| RevisionError::BadTime(time.to_owned()))?;
        Ok(Self(format!("{TIME_TAG}{digits}")))
    }

    /// Prefers the sequencer, as AWS documents; falls back to the event time.
    pub fn from_event(sequencer: Option<&str>, event_time: &str) -> Result<Self, RevisionError> {
        match sequencer.filter(|s| !s.is_empty()) {
            Some(seq) => Self::from_sequencer(seq),
            None => Self::from_event_time(event_time),
        }
    }

    /// The stored, comparable form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Revision {
    type Error = RevisionError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let ok = if let Some(hex) = value.strip_prefix(SEQUENCER_TAG) {
            hex.len() == SEQUENCER_WIDTH
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        } else if let Some(digits) = value.strip_prefix(TIME_TAG) {
            digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())
        } else {
            false
        };
        if ok {
            Ok(Self(value))
        } else {
            Err(RevisionError::Unrecognised(value))
        }
    }
}

impl From<Revision> for String {
    fn from(value: Revision) -> Self {
        value.0
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.f+](Z|+00:00)` → `YYYYMMDDHHMMSS` + 6 fraction digits.
fn normalise_utc_timestamp(time: &str) -> Option<String> {
    let rest = time
        .strip_suffix('Z')
        .or_else(|| time.strip_suffix("+00:00"))?;
    let (whole, fraction) = match rest.split_once('.') {
        Some((w, f)) => (w, f),
        None => (rest, ""),
    };
    let b = whole.as_bytes();
    let shape_ok = b.len() == 19
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b't' || b[10] == b' ')
        && b[13] == b':'
        && b[16] == b':';
    if !shape_ok || !fraction.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut out: String = whole.chars().filter(char::is_ascii_digit).collect();
    if out.len() != 14 {
        return None;
    }
    let mut frac: String = fraction.chars().take(6).collect();
    while frac.len() < 6 {
        frac.push('0');
    }
    out.push_str(&frac);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn greater_sequencer_is_newer() {
        let older = Revision::from_sequencer("0062E99A88DC407460").unwrap();
        let newer = Revision::from_sequencer("0062E99A88DC407470").unwrap();
        assert!(older < newer);
    }

    #[test]
    fn shorter_sequencer_is_right_padded_before_comparing() {
        // "0055AED6DCD9028" right padded is "0055AED6DCD90280" > "0055AED6DCD9027F".
        let short = Revision::from_sequencer("0055AED6DCD9028").unwrap();
        let long = Revision::from_sequencer("0055AED6DCD9027F").unwrap();
        assert!(short > long);
    }

    #[test]
    fn sequencer_case_does_not_matter() {
        assert_eq!(
            Revision::from_sequencer("00ab").unwrap(),
            Revision::from_sequencer("00AB").unwrap()
        );
    }

    #[test]
    fn rejects_non_hex_sequencers() {
        assert!(Revision::from_sequencer("xyz").is_err());
        assert!(Revision::from_sequencer("").is_err());
        assert!(Revision::from_sequencer(&"A".repeat(41)).is_err());
    }

    #[test]
    fn event_time_orders_when_there_is_no_sequencer() {
        let a = Revision::from_event("".into(), "2026-11-23T00:40:00.123Z").unwrap();
        let b = Revision::from_event(None, "2026-11-23T00:40:00.124000Z").unwrap();
        let c = Revision::from_event(None, "2026-11-23T00:40:01Z").unwrap();
        assert!(a < b && b < c);
    }

    #[test]
    fn any_sequencer_revision_outranks_a_time_revision() {
        let time = Revision::from_event_time("2099-12-31T23:59:59.999Z").unwrap();
        let seq = Revision::from_sequencer("00").unwrap();
        assert!(seq > time);
    }

    #[test]
    fn rejects_times_that_are_not_utc_rfc3339() {
        assert!(Revision::from_event_time("2026-11-23T00:40:00+02:00").is_err());
        assert!(Revision::from_event_time("yesterday").is_err());
    }

    #[test]
    fn revision_round_trips_through_its_string_form() {
        for r in [
            Revision::from_sequencer("0062E99A88DC407460").unwrap(),
            Revision::from_event_time("2026-11-23T00:40:00.5Z").unwrap(),
        ] {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<Revision>(&json).unwrap(), r);
        }
        assert!(serde_json::from_str::<Revision>("\"3.nonsense\"").is_err());
    }

    proptest! {
        #[test]
        fn revision_order_matches_aws_documented_sequencer_order(
            a in "[0-9A-F]{1,40}", b in "[0-9A-F]{1,40}"
        ) {
            let width = a.len().max(b.len());
            let pad = |s: &str| format!("{s:0<width$}");
            let documented = pad(&a).cmp(&pad(&b));
            let ours = Revision::from_sequencer(&a).unwrap().cmp(&Revision::from_sequencer(&b).unwrap());
            prop_assert_eq!(ours, documented);
        }
    }
}
