//! Cron schedules as upstream's CronJob controller reads them
//! (`github.com/robfig/cron/v3`'s `ParseStandard`): five fields (minute,
//! hour, day of month, month, day of week; names like `jan` and `mon`,
//! ranges, steps, lists, `*` and `?`), the descriptors `@yearly`,
//! `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`
//! and `@every <duration>`, evaluated in an IANA time zone.

use std::time::Duration;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Schedule {
    /// Field bitmasks; bit 63 marks a field written as `*` or `?`.
    Spec {
        /// Minutes 0–59.
        minute: u64,
        /// Hours 0–23.
        hour: u64,
        /// Days of the month 1–31.
        dom: u64,
        /// Months 1–12.
        month: u64,
        /// Days of the week 0–6, Sunday first.
        dow: u64,
    },
    /// `@every <duration>`: at a fixed interval (whole seconds, at least one).
    Every(Duration),
}

const STAR: u64 = 1 << 63;

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [(&'static str, u32)],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &[
        ("sun", 0),
        ("mon", 1),
        ("tue", 2),
        ("wed", 3),
        ("thu", 4),
        ("fri", 5),
        ("sat", 6),
    ],
};

fn bits(start: u32, end: u32, step: u32) -> u64 {
    let mut b = 0u64;
    let mut i = start;
    while i <= end {
        b |= 1 << i;
        i += step;
    }
    b
}

fn all(r: &Bounds) -> u64 {
    bits(r.min, r.max, 1) | STAR
}

fn parse_int(s: &str) -> Result<u32, String> {
    s.parse::<u32>().map_err(|_| {
        format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax")
    })
}

fn parse_int_or_name(s: &str, r: &Bounds) -> Result<u32, String> {
    let lower = s.to_lowercase();
    if let Some((_, v)) = r.names.iter().find(|(n, _)| *n == lower) {
        return Ok(*v);
    }
    parse_int(s)
}

/// robfig's `getRange`: `*`, `?`, `a`, `a-b`, each optionally `/step`.
fn range(expr: &str, r: &Bounds) -> Result<u64, String> {
    let mut range_step = expr.split('/');
    let low_high_part = range_step.next().unwrap_or("");
    let step_part = range_step.next();
    if range_step.next().is_some() {
        return Err(format!("too many slashes: {expr}"));
    }
    let low_high: Vec<&str> = low_high_part.split('-').collect();
    let single = low_high.len() == 1;
    let (start, mut end, mut extra);
    if low_high[0] == "*" || low_high[0] == "?" {
        start = r.min;
        end = r.max;
        extra = STAR;
    } else {
        start = parse_int_or_name(low_high[0], r)?;
        end = match low_high.len() {
            1 => start,
            2 => parse_int_or_name(low_high[1], r)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
        extra = 0;
    }
    let step = match step_part {
        None => 1,
        Some(s) => {
            let step = parse_int(s)?;
            if single {
                end = r.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
    };
    if start < r.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            r.min
        ));
    }
    if end > r.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            r.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(bits(start, end, step) | extra)
}

fn field(expr: &str, r: &Bounds) -> Result<u64, String> {
    let mut b = 0;
    for part in expr.split(',') {
        b |= range(part, r)?;
    }
    Ok(b)
}

/// Go's `time.ParseDuration` for the units a schedule uses (`h`, `m`,
/// `s`, `ms`, `us`, `ns`, possibly combined and fractional).
fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("time: invalid duration {s:?}");
    if s.is_empty() || s == "0" {
        return if s == "0" {
            Ok(Duration::ZERO)
        } else {
            Err(err())
        };
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_len == 0 {
            return Err(err());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    Ok(Duration::from_secs_f64(total))
}

impl Schedule {
    /// robfig's `ParseStandard`.
    ///
    /// # Errors
    /// The library's message (which upstream puts in its events).
    pub(crate) fn parse(spec: &str) -> Result<Schedule, String> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err("empty spec string".into());
        }
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            return Err("time zones in the schedule are not supported, use spec.timeZone".into());
        }
        if spec.starts_with('@') {
            return Self::descriptor(spec);
        }
        let fields: Vec<&str> = spec.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: [{}]",
                fields.len(),
                fields.join(" ")
            ));
        }
        Ok(Schedule::Spec {
            minute: field(fields[0], &MINUTES)?,
            hour: field(fields[1], &HOURS)?,
            dom: field(fields[2], &DOM)?,
            month: field(fields[3], &MONTHS)?,
            dow: field(fields[4], &DOW)?,
        })
    }

    fn descriptor(d: &str) -> Result<Schedule, String> {
        let first = |r: &Bounds| 1u64 << r.min;
        let spec = |minute, hour, dom, month, dow| Schedule::Spec {
            minute,
            hour,
            dom,
            month,
            dow,
        };
        Ok(match d {
            "@yearly" | "@annually" => spec(
                first(&MINUTES),
                first(&HOURS),
                first(&DOM),
                first(&MONTHS),
                all(&DOW),
            ),
            "@monthly" => spec(
                first(&MINUTES),
                first(&HOURS),
                first(&DOM),
                all(&MONTHS),
                all(&DOW),
            ),
            "@weekly" => spec(
                first(&MINUTES),
                first(&HOURS),
                all(&DOM),
                all(&MONTHS),
                first(&DOW),
            ),
            "@daily" | "@midnight" => spec(
                first(&MINUTES),
                first(&HOURS),
                all(&DOM),
                all(&MONTHS),
                all(&DOW),
            ),
            "@hourly" => spec(
                first(&MINUTES),
                all(&HOURS),
                all(&DOM),
                all(&MONTHS),
                all(&DOW),
            ),
            _ => {
                let Some(d) = d.strip_prefix("@every ") else {
                    return Err(format!("unrecognized descriptor: {d}"));
                };
                let dur = parse_go_duration(d)
                    .map_err(|e| format!("failed to parse duration @every {d}: {e}"))?;
                // robfig's `Every`: at least a second, whole seconds.
                Schedule::Every(Duration::from_secs(dur.as_secs().max(1)))
            }
        })
    }

    /// The first activation strictly after `t` (robfig's `Next`), in `tz`;
    /// `None` if there is none within five years.
    pub(crate) fn next(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let (minute, hour, dom, month, dow) = match self {
            Schedule::Every(d) => {
                let secs = i64::try_from(d.as_secs()).ok()?;
                return Timestamp::from_second(t.as_second().checked_add(secs)?).ok();
            }
            Schedule::Spec {
                minute,
                hour,
                dom,
                month,
                dow,
            } => (*minute, *hour, *dom, *month, *dow),
        };
        // The earliest candidate: the next whole minute after t (robfig adds
        // a second, drops the fraction, then waits for second 0).
        let floor = Timestamp::from_second(t.as_second()).ok()?;
        let start = floor.checked_add(1.second()).ok()?;
        let start_minute = (start.as_second() + 59).div_euclid(60) * 60;
        let start = Timestamp::from_second(start_minute).ok()?;
        let local = start.to_zoned(tz.clone()).datetime();
        // Wall times well before the start need no zone lookup (two hours
        // covers any DST shift).
        let skip_before = local.checked_sub(2.hours()).ok()?;
        let day_matches = |d: Date| {
            let dom_hit = dom & (1 << d.day()) != 0;
            let dow_hit = dow & (1 << d.weekday().to_sunday_zero_offset()) != 0;
            if dom & STAR != 0 || dow & STAR != 0 {
                dom_hit && dow_hit
            } else {
                dom_hit || dow_hit
            }
        };
        let mut day = local.date();
        let limit = day.year().saturating_add(5);
        while day.year() <= limit {
            if month & (1 << day.month()) != 0 && day_matches(day) {
                for h in 0..24i8 {
                    if hour & (1 << h) == 0 {
                        continue;
                    }
                    for m in 0..60i8 {
                        if minute & (1 << m) == 0 {
                            continue;
                        }
                        let dt =
                            DateTime::new(day.year(), day.month(), day.day(), h, m, 0, 0).ok()?;
                        if dt < skip_before {
                            continue;
                        }
                        let Ok(z) = dt.to_zoned(tz.clone()) else {
                            continue;
                        };
                        // A wall time skipped by a DST gap maps later, and
                        // one repeated maps to its first occurrence.
                        if z.timestamp() >= start {
                            return Some(z.timestamp());
                        }
                    }
                }
            }
            day = day.tomorrow().ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(spec: &str, from: &str, tz: &str) -> String {
        let tz = TimeZone::get(tz).unwrap();
        Schedule::parse(spec)
            .unwrap()
            .next(at(from), &tz)
            .unwrap()
            .to_string()
    }

    #[test]
    fn standard_fields_and_descriptors() {
        assert_eq!(
            next("*/15 * * * *", "2026-03-01T10:07:30Z", "UTC"),
            "2026-03-01T10:15:00Z"
        );
        assert_eq!(
            next("0 9 * * MON-FRI", "2026-03-06T10:00:00Z", "UTC"),
            "2026-03-09T09:00:00Z"
        );
        assert_eq!(
            next("@hourly", "2026-03-01T10:00:00Z", "UTC"),
            "2026-03-01T11:00:00Z"
        );
        assert_eq!(
            next("@yearly", "2026-03-01T10:00:00Z", "UTC"),
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(
            next("@every 90s", "2026-03-01T10:00:00Z", "UTC"),
            "2026-03-01T10:01:30Z"
        );
        // Day of month and day of week both restricted: either matches.
        assert_eq!(
            next("0 0 13 * 5", "2026-03-01T00:00:00Z", "UTC"),
            "2026-03-06T00:00:00Z"
        );
        // One restricted and the other `*`: both must.
        assert_eq!(
            next("0 0 * * 0", "2026-03-02T00:00:00Z", "UTC"),
            "2026-03-08T00:00:00Z"
        );
        assert_eq!(
            next("30 2 1 jan,jul ?", "2026-03-01T00:00:00Z", "UTC"),
            "2026-07-01T02:30:00Z"
        );
    }

    #[test]
    fn time_zones_shift_the_wall_clock() {
        assert_eq!(
            next("0 9 * * *", "2026-01-09T23:59:00Z", "Asia/Tokyo"),
            "2026-01-10T00:00:00Z"
        );
        // Strictly after: the activation at `t` itself is not next.
        assert_eq!(
            next("0 9 * * *", "2026-01-10T00:00:00Z", "Asia/Tokyo"),
            "2026-01-11T00:00:00Z"
        );
        assert_eq!(
            next("0 9 * * *", "2026-01-10T00:00:00Z", "America/New_York"),
            "2026-01-10T14:00:00Z"
        );
    }

    #[test]
    fn bad_schedules_say_why() {
        assert_eq!(
            Schedule::parse("* * *").unwrap_err(),
            "expected exactly 5 fields, found 3: [* * *]"
        );
        assert!(
            Schedule::parse("60 * * * *")
                .unwrap_err()
                .contains("above maximum (59)")
        );
        assert!(
            Schedule::parse("@weird")
                .unwrap_err()
                .contains("unrecognized descriptor")
        );
        assert!(
            Schedule::parse("*/0 * * * *")
                .unwrap_err()
                .contains("positive")
        );
        assert!(Schedule::parse("0 0 31 2 *").is_ok());
        assert_eq!(
            Schedule::parse("0 0 31 2 *")
                .unwrap()
                .next(at("2026-01-01T00:00:00Z"), &TimeZone::UTC),
            None
        );
    }
}
