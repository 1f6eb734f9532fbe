//! Retry timing of the API client: `Retry-After`, and the clock-skew estimate from the server's
//! `Date` header (the backoff itself is [`crate::backoff::Backoff`]).

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The longest `Retry-After` honoured; a larger value is cut to this.
pub(crate) const RETRY_AFTER_CAP: Duration = Duration::from_secs(300);

/// `Retry-After` in delay-seconds form (the HTTP-date form is not used by APIs of this kind and
/// is ignored), capped at [`RETRY_AFTER_CAP`].
pub(crate) fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    let secs: f64 = value?.trim().parse().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(
        secs.min(RETRY_AFTER_CAP.as_secs_f64()),
    ))
}

/// Describes how far the local clock is from the server's, from the HTTP `Date` header
/// (second precision), e.g. `" by about 312 s (local clock behind the server's Date header)"`.
/// Empty when the header is absent or unreadable.
pub(crate) fn describe_skew(date_header: Option<&str>, local_now: DateTime<Utc>) -> String {
    let Some(server) = date_header.and_then(|d| DateTime::parse_from_rfc2822(d.trim()).ok()) else {
        return String::new();
    };
    let diff = (server.to_utc() - local_now).num_seconds();
    match diff {
        d if d > 0 => format!(" by about {d} s (local clock behind the server's Date header)"),
        d if d < 0 => format!(
            " by about {} s (local clock ahead of the server's Date header)",
            d.unsigned_abs()
        ),
        _ => " by less than a second according to the server's Date header (the server may \
              measure the timestamp differently)"
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after(Some("2")), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(Some(" 0.5 ")),
            Some(Duration::from_millis(500))
        );
        assert_eq!(parse_retry_after(Some("99999")), Some(RETRY_AFTER_CAP));
        assert_eq!(parse_retry_after(Some("-1")), None);
        assert_eq!(parse_retry_after(Some("NaN")), None);
        assert_eq!(
            parse_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
        assert_eq!(parse_retry_after(None), None);
    }

    #[test]
    fn skew_from_date_header() {
        let now = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let s = describe_skew(Some("Mon, 01 Jan 2024 00:05:12 GMT"), now);
        assert!(s.contains("312 s") && s.contains("behind"), "{s}");
        let s = describe_skew(Some("Sun, 31 Dec 2023 23:59:00 GMT"), now);
        assert!(s.contains("60 s") && s.contains("ahead"), "{s}");
        assert_eq!(describe_skew(Some("garbage"), now), "");
        assert_eq!(describe_skew(None, now), "");
    }
}
