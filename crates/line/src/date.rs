//! Dates for what mail software writes: RFC 5322 §3.3 for headers
//! (Received, Date in bounces, Arrival-Date in delivery reports) and the
//! asctime form of mbox `From ` separator lines, and RFC 3339 for JSON
//! reports. UTC, from Unix time.

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A Unix time broken down: weekday and month names, day, year, and the
/// time of day.
struct Civil {
    weekday: &'static str,
    month: &'static str,
    day: i64,
    year: i64,
    hour: u64,
    minute: u64,
    second: u64,
}

fn civil(unix: u64) -> Civil {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    Civil {
        weekday: DAYS[(days % 7) as usize],
        month: MONTHS[(month - 1) as usize],
        day,
        year: yoe + era * 400 + i64::from(month <= 2),
        hour: secs / 3600,
        minute: secs % 3600 / 60,
        second: secs % 60,
    }
}

/// `Thu, 26 Nov 2026 19:46:45 +0000` for a Unix time.
pub fn rfc5322(unix: u64) -> String {
    let c = civil(unix);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        c.weekday, c.day, c.month, c.year, c.hour, c.minute, c.second
    )
}

/// The year and month (1 to 12) of a Unix time, in UTC.
pub fn year_month(unix: u64) -> (i64, u32) {
    let c = civil(unix);
    let month = MONTHS.iter().position(|m| *m == c.month).unwrap_or(0) as u32 + 1;
    (c.year, month)
}

/// `2026-11-26T19:46:45Z` (RFC 3339, UTC), as JSON reports write dates.
pub fn rfc3339(unix: u64) -> String {
    let c = civil(unix);
    let (_, month) = year_month(unix);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, month, c.day, c.hour, c.minute, c.second
    )
}

/// `Thu Nov 26 19:46:45 2026`, the date of an mbox `From ` line.
pub fn asctime(unix: u64) -> String {
    let c = civil(unix);
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        c.weekday, c.month, c.day, c.hour, c.minute, c.second, c.year
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc5322(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322(1_795_722_405), "Thu, 26 Nov 2026 19:46:45 +0000");
        assert_eq!(rfc5322(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(year_month(1_795_722_405), (2026, 11));
        assert_eq!(year_month(0), (1970, 1));
        assert_eq!(rfc3339(1_795_722_405), "2026-11-26T19:46:45Z");
        assert_eq!(rfc3339(951_868_799), "2000-02-29T23:59:59Z");
        assert_eq!(year_month(1_798_761_599), (2026, 12));
    }

    #[test]
    fn asctime_dates() {
        assert_eq!(asctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(asctime(1_795_745_845), "Fri Nov 27 02:17:25 2026");
        assert_eq!(asctime(951_782_400), "Tue Feb 29 00:00:00 2000");
    }
}
