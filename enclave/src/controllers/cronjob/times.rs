//! When a CronJob's Jobs are due (upstream `cronjob/utils.go`:
//! `mostRecentScheduleTime`, `nextScheduleTimeDuration`), and its time
//! zone.

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::CronJob;

use super::schedule::Schedule;

/// How many schedules passed unmet (upstream's `missedSchedulesType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Missed {
    /// None since the last schedule.
    None,
    /// A few.
    Few,
    /// More than 100: upstream warns and starts only the latest.
    Many,
}

/// upstream's `nextScheduleDelta`: a margin for clock skew.
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

/// The zone a CronJob's schedule is read in: `spec.timeZone` from the
/// bundled IANA database, UTC when unset (the enclave's local zone, which
/// upstream uses then).
///
/// # Errors
/// Go's message for an unknown zone.
pub(super) fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        None => Ok(TimeZone::UTC),
        Some(n) => TimeZone::get(n).map_err(|_| format!("unknown time zone {n}")),
    }
}

fn schedule_start(cj: &CronJob) -> Timestamp {
    cj.status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .or(cj.metadata.creation_timestamp.as_ref())
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
}

/// upstream's `mostRecentScheduleTime`: the earliest time considered (the
/// last schedule or the creation, or with `include_deadline` the starting
/// deadline if later), the latest activation since then not after `now`,
/// and how many were missed.
///
/// # Errors
/// A schedule whose activations are less than a second apart (one that
/// never fires, such as February 31st).
pub(super) fn most_recent_schedule_time(
    cj: &CronJob,
    now: Timestamp,
    sched: &Schedule,
    tz: &TimeZone,
    include_deadline: bool,
) -> Result<(Timestamp, Option<Timestamp>, Missed), String> {
    let mut earliest = schedule_start(cj);
    if include_deadline
        && let Some(secs) = cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds)
        && let Ok(deadline) = Timestamp::from_second(now.as_second().saturating_sub(secs))
        && deadline > earliest
    {
        earliest = deadline;
    }
    let Some(t1) = sched.next(earliest, tz) else {
        return Err("time difference between two schedules is less than 1 second".into());
    };
    if now < t1 {
        return Ok((earliest, None, Missed::None));
    }
    let Some(t2) = sched.next(t1, tz) else {
        return Ok((earliest, Some(t1), Missed::None));
    };
    if now < t2 {
        return Ok((earliest, Some(t1), Missed::None));
    }
    let between = t2.as_second() - t1.as_second();
    if between < 1 {
        return Err("time difference between two schedules is less than 1 second".into());
    }
    let elapsed = now.as_second() - t1.as_second();
    let missed = elapsed / between + 1;
    // Start from about the latest activation: one interval before the
    // estimate, so that irregular schedules still land right.
    let potential = Timestamp::from_second(t1.as_second() + (missed - 2) * between).unwrap_or(t1);
    let mut most_recent = None;
    let mut t = sched.next(potential, tz);
    while let Some(at) = t.filter(|at| *at <= now) {
        most_recent = Some(at);
        t = sched.next(at, tz);
    }
    let kind = if missed > 100 {
        Missed::Many
    } else {
        Missed::Few
    };
    Ok((earliest, most_recent, kind))
}

/// upstream's `nextScheduleTimeDuration`: how long until the next
/// activation (plus a tenth of a second); `None` if there is none.
pub(super) fn next_schedule_delay(
    cj: &CronJob,
    now: Timestamp,
    sched: &Schedule,
    tz: &TimeZone,
) -> Option<Duration> {
    let from = match most_recent_schedule_time(cj, now, sched, tz, false) {
        Err(_) => now,
        Ok((_, Some(t), _)) => t,
        Ok((earliest, None, Missed::None)) => earliest,
        Ok((_, None, _)) => now,
    };
    let next = sched.next(from, tz)?;
    let wait = Duration::try_from(next.duration_since(now)).unwrap_or(Duration::ZERO);
    Some(wait + NEXT_SCHEDULE_DELTA)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cronjob(
        schedule: &str,
        created: &str,
        last: Option<&str>,
        deadline: Option<i64>,
    ) -> CronJob {
        serde_json::from_value(json!({
            "metadata": {"name": "c", "creationTimestamp": created},
            "spec": {"schedule": schedule, "startingDeadlineSeconds": deadline,
                "jobTemplate": {"spec": {"template": {}}}},
            "status": {"lastScheduleTime": last},
        }))
        .unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_latest_missed_activation_is_due() {
        let cj = cronjob(
            "*/10 * * * *",
            "2026-01-01T00:00:00Z",
            Some("2026-01-01T01:00:00Z"),
            None,
        );
        let s = Schedule::parse("*/10 * * * *").unwrap();
        let (_, most, missed) =
            most_recent_schedule_time(&cj, at("2026-01-01T01:35:00Z"), &s, &TimeZone::UTC, true)
                .unwrap();
        assert_eq!(most, Some(at("2026-01-01T01:30:00Z")));
        assert_eq!(missed, Missed::Few);
        let (_, most, missed) =
            most_recent_schedule_time(&cj, at("2026-01-01T01:05:00Z"), &s, &TimeZone::UTC, true)
                .unwrap();
        assert_eq!((most, missed), (None, Missed::None));
        let delay =
            next_schedule_delay(&cj, at("2026-01-01T01:05:00Z"), &s, &TimeZone::UTC).unwrap();
        assert_eq!(delay, Duration::from_millis(300_100));
    }

    #[test]
    fn more_than_a_hundred_missed_is_many_and_a_deadline_narrows_the_window() {
        let s = Schedule::parse("* * * * *").unwrap();
        let cj = cronjob("* * * * *", "2026-01-01T00:00:00Z", None, None);
        let (_, most, missed) =
            most_recent_schedule_time(&cj, at("2026-01-02T00:00:30Z"), &s, &TimeZone::UTC, true)
                .unwrap();
        assert_eq!(most, Some(at("2026-01-02T00:00:00Z")));
        assert_eq!(missed, Missed::Many);
        let cj = cronjob("* * * * *", "2026-01-01T00:00:00Z", None, Some(200));
        let (_, _, missed) =
            most_recent_schedule_time(&cj, at("2026-01-02T00:00:30Z"), &s, &TimeZone::UTC, true)
                .unwrap();
        assert_eq!(missed, Missed::Few);
    }

    #[test]
    fn unknown_zones_are_refused_as_go_says() {
        assert_eq!(
            time_zone(Some("Mars/Olympus")).unwrap_err(),
            "unknown time zone Mars/Olympus"
        );
        assert!(time_zone(Some("Europe/Paris")).is_ok());
    }
}
