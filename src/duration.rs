//! Human durations such as `7d`, `36h`, `1d12h`, `90m`, `3600s`, `2w`.

use std::fmt;
use std::time::Duration;

/// Why a duration text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("is empty; expected a duration such as 7d, 36h, 90m or 3600s")]
    Empty,
    #[error(
        "{0:?} is not a duration; expected numbers with units s, m, h, d or w (e.g. 7d, 1d12h)"
    )]
    Malformed(String),
    #[error("{0:?} must be greater than zero")]
    Zero(String),
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// Parses `<number><unit>` groups; units: s, m, h, d, w.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(DurationError::Empty);
    }
    let malformed = || DurationError::Malformed(crate::error::echo(trimmed));
    let too_large = || DurationError::TooLarge(crate::error::echo(trimmed));
    let mut total: u64 = 0;
    let mut digits = String::new();
    for ch in trimmed.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let unit: u64 = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(malformed()),
        };
        if digits.is_empty() {
            return Err(malformed());
        }
        let amount: u64 = digits.parse().map_err(|_| too_large())?;
        total = amount
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(too_large)?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(malformed());
    }
    if total == 0 {
        return Err(DurationError::Zero(crate::error::echo(trimmed)));
    }
    // Keep far below i64 epoch overflow: 100 years is more than any link should live.
    if total > 100 * 365 * 86_400 {
        return Err(too_large());
    }
    Ok(Duration::from_secs(total))
}

/// Displays a duration in the same notation, largest units first (`1d12h`).
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut secs = self.0.as_secs();
        if secs == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
            if secs >= size {
                write!(f, "{}{unit}", secs / size)?;
                secs %= size;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_groups() {
        assert_eq!(parse_duration("7d").unwrap().as_secs(), 7 * 86_400);
        assert_eq!(parse_duration("1d12h").unwrap().as_secs(), 36 * 3_600);
        assert_eq!(parse_duration("90m").unwrap().as_secs(), 5_400);
        assert_eq!(parse_duration("2w").unwrap().as_secs(), 14 * 86_400);
        assert_eq!(
            HumanDuration(Duration::from_secs(36 * 3_600)).to_string(),
            "1d12h"
        );
    }

    #[test]
    fn refuses_nonsense() {
        for bad in ["", "7", "d", "7x", "-1d", "1.5h", "7 d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
        }
        assert!(matches!(parse_duration("0s"), Err(DurationError::Zero(_))));
        assert!(matches!(
            parse_duration("99999999999999999999d"),
            Err(DurationError::TooLarge(_))
        ));
    }
}
