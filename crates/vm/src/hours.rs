//! Opening hours: is a calendar open at a given wall-clock instant?

use ivr_bytecode::Hours;
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Whether `hours` is open at `unix_ms`. `None` if the time zone is unknown.
pub fn is_open(hours: &Hours, unix_ms: i64) -> Option<bool> {
    let tz = TimeZone::get(&hours.zone).ok()?;
    let local = Timestamp::from_millisecond(unix_ms).ok()?.to_zoned(tz);
    let ymd = local.year() as u32 * 10_000 + local.month() as u32 * 100 + local.day() as u32;
    let ranges = if hours.holidays.binary_search(&ymd).is_ok() {
        return Some(false);
    } else if hours.makeup_days.binary_search(&ymd).is_ok() {
        &hours.weekly[0]
    } else {
        &hours.weekly[local.weekday().to_monday_zero_offset() as usize]
    };
    let minute = local.hour() as u16 * 60 + local.minute() as u16;
    Some(ranges.iter().any(|&(a, b)| a <= minute && minute < b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sse() -> Hours {
        let weekday = vec![(9 * 60, 16 * 60 + 30)];
        Hours {
            name: "agents".into(),
            zone: "Asia/Shanghai".into(),
            weekly: [weekday.clone(), weekday.clone(), weekday.clone(), weekday.clone(), weekday, vec![], vec![]],
            holidays: vec![20261001, 20261002],
            makeup_days: vec![20260927],
        }
    }

    fn at(s: &str) -> i64 {
        s.parse::<jiff::Zoned>().unwrap().timestamp().as_millisecond()
    }

    #[test]
    fn weekday_hours_in_beijing_time() {
        let h = sse();
        // Monday 2026-11-23 09:00 Beijing is 01:00 UTC.
        assert_eq!(is_open(&h, at("2026-11-23T09:00:00+08:00[Asia/Shanghai]")), Some(true));
        assert_eq!(is_open(&h, at("2026-11-23T08:59:59+08:00[Asia/Shanghai]")), Some(false));
        assert_eq!(is_open(&h, at("2026-11-23T16:29:00+08:00[Asia/Shanghai]")), Some(true));
        assert_eq!(is_open(&h, at("2026-11-23T16:30:00+08:00[Asia/Shanghai]")), Some(false));
        // Saturday closed.
        assert_eq!(is_open(&h, at("2026-11-21T10:00:00+08:00[Asia/Shanghai]")), Some(false));
    }

    #[test]
    fn holidays_close_and_makeup_days_open() {
        let h = sse();
        // Thursday 2026-10-01, National Day: closed.
        assert_eq!(is_open(&h, at("2026-10-01T10:00:00+08:00[Asia/Shanghai]")), Some(false));
        // Sunday 2026-09-27, a make-up working day: open with weekday hours.
        assert_eq!(is_open(&h, at("2026-09-27T10:00:00+08:00[Asia/Shanghai]")), Some(true));
    }

    #[test]
    fn unknown_zone_is_reported() {
        let mut h = sse();
        h.zone = "Mars/Olympus".into();
        assert_eq!(is_open(&h, 0), None);
    }
}
