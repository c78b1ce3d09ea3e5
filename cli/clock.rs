//! The few time formats thoth writes and reads: RFC 3339 UTC timestamps (audit records,
//! events, state, hold expiries) and `YYYY-MM-DD` UTC dates (audit folders, daily
//! counters). One place, so every file and message agrees on them.

use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};

/// `t` as RFC 3339 (empty if it cannot be formatted, which UTC times always can).
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The current UTC time as RFC 3339.
pub fn now_rfc3339() -> String {
    rfc3339(OffsetDateTime::now_utc())
}

/// An RFC 3339 time, or `None`.
pub fn parse_rfc3339(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// `YYYY-MM-DD`.
pub fn date(day: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

/// Today's UTC date, `YYYY-MM-DD`.
pub fn today_utc() -> String {
    date(OffsetDateTime::now_utc().date())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = parse_rfc3339("2026-11-26T14:05:09Z").expect("parses");
        assert_eq!(rfc3339(t), "2026-11-26T14:05:09Z");
        assert_eq!(date(t.date()), "2026-11-26");
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
