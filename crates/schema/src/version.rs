//! Schema versions (`1.0`, `1.1`), compared the way the server compares them (semver-tolerant).

use std::fmt;
use std::str::FromStr;

/// A schema version such as `1.1`; a leading `v` and a missing minor or patch are tolerated,
/// as Temporal's `semver.ParseTolerant` does, so `v1.1`, `1.1` and `1.1.0` are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SchemaVersion {
    /// Major part.
    pub major: u32,
    /// Minor part.
    pub minor: u32,
    /// Patch part.
    pub patch: u32,
}

impl SchemaVersion {
    /// A version from its parts.
    #[must_use]
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self { major, minor, patch }
    }
}

/// A version string that is not a version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a schema version (expected something like 1.1)")]
pub struct BadVersion(pub String);

impl FromStr for SchemaVersion {
    type Err = BadVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        let digits = trimmed.strip_prefix(['v', 'V']).unwrap_or(trimmed);
        let parts: Vec<&str> = digits.split('.').collect();
        if parts.is_empty() || parts.len() > 3 {
            return Err(BadVersion(s.to_owned()));
        }
        let mut numbers = [0_u32; 3];
        for (slot, part) in numbers.iter_mut().zip(&parts) {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(BadVersion(s.to_owned()));
            }
            *slot = part.parse().map_err(|_| BadVersion(s.to_owned()))?;
        }
        Ok(Self::new(numbers[0], numbers[1], numbers[2]))
    }
}

impl fmt::Display for SchemaVersion {
    /// `1.1` (the way manifests and the version table spell it); the patch only when non-zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.patch == 0 {
            write!(f, "{}.{}", self.major, self.minor)
        } else {
            write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tolerantly_and_orders_numerically() {
        let v = |s: &str| s.parse::<SchemaVersion>().unwrap();
        assert_eq!(v("v1.1"), v("1.1.0"));
        assert_eq!(v("1"), SchemaVersion::new(1, 0, 0));
        assert!(v("1.10") > v("1.9"));
        assert_eq!(v("1.1").to_string(), "1.1");
        assert_eq!(v("1.2.3").to_string(), "1.2.3");
        for bad in ["", "1.x", "1..2", "1.2.3.4", "one"] {
            assert!(bad.parse::<SchemaVersion>().is_err(), "{bad}");
        }
    }
}
