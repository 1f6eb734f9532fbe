//! How `since` / `before` are written on the wire: `yyyy-MM-dd HH:mm:ss`, second precision, no
//! zone, in the API's configured IANA time zone (default `Asia/Shanghai`, UTC+8).
//!
//! The window is half-open: `since` is inclusive, `before` exclusive. [`Window`] holds whole UTC
//! seconds, so the conversion is exact. In a zone with daylight saving time a local time can be
//! ambiguous around the fall-back hour; Tanma is a mainland-China service and its default zone has
//! no DST, so that case is documented rather than handled.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::plan::Window;
use crate::upstream::wire::ListRequest;

/// The wire format of `since` / `before` (chrono syntax for `yyyy-MM-dd HH:mm:ss`).
pub const API_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Formats `t` in `tz` as `yyyy-MM-dd HH:mm:ss`.
pub fn format_api_time(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format(API_TIME_FORMAT).to_string()
}

/// The request for page `page_no` (1-based) of `window`.
pub fn list_request(window: &Window, tz: Tz, page_size: u32, page_no: u32) -> ListRequest {
    ListRequest {
        since: format_api_time(window.since, tz),
        before: format_api_time(window.before, tz),
        page_size,
        page_no,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn shanghai_vector() {
        assert_eq!(
            format_api_time(utc("2024-01-01T00:00:00Z"), chrono_tz::Asia::Shanghai),
            "2024-01-01 08:00:00"
        );
    }

    #[test]
    fn dst_free_zones_across_the_year() {
        // Shanghai and Tokyo have no DST: the same offset in January and July.
        for (tz, hours) in [
            (chrono_tz::Asia::Shanghai, 8),
            (chrono_tz::Asia::Tokyo, 9),
            (chrono_tz::UTC, 0),
        ] {
            for month in [1, 7] {
                let t = Utc.with_ymd_and_hms(2024, month, 15, 20, 30, 45).unwrap();
                let expect = (t + chrono::Duration::hours(hours))
                    .format(API_TIME_FORMAT)
                    .to_string();
                assert_eq!(format_api_time(t, tz), expect, "{tz} month {month}");
            }
        }
    }

    #[test]
    fn day_rollover_and_request_fields() {
        let w = Window::new(utc("2023-12-31T16:00:00Z"), utc("2023-12-31T17:00:01Z"));
        let r = list_request(&w, chrono_tz::Asia::Shanghai, 100, 3);
        assert_eq!(r.since, "2024-01-01 00:00:00");
        assert_eq!(r.before, "2024-01-01 01:00:01");
        assert_eq!((r.page_size, r.page_no), (100, 3));
        let body = serde_json::to_string(&r).unwrap();
        assert_eq!(
            body,
            r#"{"since":"2024-01-01 00:00:00","before":"2024-01-01 01:00:01","pageSize":100,"pageNo":3}"#
        );
    }
}
