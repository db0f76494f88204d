//! Maintenance windows: `Mon-Fri 02:00-05:00 UTC`.
//!
//! Devices are offered updates only while a window is open. A window that
//! ends before it starts (`22:00-02:00`) runs past midnight and belongs to
//! the day it starts on.

use std::fmt;

use time::{Duration, OffsetDateTime, UtcOffset, Weekday};

use crate::PolicyError;

const SETTING: &str = "--window";
const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Bit `n` set: the window opens on day `n` (Monday = 0).
    days: u8,
    /// Minutes after midnight, local to `offset`.
    start: u16,
    /// Length in minutes, 1 to 1440.
    length: u16,
    offset: UtcOffset,
}

impl Window {
    /// Parses `DAYS HH:MM-HH:MM [ZONE]`: days as `Mon-Fri`, `Sat,Sun`,
    /// `Mon,Wed-Fri` or `daily`; zone `UTC` (the default) or `+02:00`.
    pub fn parse(raw: &str) -> Result<Window, PolicyError> {
        let mut parts = raw.split_whitespace();
        let (Some(days), Some(times)) = (parts.next(), parts.next()) else {
            return Err(PolicyError::new(
                SETTING,
                format!("{raw:?} is not a window like \"Mon-Fri 02:00-05:00 UTC\""),
            ));
        };
        let offset = match parts.next() {
            None => UtcOffset::UTC,
            Some(zone) => parse_zone(zone)?,
        };
        if parts.next().is_some() {
            return Err(PolicyError::new(
                SETTING,
                format!("unexpected text after the zone in {raw:?}"),
            ));
        }
        let days = parse_days(days)?;
        let (start, end) = times.split_once('-').ok_or_else(|| {
            PolicyError::new(
                SETTING,
                format!("{times:?} is not a time range like 02:00-05:00"),
            )
        })?;
        let start = parse_time(start)? % 1440;
        let end = parse_time(end)?;
        if start == end {
            return Err(PolicyError::new(
                SETTING,
                format!("{times:?} is empty: a window needs time to run"),
            ));
        }
        let length = if end > start {
            end - start
        } else {
            1440 - start + end
        };
        Ok(Window {
            days,
            start,
            length,
            offset,
        })
    }

    /// Whether the window is open at `now`.
    pub fn contains(&self, now: OffsetDateTime) -> bool {
        self.current_or_next_opening(now) <= now
    }

    /// `now` if the window is open, else when it next opens.
    pub fn next_open(&self, now: OffsetDateTime) -> OffsetDateTime {
        self.current_or_next_opening(now).max(now)
    }

    /// The start of the window that contains `now`, or of the next one.
    fn current_or_next_opening(&self, now: OffsetDateTime) -> OffsetDateTime {
        let local = now.to_offset(self.offset);
        let midnight = local.replace_time(time::Time::MIDNIGHT);
        // Yesterday's window may still be open; a week ahead always has one.
        for day in -1..=7 {
            let day_start = midnight + Duration::days(day);
            if self.days & (1 << day_start.weekday().number_days_from_monday()) == 0 {
                continue;
            }
            let opens = day_start + Duration::minutes(i64::from(self.start));
            let closes = opens + Duration::minutes(i64::from(self.length));
            if closes > local {
                return opens;
            }
        }
        // Unreachable with at least one day set (parse guarantees it).
        now
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = DAYS
            .iter()
            .enumerate()
            .filter(|(n, _)| self.days & (1 << n) != 0)
            .map(|(_, (name, _))| {
                let mut name = name.to_string();
                name[..1].make_ascii_uppercase();
                name
            })
            .collect();
        let end = (self.start + self.length) % 1440;
        write!(
            f,
            "{} {:02}:{:02}-{:02}:{:02} {}",
            names.join(","),
            self.start / 60,
            self.start % 60,
            end / 60,
            end % 60,
            if self.offset == UtcOffset::UTC {
                "UTC".to_owned()
            } else {
                let (h, m, _) = self.offset.as_hms();
                format!(
                    "{}{:02}:{:02}",
                    if self.offset.is_negative() { '-' } else { '+' },
                    h.abs(),
                    m.abs()
                )
            }
        )
    }
}

fn day_index(name: &str) -> Result<u8, PolicyError> {
    let lower = name.to_ascii_lowercase();
    DAYS.iter()
        .position(|(day, _)| {
            lower.len() >= 3 && day.starts_with(&lower[..3]) && is_day_name(&lower)
        })
        .map(|n| n as u8)
        .ok_or_else(|| PolicyError::new(SETTING, format!("{name:?} is not a day (Mon … Sun)")))
}

fn is_day_name(lower: &str) -> bool {
    [
        "mon",
        "monday",
        "tue",
        "tues",
        "tuesday",
        "wed",
        "wednesday",
        "thu",
        "thur",
        "thurs",
        "thursday",
        "fri",
        "friday",
        "sat",
        "saturday",
        "sun",
        "sunday",
    ]
    .contains(&lower)
}

fn parse_days(raw: &str) -> Result<u8, PolicyError> {
    if raw.eq_ignore_ascii_case("daily") || raw == "*" {
        return Ok(0x7f);
    }
    let mut days = 0u8;
    for part in raw.split(',') {
        match part.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (day_index(from)?, day_index(to)?);
                let mut day = from;
                loop {
                    days |= 1 << day;
                    if day == to {
                        break;
                    }
                    day = (day + 1) % 7;
                }
            }
            None => days |= 1 << day_index(part)?,
        }
    }
    Ok(days)
}

fn parse_time(raw: &str) -> Result<u16, PolicyError> {
    let bad = || PolicyError::new(SETTING, format!("{raw:?} is not a time like 02:00"));
    let (h, m) = raw.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    // 24:00 is allowed as the end of a day.
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn parse_zone(raw: &str) -> Result<UtcOffset, PolicyError> {
    if raw.eq_ignore_ascii_case("utc") || raw.eq_ignore_ascii_case("z") {
        return Ok(UtcOffset::UTC);
    }
    let bad = || {
        PolicyError::new(
            SETTING,
            format!("{raw:?} is not UTC or an offset like +02:00"),
        )
    };
    let (sign, rest) = match raw.as_bytes().first() {
        Some(b'+') => (1i8, &raw[1..]),
        Some(b'-') => (-1i8, &raw[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    let h: i8 = h.parse().map_err(|_| bad())?;
    let m: i8 = m.parse().map_err(|_| bad())?;
    UtcOffset::from_hms(sign * h, sign * m, 0).map_err(|_| bad())
}
