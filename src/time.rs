//! The one time type of the crate: an instant in UTC, microsecond precision.
//!
//! Everything (records, lastrun files, OpenStack timestamps, StAR dates) goes
//! through [`Timestamp`], so no value ever depends on the host time zone
//! (cASO defect 7). Civil-date conversion uses Howard Hinnant's algorithms,
//! which are exact for the proleptic Gregorian calendar.

use std::fmt;
use std::str::FromStr;

const MICROS_PER_SEC: i64 = 1_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// An instant in UTC, microseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Timestamp {
    micros: i64,
}

/// A broken-down UTC date and time.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub micro: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid date/time {input:?}: {reason}")]
pub struct TimeError {
    /// An [`excerpt`] of the input: a hostile file or body may be huge.
    pub input: String,
    pub reason: &'static str,
}

/// Characters of a bad input quoted in an error.
pub const EXCERPT_CHARS: usize = 40;

/// The first [`EXCERPT_CHARS`] characters of `s`, with `...` when there is
/// more; printed with `{:?}`, control characters come out escaped.
pub fn excerpt(s: &str) -> String {
    match s.char_indices().nth(EXCERPT_CHARS) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_string(),
    }
}

/// How far ahead of the clock a time read from OpenStack may be: more is a
/// wrong clock or a forged value, not usage.
pub const FUTURE_SLACK_SECS: i64 = 86_400;

impl Timestamp {
    /// 1970-01-01T00:00:00Z, what cASO assumes when there is no lastrun file.
    pub const EPOCH: Timestamp = Timestamp { micros: 0 };

    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            micros: d.as_micros() as i64,
        }
    }

    pub const fn from_unix(secs: i64) -> Self {
        Timestamp {
            micros: secs * MICROS_PER_SEC,
        }
    }

    pub const fn from_unix_micros(micros: i64) -> Self {
        Timestamp { micros }
    }

    /// Whole seconds since the epoch, rounded down (what APEL records carry).
    pub const fn unix_seconds(self) -> i64 {
        self.micros.div_euclid(MICROS_PER_SEC)
    }

    pub const fn unix_micros(self) -> i64 {
        self.micros
    }

    pub const fn subsec_micros(self) -> u32 {
        self.micros.rem_euclid(MICROS_PER_SEC) as u32
    }

    /// The same instant with the fraction of a second dropped.
    pub const fn truncate_to_second(self) -> Self {
        Timestamp::from_unix(self.unix_seconds())
    }

    pub const fn add_seconds(self, secs: i64) -> Self {
        Timestamp {
            micros: self.micros + secs * MICROS_PER_SEC,
        }
    }

    /// Whole seconds from `earlier` to `self` (negative if `earlier` is later).
    pub const fn seconds_since(self, earlier: Timestamp) -> i64 {
        (self.micros - earlier.micros).div_euclid(MICROS_PER_SEC)
    }

    pub fn from_civil(c: Civil) -> Result<Self, &'static str> {
        if !(1..=12).contains(&c.month) {
            return Err("month out of range");
        }
        if c.day < 1 || c.day > days_in_month(c.year, c.month) {
            return Err("day out of range");
        }
        if c.hour > 23 || c.minute > 59 || c.second > 59 || c.micro > 999_999 {
            return Err("time of day out of range");
        }
        if !(-9999..=9999).contains(&c.year) {
            return Err("year out of range");
        }
        let days = days_from_civil(c.year, c.month, c.day);
        let secs = days * SECS_PER_DAY
            + i64::from(c.hour) * 3600
            + i64::from(c.minute) * 60
            + i64::from(c.second);
        Ok(Timestamp {
            micros: secs * MICROS_PER_SEC + i64::from(c.micro),
        })
    }

    /// Midnight UTC on the first day of a month.
    pub fn month_start(year: i64, month: u32) -> Result<Self, &'static str> {
        Timestamp::from_civil(Civil {
            year,
            month,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
            micro: 0,
        })
    }

    pub fn civil(self) -> Civil {
        let secs = self.unix_seconds();
        let days = secs.div_euclid(SECS_PER_DAY);
        let tod = secs.rem_euclid(SECS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: (tod / 3600) as u32,
            minute: (tod % 3600 / 60) as u32,
            second: (tod % 60) as u32,
            micro: self.subsec_micros(),
        }
    }

    /// Parses what cASO, dateutil and the OpenStack APIs write:
    /// `2026-11-24 10:00:01+00:00`, `2026-11-24T10:00:01.123456Z`,
    /// `2026-11-24T10:00:01.000000` (no zone = UTC), `2026-11-24T10:00`,
    /// `2026-11-24` (midnight UTC). Offsets are `Z`, `±HH:MM`, `±HHMM` or `±HH`.
    pub fn parse(input: &str) -> Result<Self, TimeError> {
        let err = |reason| TimeError {
            input: excerpt(input),
            reason,
        };
        let s = input.trim();
        let b = s.as_bytes();
        let mut p = Cursor { b, i: 0 };
        let year = p.digits(4).ok_or_else(|| err("expected a 4-digit year"))?;
        p.expect(b'-')
            .ok_or_else(|| err("expected '-' after the year"))?;
        let month = p.digits(2).ok_or_else(|| err("expected a 2-digit month"))?;
        p.expect(b'-')
            .ok_or_else(|| err("expected '-' after the month"))?;
        let day = p.digits(2).ok_or_else(|| err("expected a 2-digit day"))?;
        let (mut hour, mut minute, mut second, mut micro) = (0, 0, 0, 0);
        let mut offset_secs = 0i64;
        if !p.done() {
            match p.next() {
                Some(b'T') | Some(b't') | Some(b' ') => {}
                _ => return Err(err("expected 'T' or ' ' between date and time")),
            }
            hour = p.digits(2).ok_or_else(|| err("expected a 2-digit hour"))?;
            p.expect(b':')
                .ok_or_else(|| err("expected ':' after the hour"))?;
            minute = p.digits(2).ok_or_else(|| err("expected 2-digit minutes"))?;
            if p.peek() == Some(b':') {
                p.next();
                second = p.digits(2).ok_or_else(|| err("expected 2-digit seconds"))?;
                if p.peek() == Some(b'.') || p.peek() == Some(b',') {
                    p.next();
                    let start = p.i;
                    let mut frac = 0u32;
                    let mut n = 0;
                    while let Some(c) = p.peek().filter(u8::is_ascii_digit) {
                        p.next();
                        if n < 6 {
                            frac = frac * 10 + u32::from(c - b'0');
                            n += 1;
                        }
                    }
                    if p.i == start {
                        return Err(err("expected digits after the decimal point"));
                    }
                    micro = frac * 10u32.pow(6 - n);
                }
            }
            match p.next() {
                None => {}
                Some(b'Z') | Some(b'z') if p.done() => {}
                Some(sign @ (b'+' | b'-')) => {
                    let oh = p
                        .digits(2)
                        .ok_or_else(|| err("expected a 2-digit offset hour"))?;
                    if p.peek() == Some(b':') {
                        p.next();
                    }
                    let om = if p.done() {
                        0
                    } else {
                        p.digits(2)
                            .ok_or_else(|| err("expected 2-digit offset minutes"))?
                    };
                    if oh > 23 || om > 59 {
                        return Err(err("offset out of range"));
                    }
                    let o = i64::from(oh) * 3600 + i64::from(om) * 60;
                    offset_secs = if sign == b'+' { o } else { -o };
                    if !p.done() {
                        return Err(err("unexpected text after the offset"));
                    }
                }
                Some(_) => return Err(err("unexpected text after the time")),
            }
        }
        let local = Timestamp::from_civil(Civil {
            year: i64::from(year),
            month,
            day,
            hour,
            minute,
            second,
            micro,
        })
        .map_err(err)?;
        Ok(local.add_seconds(-offset_secs))
    }

    /// Why `self` cannot be a usage time as of `now`: before 1970, or more
    /// than [`FUTURE_SLACK_SECS`] after `now`.
    pub fn out_of_range(self, now: Timestamp) -> Option<&'static str> {
        if self < Timestamp::EPOCH {
            Some("is before 1970")
        } else if self.seconds_since(now) > FUTURE_SLACK_SECS {
            Some("is more than a day in the future")
        } else {
            None
        }
    }

    /// Python's `str(datetime)` of an aware UTC datetime, as cASO writes
    /// lastrun files: `2026-11-24 10:00:01+00:00` (`.ffffff` only when non-zero).
    pub fn to_python_str(self) -> String {
        let c = self.civil();
        let mut s = format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            c.year, c.month, c.day, c.hour, c.minute, c.second
        );
        if c.micro != 0 {
            s.push_str(&format!(".{:06}", c.micro));
        }
        s.push_str("+00:00");
        s
    }

    /// RFC 3339 in UTC with a `Z`: `2026-11-24T10:00:01Z` (`.ffffff` only when non-zero).
    pub fn to_rfc3339(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.civil();
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            c.year, c.month, c.day, c.hour, c.minute, c.second
        )?;
        if c.micro != 0 {
            write!(f, ".{:06}", c.micro)?;
        }
        f.write_str("Z")
    }
}

impl FromStr for Timestamp {
    type Err = TimeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse(s)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl From<std::time::SystemTime> for Timestamp {
    fn from(t: std::time::SystemTime) -> Self {
        match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Timestamp::from_unix_micros(d.as_micros() as i64),
            Err(e) => Timestamp::from_unix_micros(-(e.duration().as_micros() as i64)),
        }
    }
}

pub fn is_leap_year(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

pub fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(y) => 29,
        2 => 28,
        _ => 0,
    }
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let c = self.peek();
        if c.is_some() {
            self.i += 1;
        }
        c
    }
    fn done(&self) -> bool {
        self.i >= self.b.len()
    }
    fn expect(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }
    fn digits(&mut self, n: usize) -> Option<u32> {
        let s = self.b.get(self.i..self.i + n)?;
        if !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.i += n;
        Some(s.iter().fold(0, |a, c| a * 10 + u32::from(c - b'0')))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[test]
    fn parses_every_form_caso_and_openstack_write() {
        let t = 1_763_978_401; // 2025-11-24T10:00:01Z
        for s in [
            "2025-11-24 10:00:01+00:00",
            "2025-11-24T10:00:01Z",
            "2025-11-24T10:00:01",
            "2025-11-24T10:00:01.000000",
            "2025-11-24T11:00:01+01:00",
            "2025-11-24T11:00:01+0100",
            "2025-11-24T11:00:01+01",
            "2025-11-24T05:30:01-04:30",
            " 2025-11-24 10:00:01+00:00\n",
        ] {
            assert_eq!(ts(s).unix_seconds(), t, "{s}");
        }
        assert_eq!(ts("2025-11-24").unix_seconds(), 1_763_942_400);
        assert_eq!(ts("2025-11-24T10:00").unix_seconds(), 1_763_978_400);
        assert_eq!(ts("2025-11-24 10:00:01.5+00:00").subsec_micros(), 500_000);
        assert_eq!(ts("2025-11-24T10:00:01.1234567Z").subsec_micros(), 123_456);
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        for s in [
            "",
            "yesterday",
            "2025-13-01",
            "2025-02-29",
            "2025-11-24X10:00",
            "2025-11-24T25:00",
            "2025-11-24T10:00:01+00:00 junk",
            "2025-11-24T10:00:01.",
        ] {
            assert!(Timestamp::parse(s).is_err(), "{s}");
        }
        assert_eq!(
            Timestamp::parse("2025-13-01").unwrap_err().to_string(),
            "invalid date/time \"2025-13-01\": month out of range"
        );
    }

    #[test]
    fn writes_python_str_and_rfc3339() {
        assert_eq!(
            Timestamp::from_unix(1_763_978_401).to_python_str(),
            "2025-11-24 10:00:01+00:00"
        );
        assert_eq!(
            Timestamp::from_unix_micros(1_763_978_401_000_123).to_python_str(),
            "2025-11-24 10:00:01.000123+00:00"
        );
        assert_eq!(Timestamp::EPOCH.to_rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Timestamp::from_unix(-1).to_rfc3339(),
            "1969-12-31T23:59:59Z"
        );
    }

    #[test]
    fn civil_round_trips_across_centuries() {
        let mut day = -719_000i64; // year 1: what Python can hold
        while day < 2_900_000 {
            let t = Timestamp::from_unix(day * SECS_PER_DAY + 3723);
            assert_eq!(Timestamp::from_civil(t.civil()).unwrap(), t);
            assert_eq!(Timestamp::parse(&t.to_python_str()).unwrap(), t);
            day += 997;
        }
        assert_eq!(
            Timestamp::month_start(2024, 3).unwrap().unix_seconds()
                - Timestamp::month_start(2024, 2).unwrap().unix_seconds(),
            29 * SECS_PER_DAY
        );
    }
}
