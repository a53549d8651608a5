//! Durations written the way the fork reads them: Go's `time.ParseDuration` syntax with a unit on
//! every number (`45s`, `11m`, `1h30m`, `500ms`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration that keeps the text it was written as, so rendered files show the user's spelling.
///
/// Only forms that Go's `time.ParseDuration` also accepts are allowed, and every number needs a
/// unit: a bare `30` is rejected, because the fork would silently fall back to its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoDuration {
    text: String,
    value: Duration,
}

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// The text was empty.
    #[error("empty duration: write a number with a unit, such as `45s`, `11m` or `1h30m`")]
    Empty,
    /// A number without a unit, such as `30`.
    #[error("`{0}` has no unit: write it with one of ns, us, ms, s, m, h (for example `{0}s`)")]
    MissingUnit(String),
    /// An unknown unit, such as `30d`.
    #[error(
        "`{text}` has the unknown unit `{unit}`: use ns, us, ms, s, m or h (for example `24h` for a day)"
    )]
    UnknownUnit {
        /// The whole text.
        text: String,
        /// The unit that was not recognised.
        unit: String,
    },
    /// Anything else that is not a duration.
    #[error("`{0}` is not a duration: write a number with a unit, such as `45s`, `11m` or `1h30m`")]
    Malformed(String),
}

impl GoDuration {
    /// The parsed value.
    #[must_use]
    pub fn get(&self) -> Duration {
        self.value
    }

    /// The text as written (what the renderers emit).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// A duration from a whole number of seconds, written as Go would read it back (`45s`).
    #[must_use]
    pub fn from_secs(secs: u64) -> Self {
        Self { text: format!("{secs}s"), value: Duration::from_secs(secs) }
    }

    /// Whole hours, rounded up, written as `<n>h` (Mimir and Prometheus accept it too).
    #[must_use]
    pub fn as_hours_ceil(&self) -> String {
        let secs = self.value.as_secs() + u64::from(self.value.subsec_nanos() > 0);
        format!("{}h", secs.div_ceil(3600))
    }
}

impl FromStr for GoDuration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(DurationError::Empty);
        }
        if trimmed == "0" {
            // Go accepts a bare zero; it needs no unit to be unambiguous.
            return Ok(Self { text: trimmed.to_owned(), value: Duration::ZERO });
        }
        let mut rest = trimmed;
        let mut total = Duration::ZERO;
        while !rest.is_empty() {
            let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
            if number_len == 0 {
                return Err(DurationError::Malformed(trimmed.to_owned()));
            }
            let number: f64 =
                rest[..number_len].parse().map_err(|_| DurationError::Malformed(trimmed.to_owned()))?;
            rest = &rest[number_len..];
            let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let nanos_per_unit: f64 = match unit {
                "" => return Err(DurationError::MissingUnit(trimmed.to_owned())),
                "ns" => 1.0,
                "us" | "µs" | "μs" => 1e3,
                "ms" => 1e6,
                "s" => 1e9,
                "m" => 60e9,
                "h" => 3600e9,
                other => {
                    return Err(DurationError::UnknownUnit {
                        text: trimmed.to_owned(),
                        unit: other.to_owned(),
                    });
                }
            };
            let nanos = number * nanos_per_unit;
            // Go caps durations at about 292 years; anything near that is a typo here.
            if !nanos.is_finite() || nanos > 1e18 {
                return Err(DurationError::Malformed(trimmed.to_owned()));
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let nanos = nanos.round() as u64;
            total += Duration::from_nanos(nanos);
        }
        Ok(Self { text: trimmed.to_owned(), value: total })
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Shorthand for the model's defaults; the literals are known to parse.
pub(crate) fn dur(text: &str) -> GoDuration {
    text.parse().expect("built-in default durations parse")
}

/// Formats a duration for humans in messages (`1h0m0s` style is Go's; this is shorter).
pub(crate) fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 || secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_forms() {
        for (text, secs) in
            [("45s", 45.0), ("11m", 660.0), ("1h30m", 5400.0), ("500ms", 0.5), ("1.5h", 5400.0)]
        {
            let d: GoDuration = text.parse().unwrap();
            assert!((d.get().as_secs_f64() - secs).abs() < 1e-9, "{text}");
            assert_eq!(d.as_str(), text);
        }
        assert_eq!("0".parse::<GoDuration>().unwrap().get(), Duration::ZERO);
    }

    #[test]
    fn rejects_missing_or_unknown_units() {
        assert!(matches!("30".parse::<GoDuration>(), Err(DurationError::MissingUnit(_))));
        assert!(matches!("1h30".parse::<GoDuration>(), Err(DurationError::MissingUnit(_))));
        assert!(matches!("7d".parse::<GoDuration>(), Err(DurationError::UnknownUnit { .. })));
        assert!(matches!("".parse::<GoDuration>(), Err(DurationError::Empty)));
        assert!(matches!("s".parse::<GoDuration>(), Err(DurationError::Malformed(_))));
        assert!(matches!("-5s".parse::<GoDuration>(), Err(DurationError::Malformed(_))));
    }

    #[test]
    fn hours_round_up() {
        assert_eq!(dur("168h").as_hours_ceil(), "168h");
        assert_eq!(dur("90m").as_hours_ceil(), "2h");
        assert_eq!(human(dur("1h30m").get()), "1h30m");
    }
}
