//! Cron schedules (policies and pipeline triggers).
//!
//! Five fields — minute (0-59), hour (0-23), day-of-month (1-31), month
//! (1-12 or JAN-DEC), day-of-week (0-7 or SUN-SAT, 0 and 7 both Sunday) —
//! each `*`, a value, a range `a-b`, a step `*/n` or `a-b/n`, or a list of
//! those; or one of `@hourly`, `@daily`, `@weekly` (Sunday midnight),
//! `@monthly`, `@yearly` (also `@annually`). As in Vixie cron, when both
//! day-of-month and day-of-week are restricted a day matching either
//! matches. The extensions of the `croner` crate are also accepted in the
//! day fields (`L` last day, `15W` nearest weekday, `5#2` second Friday).
//!
//! Times are wall-clock times of an IANA zone (default UTC). Across a
//! daylight-saving change a tick whose time does not exist that day (02:30
//! when clocks jump from 02:00 to 03:00) runs at the first instant after the
//! gap, and a tick whose time happens twice (01:30 when clocks go back) runs
//! once, at the first of the two, as `croner` does.

use std::fmt;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::error::DriftError;

const FORM: &str = "use five fields: minute hour day-of-month month day-of-week";
const ALIASES: &str = "@hourly, @daily, @weekly, @monthly or @yearly";

/// A parsed cron expression in a time zone.
#[derive(Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
    expression: String,
    timezone: String,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schedule").field("expression", &self.expression).field("timezone", &self.timezone).finish()
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.expression, self.timezone)
    }
}

/// One of the five fields: its name, bounds and names for values.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// Characters of croner's extensions this field may hold.
    extensions: &'static [char],
}

const MONTHS: &[&str] = &["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const FIELDS: [Field; 5] = [
    Field { name: "minute", min: 0, max: 59, names: &[], extensions: &[] },
    Field { name: "hour", min: 0, max: 23, names: &[], extensions: &[] },
    Field { name: "day-of-month", min: 1, max: 31, names: &[], extensions: &['L', 'W', '?'] },
    Field { name: "month", min: 1, max: 12, names: MONTHS, extensions: &[] },
    Field { name: "day-of-week", min: 0, max: 7, names: DAYS, extensions: &['L', '#', '?'] },
];

impl Field {
    /// A value: a number in bounds, or a name.
    fn value(&self, text: &str) -> Result<u32, String> {
        if let Ok(n) = text.parse::<u32>() {
            if n < self.min || n > self.max {
                return Err(format!("{} {n} is out of range {}-{}", self.name, self.min, self.max));
            }
            return Ok(n);
        }
        let upper = text.to_ascii_uppercase();
        if let Some(i) = self.names.iter().position(|n| *n == upper) {
            // Months are 1-based, days 0-based.
            return Ok(i as u32 + self.min);
        }
        let names = if self.names.is_empty() {
            String::new()
        } else {
            format!(" or a name ({}-{})", self.names[0], self.names[self.names.len() - 1])
        };
        Err(format!("{} '{text}' is not a number {}-{}{names}", self.name, self.min, self.max))
    }

    /// One comma-separated item: `*`, `v`, `a-b`, each optionally `/step`.
    fn item(&self, item: &str) -> Result<(), String> {
        if item.is_empty() {
            return Err(format!("{} has an empty list item (a stray ',')", self.name));
        }
        if item.chars().any(|c| self.extensions.contains(&c.to_ascii_uppercase())) {
            // Left to croner, which knows these forms.
            return Ok(());
        }
        let (base, step) = match item.split_once('/') {
            Some((b, s)) => (b, Some(s)),
            None => (item, None),
        };
        let (low, high) = if base == "*" {
            (self.min, self.max)
        } else if let Some((a, b)) = base.split_once('-') {
            let (a, b) = (self.value(a)?, self.value(b)?);
            if a > b {
                return Err(format!("{} range {base} runs backwards; write the smaller value first", self.name));
            }
            (a, b)
        } else {
            let v = self.value(base)?;
            if step.is_some() {
                return Err(format!(
                    "{} '{item}': a step needs a range; write {base}-{}/{} or */{}",
                    self.name,
                    self.max,
                    step.unwrap_or_default(),
                    step.unwrap_or_default()
                ));
            }
            (v, v)
        };
        if let Some(step) = step {
            let n: u32 = step.parse().map_err(|_| format!("{} step '{step}' is not a whole number", self.name))?;
            if n == 0 {
                return Err(format!("{} step 0 must be at least 1", self.name));
            }
            if high > low && n > high - low {
                return Err(format!("{} step {n} is larger than the range {low}-{high}", self.name));
            }
        }
        Ok(())
    }
}

/// The sibling `timezone` field of a cron field path
/// (`policy.triggers[1].schedule.cron` → `….schedule.timezone`).
fn timezone_field(field: &str) -> String {
    match field.rsplit_once('.') {
        Some((parent, _)) => format!("{parent}.timezone"),
        None => "timezone".to_string(),
    }
}

/// A pattern that looks like five fields but matches no day at all
/// (`0 0 30 2 *`): croner would search years for it.
fn impossible_day(fields: &[&str]) -> Option<String> {
    let (dom, month, dow) = (fields[2], fields[3], fields[4]);
    if dow != "*" && dow != "?" {
        return None;
    }
    let days: u32 = dom.parse().ok()?;
    let months: Vec<u32> = month
        .split(',')
        .map(|m| FIELDS[3].value(m).ok())
        .collect::<Option<Vec<_>>>()
        .filter(|_| !month.contains(['-', '/', '*']))?;
    let longest = months
        .iter()
        .map(|m| {
            if *m == 2 {
                29
            } else if [4, 6, 9, 11].contains(m) {
                30
            } else {
                31
            }
        })
        .max()?;
    (days > longest).then(|| format!("day-of-month {days} never occurs in month {month}"))
}

impl Schedule {
    /// Parses `expression` in `timezone` (empty: UTC). Errors name `field`
    /// (the cron expression's request path) or, for the zone, its sibling
    /// `timezone` field.
    pub fn parse(field: &str, expression: &str, timezone: &str) -> Result<Schedule, DriftError> {
        let text = expression.trim();
        let invalid = |detail: String| DriftError::invalid(field, detail);
        if text.is_empty() {
            return Err(invalid(format!("is required: {FORM} (e.g. '0 3 * * *'), or {ALIASES}")));
        }
        let pattern = if let Some(alias) = text.strip_prefix('@') {
            match alias.to_ascii_lowercase().as_str() {
                "hourly" => "0 * * * *",
                "daily" | "midnight" => "0 0 * * *",
                "weekly" => "0 0 * * 0",
                "monthly" => "0 0 1 * *",
                "yearly" | "annually" => "0 0 1 1 *",
                _ => return Err(invalid(format!("'{text}' is not a known alias: use {ALIASES}, or five fields"))),
            }
            .to_string()
        } else {
            let fields: Vec<&str> = text.split_whitespace().collect();
            if fields.len() != 5 {
                let hint = if fields.len() == 6 { " (seconds are not supported)" } else { "" };
                return Err(invalid(format!(
                    "'{text}' has {} field{}{hint}; {FORM}, or {ALIASES}",
                    fields.len(),
                    if fields.len() == 1 { "" } else { "s" }
                )));
            }
            for (spec, value) in FIELDS.iter().zip(&fields) {
                for item in value.split(',') {
                    spec.item(item).map_err(|e| invalid(format!("'{text}': {e}; {FORM}")))?;
                }
            }
            if let Some(e) = impossible_day(&fields) {
                return Err(invalid(format!("'{text}': {e}")));
            }
            fields.join(" ")
        };
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(&pattern)
            .map_err(|e| invalid(format!("'{text}': {e}; {FORM}")))?;
        let zone = timezone.trim();
        let tz: Tz = if zone.is_empty() {
            Tz::UTC
        } else {
            zone.parse().map_err(|_| {
                DriftError::invalid(
                    timezone_field(field),
                    format!("unknown time zone '{zone}': use an IANA name such as 'Europe/Berlin', or 'UTC'"),
                )
            })?
        };
        let schedule = Schedule {
            cron,
            tz,
            expression: text.to_string(),
            timezone: if zone.is_empty() { "UTC".into() } else { zone.to_string() },
        };
        Ok(schedule)
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The IANA zone name ("UTC" when none was given).
    pub fn timezone(&self) -> &str {
        &self.timezone
    }

    /// The first tick strictly after `t`; `None` when there is none within
    /// the search horizon.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&t.with_timezone(&self.tz), false).ok().map(|d| d.with_timezone(&Utc))
    }

    /// The latest tick in (`after`, `until`], if any: whether (and when) the
    /// schedule fired between two looks.
    pub fn fired_between(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if until <= after {
            return None;
        }
        // A cheap test first: nothing fired when the next tick is later.
        let next = self.next_after(after)?;
        if next > until {
            return None;
        }
        let last = self
            .cron
            .find_previous_occurrence(&until.with_timezone(&self.tz), true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
            .filter(|d| *d > after && *d <= until);
        Some(last.unwrap_or(next))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const FIELD: &str = "policy.triggers[1].schedule.cron";

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn parse(expr: &str) -> Schedule {
        Schedule::parse(FIELD, expr, "").unwrap()
    }

    fn error(expr: &str, tz: &str) -> (String, String) {
        match Schedule::parse(FIELD, expr, tz).unwrap_err() {
            DriftError::Invalid { field, reason } => (field, reason),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn five_fields_tick() {
        let s = parse("*/15 9-17 * * MON-FRI");
        // Friday 2025-06-06 16:50 → 17:00, then Monday 09:00.
        assert_eq!(s.next_after(utc(2025, 6, 6, 16, 50)), Some(utc(2025, 6, 6, 17, 0)));
        assert_eq!(s.next_after(utc(2025, 6, 6, 17, 45)), Some(utc(2025, 6, 9, 9, 0)));
        // Strictly after.
        assert_eq!(s.next_after(utc(2025, 6, 9, 9, 0)), Some(utc(2025, 6, 9, 9, 15)));
        let s = parse("0 3 1,15 jan,jul *");
        assert_eq!(s.next_after(utc(2025, 1, 15, 3, 0)), Some(utc(2025, 7, 1, 3, 0)));
        assert_eq!(s.to_string(), "0 3 1,15 jan,jul * (UTC)");
        // 7 is Sunday too.
        assert_eq!(parse("0 0 * * 7").next_after(utc(2025, 6, 6, 0, 0)), Some(utc(2025, 6, 8, 0, 0)));
        // Vixie cron: either day field matches.
        assert_eq!(parse("0 0 13 * 5").next_after(utc(2025, 6, 7, 0, 0)), Some(utc(2025, 6, 13, 0, 0)));
        assert_eq!(parse("0 0 13 * 5").next_after(utc(2025, 6, 1, 0, 0)), Some(utc(2025, 6, 6, 0, 0)));
        // Subseconds do not confuse the search.
        let t = utc(2025, 6, 6, 16, 50) + chrono::Duration::milliseconds(250);
        assert_eq!(parse("* * * * *").next_after(t), Some(utc(2025, 6, 6, 16, 51)));
    }

    #[test]
    fn aliases() {
        let t = utc(2025, 6, 6, 16, 50);
        assert_eq!(parse("@hourly").next_after(t), Some(utc(2025, 6, 6, 17, 0)));
        assert_eq!(parse("@daily").next_after(t), Some(utc(2025, 6, 7, 0, 0)));
        assert_eq!(parse("@weekly").next_after(t), Some(utc(2025, 6, 8, 0, 0)));
        assert_eq!(parse("@monthly").next_after(t), Some(utc(2025, 7, 1, 0, 0)));
        assert_eq!(parse("@yearly").next_after(t), Some(utc(2026, 1, 1, 0, 0)));
        assert_eq!(parse("@Annually").next_after(t), Some(utc(2026, 1, 1, 0, 0)));
    }

    #[test]
    fn malformed_expressions_say_what_is_wrong() {
        let (field, reason) = error("61 * * * *", "");
        assert_eq!(field, FIELD);
        assert_eq!(
            reason,
            "'61 * * * *': minute 61 is out of range 0-59; use five fields: minute hour day-of-month month day-of-week"
        );
        assert!(error("* 24 * * *", "").1.contains("hour 24 is out of range 0-23"));
        assert!(error("* * 0 * *", "").1.contains("day-of-month 0 is out of range 1-31"));
        assert!(error("* * * 13 *", "").1.contains("month 13 is out of range 1-12"));
        assert!(error("* * * * 8", "").1.contains("day-of-week 8 is out of range 0-7"));
        assert!(error("* * * FOO *", "").1.contains("month 'FOO' is not a number 1-12 or a name (JAN-DEC)"));
        assert!(error("* * * * *  *", "").1.contains("6 fields (seconds are not supported)"));
        assert!(error("* * *", "").1.starts_with("'* * *' has 3 fields; use five fields"));
        assert!(error("", "").1.starts_with("is required"));
        assert!(error("@every5m", "").1.contains("not a known alias"));
        assert!(error("*/0 * * * *", "").1.contains("step 0 must be at least 1"));
        assert!(error("*/x * * * *", "").1.contains("step 'x' is not a whole number"));
        assert!(error("5/10 * * * *", "").1.contains("write 5-59/10 or */10"));
        assert!(error("30-10 * * * *", "").1.contains("runs backwards"));
        assert!(error("1,,2 * * * *", "").1.contains("empty list item"));
        assert!(error("0 0 30 2 *", "").1.contains("day-of-month 30 never occurs in month 2"));
        assert!(error("*/90 * * * *", "").1.contains("step 90 is larger than the range 0-59"));
    }

    #[test]
    fn croner_extensions_in_day_fields() {
        // The last day of the month.
        assert_eq!(parse("0 0 L * *").next_after(utc(2025, 2, 3, 0, 0)), Some(utc(2025, 2, 28, 0, 0)));
        // The second Friday.
        assert_eq!(parse("0 0 * * 5#2").next_after(utc(2025, 6, 1, 0, 0)), Some(utc(2025, 6, 13, 0, 0)));
    }

    #[test]
    fn unknown_time_zones_are_named_on_the_timezone_field() {
        let (field, reason) = error("0 3 * * *", "Europe/Paaris");
        assert_eq!(field, "policy.triggers[1].schedule.timezone");
        assert!(reason.contains("unknown time zone 'Europe/Paaris'"), "{reason}");
        match Schedule::parse("cron", "0 3 * * *", "Mars/Olympus").unwrap_err() {
            DriftError::Invalid { field, .. } => assert_eq!(field, "timezone"),
            other => panic!("{other:?}"),
        }
        assert_eq!(Schedule::parse(FIELD, "@daily", "").unwrap().timezone(), "UTC");
    }

    #[test]
    fn daylight_saving_time_in_a_zone() {
        let s = Schedule::parse(FIELD, "0 9 * * *", "Europe/Berlin").unwrap();
        // CET (UTC+1) before 2025-03-30, CEST (UTC+2) after.
        assert_eq!(s.next_after(utc(2025, 3, 29, 12, 0)), Some(utc(2025, 3, 30, 7, 0)));
        assert_eq!(s.next_after(utc(2025, 3, 28, 12, 0)), Some(utc(2025, 3, 29, 8, 0)));
        // Back to CET on 2025-10-26.
        assert_eq!(s.next_after(utc(2025, 10, 25, 12, 0)), Some(utc(2025, 10, 26, 8, 0)));

        // 02:30 does not exist on 2025-03-09 in New York (02:00 → 03:00):
        // the tick runs at the first instant after the gap, 03:00 EDT.
        let s = Schedule::parse(FIELD, "30 2 * * *", "America/New_York").unwrap();
        assert_eq!(s.next_after(utc(2025, 3, 8, 12, 0)), Some(utc(2025, 3, 9, 7, 0)));
        assert_eq!(s.next_after(utc(2025, 3, 9, 12, 0)), Some(utc(2025, 3, 10, 6, 30)));
        // 01:30 happens twice on 2025-11-02 (EDT then EST): it runs once, at
        // the first (05:30 UTC), and next on the 3rd at 06:30 UTC.
        let s = Schedule::parse(FIELD, "30 1 * * *", "America/New_York").unwrap();
        assert_eq!(s.next_after(utc(2025, 11, 1, 12, 0)), Some(utc(2025, 11, 2, 5, 30)));
        assert_eq!(s.next_after(utc(2025, 11, 2, 5, 30)), Some(utc(2025, 11, 3, 6, 30)));
        assert_eq!(s.fired_between(utc(2025, 11, 2, 5, 30), utc(2025, 11, 2, 7, 0)), None);
    }

    #[test]
    fn fired_between_gives_the_latest_tick() {
        let s = parse("0 * * * *");
        assert_eq!(s.fired_between(utc(2025, 6, 6, 10, 0), utc(2025, 6, 6, 10, 59)), None);
        // The end is inclusive, the start exclusive.
        assert_eq!(s.fired_between(utc(2025, 6, 6, 10, 0), utc(2025, 6, 6, 11, 0)), Some(utc(2025, 6, 6, 11, 0)));
        assert_eq!(s.fired_between(utc(2025, 6, 6, 11, 0), utc(2025, 6, 6, 11, 30)), None);
        // Several ticks passed: the latest.
        assert_eq!(s.fired_between(utc(2025, 6, 6, 1, 5), utc(2025, 6, 6, 13, 20)), Some(utc(2025, 6, 6, 13, 0)));
        assert_eq!(s.fired_between(utc(2025, 6, 6, 13, 20), utc(2025, 6, 6, 1, 5)), None);
        let d = Schedule::parse(FIELD, "@daily", "Europe/Berlin").unwrap();
        // Midnight in Berlin is 22:00 UTC in summer.
        assert_eq!(d.fired_between(utc(2025, 6, 1, 0, 0), utc(2025, 6, 3, 23, 0)), Some(utc(2025, 6, 3, 22, 0)));
        assert_eq!(d.fired_between(utc(2025, 6, 3, 22, 0), utc(2025, 6, 4, 21, 59)), None);
    }
}
