//! Durations on the command line: one parser for every duration flag and environment variable.
//!
//! A duration is a number with a unit — `500ms`, `30s`, `5m`, `1h`, `2d` — or several of them
//! run together (`1m30s`); a number may have a fraction (`1.5s`). A bare number is read in the
//! unit the flag counted in before it took units (seconds for most, milliseconds for the former
//! `*-ms` flags), so Helm values and env files written for older releases keep their meaning.
//!
//! [`DurationParser`] is the clap value parser: it also enforces each flag's bounds, so a value
//! out of range is refused with an error naming the flag instead of being silently adjusted.

use std::ffi::OsStr;
use std::fmt;
use std::time::Duration;

/// How a number without a unit is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareUnit {
    Seconds,
    Millis,
}

impl BareUnit {
    fn nanos(self) -> u128 {
        match self {
            Self::Seconds => NANOS_PER_SEC,
            Self::Millis => NANOS_PER_MILLI,
        }
    }
}

const NANOS_PER_MILLI: u128 = 1_000_000;
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Why a value is not an acceptable duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("expected a duration such as 30s, 5m or 500ms, got an empty value")]
    Empty,
    #[error("{0:?} is not a duration; expected a number with a unit such as 30s, 5m or 500ms")]
    Malformed(String),
    #[error("unknown unit {unit:?} in {value:?}; the units are ms, s, m, h and d")]
    UnknownUnit { unit: String, value: String },
    #[error("{0:?} is too long a duration")]
    Overflow(String),
    #[error("must be more than zero")]
    Zero,
    #[error("{value} is shorter than the least allowed, {min}")]
    TooShort { value: Shown, min: Shown },
    #[error("{value} is longer than the most allowed, {max}")]
    TooLong { value: Shown, max: Shown },
    #[error("{0} is not a whole number of seconds")]
    NotWholeSeconds(Shown),
}

/// A duration written the way the parser reads it (`90s`, `1500ms`, `24h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown(pub Duration);

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let secs = d.as_secs();
        if d.subsec_nanos() == 0 {
            match secs {
                0 => f.write_str("0s"),
                s if s.is_multiple_of(86_400) => write!(f, "{}d", s / 86_400),
                s if s.is_multiple_of(3600) => write!(f, "{}h", s / 3600),
                s if s.is_multiple_of(60) => write!(f, "{}m", s / 60),
                s => write!(f, "{s}s"),
            }
        } else if d.subsec_nanos().is_multiple_of(1_000_000) {
            write!(f, "{}ms", d.as_millis())
        } else {
            write!(f, "{d:?}")
        }
    }
}

/// Reads `value` as a duration, a bare number counting in `bare` units.
pub fn parse(value: &str, bare: BareUnit) -> Result<Duration, DurationError> {
    let text = value.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let malformed = || DurationError::Malformed(value.to_owned());
    let overflow = || DurationError::Overflow(value.to_owned());
    let mut rest = text;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos = match unit.trim() {
            "" if number_len == text.len() => bare.nanos(),
            "" => return Err(malformed()),
            "ms" => NANOS_PER_MILLI,
            "s" => NANOS_PER_SEC,
            "m" => 60 * NANOS_PER_SEC,
            "h" => 3600 * NANOS_PER_SEC,
            "d" => 86_400 * NANOS_PER_SEC,
            other => {
                return Err(DurationError::UnknownUnit {
                    unit: other.to_owned(),
                    value: value.to_owned(),
                });
            }
        };
        let part = scaled(number, unit_nanos).ok_or_else(malformed)?;
        total = total
            .checked_add(part.ok_or_else(overflow)?)
            .ok_or_else(overflow)?;
        rest = after;
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| overflow())?;
    let nanos = u32::try_from(total % NANOS_PER_SEC).expect("a remainder of 1e9 fits in u32");
    Ok(Duration::new(secs, nanos))
}

/// `number` (digits with at most one `.`) times `unit_nanos`, rounded down to whole
/// nanoseconds. `None` if it is not a number; `Some(None)` if it overflows.
fn scaled(number: &str, unit_nanos: u128) -> Option<Option<u128>> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return None;
    }
    let whole: Option<u128> = if whole.is_empty() {
        Some(0)
    } else {
        whole.parse().ok()
    };
    let mut nanos = whole.and_then(|w| w.checked_mul(unit_nanos));
    // A fraction only ever adds less than one unit; digits past nanosecond precision are dropped.
    let mut scale = unit_nanos;
    for digit in fraction.bytes() {
        scale /= 10;
        if scale == 0 {
            break;
        }
        nanos = nanos.and_then(|n| n.checked_add(u128::from(digit - b'0') * scale));
    }
    Some(nanos)
}

/// The clap value parser for one duration flag: how bare numbers read, and its bounds.
#[derive(Debug, Clone, Copy)]
pub struct DurationParser {
    bare: BareUnit,
    min: Duration,
    max: Duration,
    whole_seconds: bool,
}

/// The longest any duration flag accepts unless it says otherwise: a year. Longer values are
/// typos, and some would overflow the clocks they are added to.
pub const DEFAULT_MAX: Duration = Duration::from_secs(365 * 86_400);

impl DurationParser {
    /// A positive duration of at most [`DEFAULT_MAX`], a bare number counting seconds.
    pub const fn secs() -> Self {
        Self {
            bare: BareUnit::Seconds,
            min: Duration::ZERO,
            max: DEFAULT_MAX,
            whole_seconds: false,
        }
    }

    /// A positive duration of at most [`DEFAULT_MAX`], a bare number counting milliseconds.
    pub const fn millis() -> Self {
        Self {
            bare: BareUnit::Millis,
            ..Self::secs()
        }
    }

    /// Refuses values shorter than `min`.
    pub const fn at_least(self, min: Duration) -> Self {
        Self { min, ..self }
    }

    /// Refuses values longer than `max`.
    pub const fn at_most(self, max: Duration) -> Self {
        Self { max, ..self }
    }

    /// Refuses fractions of a second (for values that travel as whole seconds).
    pub const fn whole_seconds(self) -> Self {
        Self {
            whole_seconds: true,
            ..self
        }
    }

    /// Parses and checks one value.
    pub fn parse(&self, value: &str) -> Result<Duration, DurationError> {
        let d = parse(value, self.bare)?;
        if d.is_zero() {
            return Err(DurationError::Zero);
        }
        if d < self.min {
            return Err(DurationError::TooShort {
                value: Shown(d),
                min: Shown(self.min),
            });
        }
        if d > self.max {
            return Err(DurationError::TooLong {
                value: Shown(d),
                max: Shown(self.max),
            });
        }
        if self.whole_seconds && d.subsec_nanos() != 0 {
            return Err(DurationError::NotWholeSeconds(Shown(d)));
        }
        Ok(d)
    }
}

impl clap::builder::TypedValueParser for DurationParser {
    type Value = Duration;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<Duration, clap::Error> {
        // clap's own adapter for `Fn(&str) -> Result` writes the error naming the flag.
        let this = *self;
        let parse = move |s: &str| this.parse(s);
        clap::builder::TypedValueParser::parse_ref(&parse, cmd, arg, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: BareUnit = BareUnit::Seconds;
    const MS: BareUnit = BareUnit::Millis;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn every_unit_reads() {
        assert_eq!(parse("500ms", S), Ok(ms(500)));
        assert_eq!(parse("30s", S), Ok(ms(30_000)));
        assert_eq!(parse("5m", S), Ok(ms(300_000)));
        assert_eq!(parse("1h", S), Ok(ms(3_600_000)));
        assert_eq!(parse("2d", S), Ok(ms(172_800_000)));
        assert_eq!(parse("1m30s", S), Ok(ms(90_000)));
        assert_eq!(parse("1h 30m", S), Ok(ms(5_400_000)));
        assert_eq!(parse("1.5s", S), Ok(ms(1_500)));
        assert_eq!(parse(".25s", S), Ok(ms(250)));
        assert_eq!(parse(" 10s ", S), Ok(ms(10_000)), "surrounding blanks");
    }

    #[test]
    fn a_bare_number_keeps_the_flags_old_unit() {
        assert_eq!(parse("15", S), Ok(ms(15_000)), "a former *-secs flag");
        assert_eq!(parse("250", MS), Ok(ms(250)), "a former *-ms flag");
        assert_eq!(parse("0.5", S), Ok(ms(500)));
        // A unit always wins over the flag's bare unit.
        assert_eq!(parse("2s", MS), Ok(ms(2_000)));
        assert_eq!(parse("2ms", S), Ok(ms(2)));
    }

    #[test]
    fn malformed_values_are_refused() {
        assert_eq!(parse("", S), Err(DurationError::Empty));
        for bad in ["s", "ms", "-5s", "1.2.3s", "abc", "5 s 3", "1m30", "."] {
            assert!(
                matches!(
                    parse(bad, S),
                    Err(DurationError::Malformed(_) | DurationError::UnknownUnit { .. })
                ),
                "{bad:?} gave {:?}",
                parse(bad, S)
            );
        }
        assert_eq!(
            parse("5min", S),
            Err(DurationError::UnknownUnit {
                unit: "min".into(),
                value: "5min".into()
            })
        );
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        let huge = format!("{}s", u128::from(u64::MAX) + 1);
        assert_eq!(
            parse(&huge, S).map_err(|e| e.to_string()),
            Err(format!("{huge:?} is too long a duration"))
        );
        assert!(matches!(
            parse(&format!("{}h", u64::MAX), S),
            Err(DurationError::Overflow(_))
        ));
        let digits = "9".repeat(60);
        assert!(matches!(parse(&digits, S), Err(DurationError::Overflow(_))));
        // The largest value a Duration holds still parses; the flags' bounds refuse it.
        assert_eq!(
            parse(&format!("{}s", u64::MAX), S),
            Ok(Duration::from_secs(u64::MAX))
        );
        assert!(
            DurationParser::secs()
                .parse(&format!("{}s", u64::MAX))
                .is_err()
        );
    }

    #[test]
    fn the_flag_parser_enforces_its_bounds() {
        let p = DurationParser::secs()
            .at_least(Duration::from_secs(3))
            .at_most(Duration::from_secs(600))
            .whole_seconds();
        assert_eq!(p.parse("15"), Ok(Duration::from_secs(15)));
        assert_eq!(p.parse("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(p.parse("0"), Err(DurationError::Zero));
        assert_eq!(
            p.parse("2s").map_err(|e| e.to_string()),
            Err("2s is shorter than the least allowed, 3s".into())
        );
        assert_eq!(
            p.parse("11m").map_err(|e| e.to_string()),
            Err("11m is longer than the most allowed, 10m".into())
        );
        assert_eq!(
            p.parse("3500ms").map_err(|e| e.to_string()),
            Err("3500ms is not a whole number of seconds".into())
        );
        assert!(DurationParser::millis().parse("400d").is_err());
    }

    #[test]
    fn shown_durations_read_back() {
        for d in [
            ms(500),
            ms(1_500),
            ms(90_000),
            ms(3_600_000),
            ms(86_400_000),
        ] {
            assert_eq!(parse(&Shown(d).to_string(), S), Ok(d));
        }
        assert_eq!(Shown(ms(90_000)).to_string(), "90s");
    }
}
