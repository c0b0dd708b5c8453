//! The one timestamp format on the wire, as a serde `with` module.
//!
//! Timestamps are written in RFC 3339 with exactly six fractional digits
//! and a `+00:00` offset, e.g. `2024-01-01T12:00:00.123456+00:00`. Python's
//! `datetime.fromisoformat` (3.7 and later) reads that form, and the seed's
//! clients rely on it. Anything finer than a microsecond is truncated.
//!
//! Reading is lenient: any RFC 3339 timestamp is accepted and converted to
//! UTC, and so is a timestamp without an offset (`2024-01-01T12:00:00`, what
//! the seed wrote for a naive `datetime`), which is taken to be UTC.
//!
//! Use it as `#[serde(with = "chat_protocol::timestamp")]` on a
//! `DateTime<Utc>` field.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDateTime, Timelike, Utc};
use serde::de::{self, Unexpected, Visitor};
use serde::{Deserializer, Serializer};

/// The `strftime` pattern of the wire format. The offset is a literal
/// because every timestamp is converted to UTC before it is written.
const WIRE_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6f+00:00";

/// Naive forms accepted on input: ISO 8601 with a `T`, and the form
/// Python's `str(datetime)` prints, with a space.
const NAIVE_FORMATS: [&str; 2] = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"];

/// The length of a timestamp on the wire, for years 0 to 9999.
const WIRE_LEN: usize = "2024-01-01T12:00:00.123456+00:00".len();

/// Formats a timestamp the way it appears on the wire.
pub fn format(value: &DateTime<Utc>) -> String {
    match wire_text(value) {
        // All ASCII: the conversion never replaces anything.
        Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        None => value.format(WIRE_FORMAT).to_string(),
    }
}

/// The wire form written digit by digit: a history page carries a
/// timestamp per message, and chrono's pattern interpreter took about a
/// tenth of the server's time per page. `None` for what only the pattern
/// writes correctly: years outside 0 to 9999 and leap seconds.
fn wire_text(value: &DateTime<Utc>) -> Option<[u8; WIRE_LEN]> {
    let year = u32::try_from(value.year())
        .ok()
        .filter(|year| *year <= 9999)?;
    let nanos = value.nanosecond();
    if nanos >= 1_000_000_000 {
        return None;
    }
    let mut text = *b"0000-00-00T00:00:00.000000+00:00";
    put_digits(&mut text[0..4], year);
    put_digits(&mut text[5..7], value.month());
    put_digits(&mut text[8..10], value.day());
    put_digits(&mut text[11..13], value.hour());
    put_digits(&mut text[14..16], value.minute());
    put_digits(&mut text[17..19], value.second());
    put_digits(&mut text[20..26], nanos / 1_000);
    Some(text)
}

/// Writes `value` in decimal into `slots`, zero-padded on the left.
fn put_digits(slots: &mut [u8], mut value: u32) {
    for slot in slots.iter_mut().rev() {
        // `value % 10` is below 10, so the cast cannot truncate.
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Parses any RFC 3339 timestamp, or a timestamp without an offset taken to
/// be UTC.
pub fn parse(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    let rfc3339_error = match DateTime::parse_from_rfc3339(text) {
        Ok(value) => return Ok(value.with_timezone(&Utc)),
        Err(error) => error,
    };
    NAIVE_FORMATS
        .iter()
        .find_map(|pattern| NaiveDateTime::parse_from_str(text, pattern).ok())
        .map(|naive| naive.and_utc())
        .ok_or(rfc3339_error)
}

/// Writes `value` in the wire format.
pub fn serialize<S: Serializer>(value: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    match wire_text(value) {
        Some(bytes) => serializer.serialize_str(&String::from_utf8_lossy(&bytes)),
        None => serializer.collect_str(&value.format(WIRE_FORMAT)),
    }
}

/// Reads a timestamp with [`parse`].
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    deserializer.deserialize_str(TimestampVisitor)
}

/// The same format for an optional timestamp: use it as
/// `#[serde(default, skip_serializing_if = "Option::is_none", with =
/// "chat_protocol::timestamp::option")]`; `null` reads as `None`.
pub mod option {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `Some` in the wire format, `None` as `null`.
    pub fn serialize<S: Serializer>(
        value: &Option<DateTime<Utc>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => super::serialize(value, serializer),
            None => serializer.serialize_none(),
        }
    }

    /// Reads `null` or a timestamp with [`super::parse`].
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| {
                super::parse(&text).map_err(|_| {
                    serde::de::Error::invalid_value(
                        serde::de::Unexpected::Str(&text),
                        &"an RFC 3339 timestamp",
                    )
                })
            })
            .transpose()
    }
}

struct TimestampVisitor;

impl Visitor<'_> for TimestampVisitor {
    type Value = DateTime<Utc>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an RFC 3339 timestamp")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        parse(value).map_err(|_| E::invalid_value(Unexpected::Str(value), &self))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Stamped {
        #[serde(with = "super")]
        at: DateTime<Utc>,
    }

    fn noon_and_some_micros() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 12, 0, 0)
            .single()
            .expect("a valid date")
            + Duration::microseconds(123_456)
    }

    fn read(json: &str) -> Result<DateTime<Utc>, serde_json::Error> {
        serde_json::from_str::<Stamped>(json).map(|stamped| stamped.at)
    }

    #[test]
    fn timestamps_are_written_with_six_fractional_digits_and_a_utc_offset() {
        let json = serde_json::to_string(&Stamped {
            at: noon_and_some_micros(),
        })
        .expect("serializes");
        assert_eq!(json, r#"{"at":"2024-01-01T12:00:00.123456+00:00"}"#);
    }

    #[test]
    fn whole_seconds_still_get_six_zero_digits() {
        let whole = noon_and_some_micros() - Duration::microseconds(123_456);
        assert_eq!(format(&whole), "2024-01-01T12:00:00.000000+00:00");
    }

    #[test]
    fn nanoseconds_are_truncated_to_microseconds() {
        let precise = noon_and_some_micros() + Duration::nanoseconds(789);
        assert_eq!(format(&precise), "2024-01-01T12:00:00.123456+00:00");
    }

    #[test]
    fn written_timestamps_read_back_unchanged() {
        let at = noon_and_some_micros();
        assert_eq!(
            read(&format!(r#"{{"at":"{}"}}"#, format(&at))).expect("parses"),
            at
        );
    }

    #[test]
    fn a_naive_timestamp_is_read_as_utc() {
        let expected = noon_and_some_micros() - Duration::microseconds(123_456);
        assert_eq!(
            read(r#"{"at":"2024-01-01T12:00:00"}"#).expect("parses"),
            expected
        );
        assert_eq!(
            read(r#"{"at":"2024-01-01T12:00:00.123456"}"#).expect("parses"),
            noon_and_some_micros()
        );
        assert_eq!(
            read(r#"{"at":"2024-01-01 12:00:00"}"#).expect("parses"),
            expected
        );
    }

    #[test]
    fn other_offsets_are_converted_to_utc() {
        assert_eq!(
            read(r#"{"at":"2024-01-01T14:00:00.123456+02:00"}"#).expect("parses"),
            noon_and_some_micros()
        );
        assert_eq!(
            read(r#"{"at":"2024-01-01T12:00:00.123456Z"}"#).expect("parses"),
            noon_and_some_micros()
        );
    }

    #[test]
    fn the_digit_writer_agrees_with_the_pattern_across_the_calendar() {
        let pattern = |at: &DateTime<Utc>| at.format(WIRE_FORMAT).to_string();
        let start = Utc
            .with_ymd_and_hms(0, 1, 1, 0, 0, 0)
            .single()
            .expect("a valid date");
        let end = Utc
            .with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
            .single()
            .expect("a valid date")
            + Duration::nanoseconds(999_999_999);
        let span = (end - start).num_seconds();
        // A fixed spread of instants over every year, with ragged
        // fractions, plus both ends of the range.
        let mut instants = vec![start, end];
        for step in 0..20_000_i64 {
            let seconds = step * (span / 20_000) + step * 7_919 % 86_400;
            let nanos = step * 104_729 % 1_000_000_000;
            instants.push(start + Duration::seconds(seconds) + Duration::nanoseconds(nanos));
        }
        for at in instants {
            assert_eq!(format(&at), pattern(&at), "{at:?}");
            let json = serde_json::to_string(&Stamped { at }).expect("serializes");
            assert_eq!(json, format!(r#"{{"at":"{}"}}"#, pattern(&at)));
        }
    }

    #[test]
    fn years_past_four_digits_still_follow_the_pattern() {
        let far = Utc
            .with_ymd_and_hms(12_345, 6, 7, 8, 9, 10)
            .single()
            .expect("a valid date");
        assert_eq!(format(&far), far.format(WIRE_FORMAT).to_string());
        assert!(format(&far).starts_with("+12345-06-07T08:09:10.000000"));
    }

    #[test]
    fn text_that_is_not_a_timestamp_is_rejected() {
        for junk in [
            r#"{"at":"yesterday"}"#,
            r#"{"at":"2024-13-01T00:00:00"}"#,
            r#"{"at":17}"#,
        ] {
            assert!(read(junk).is_err(), "{junk}");
        }
    }
}
