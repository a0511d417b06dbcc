//! Go duration strings (`30s`, `1m30s`, `500ms`) as the CRD accepts them, parsed into [`std::time::Duration`].
//!
//! The accepted language is the one of the CRD's CEL rule [`crate::crd::cel::GO_DURATION_REGEX`]: one or
//! more `<digits>[.<digits>]<unit>` groups with unit `ns`, `us`, `µs`, `μs`, `ms`, `s`, `m` or `h`,
//! no sign, no spaces. Go's `time.ParseDuration` accepts a superset (signs, bare `0`, `.5s`).

use std::fmt;
use std::time::Duration;

/// Why a string is not an accepted duration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    /// The string is empty.
    Empty,
    /// The string is not a sequence of `<number><unit>` groups.
    Malformed(String),
    /// The duration does not fit a `Duration`.
    Overflow(String),
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty duration"),
            Self::Malformed(s) => {
                write!(f, "invalid duration {s:?}: expected a Go duration such as 30s, 1m30s or 500ms")
            }
            Self::Overflow(s) => write!(f, "duration {s:?} is too large"),
        }
    }
}

impl std::error::Error for DurationError {}

/// Parses a Go duration string in the format the CRD accepts (see the module doc).
///
/// `"0s"` parses to zero; callers that need a positive value check it (the CRD rejects zero intervals).
pub fn parse_go_duration(s: &str) -> Result<Duration, DurationError> {
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let malformed = || DurationError::Malformed(s.to_owned());
    let overflow = || DurationError::Overflow(s.to_owned());
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        if int_len == 0 {
            return Err(malformed());
        }
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(after_dot) => {
                let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                if frac_len == 0 {
                    return Err(malformed());
                }
                after_dot.split_at(frac_len)
            }
            None => ("", after),
        };
        let (unit_nanos, unit_len) = unit(after).ok_or_else(malformed)?;
        rest = &after[unit_len..];

        let int: u128 = int_part.parse().map_err(|_| overflow())?;
        let mut nanos = int.checked_mul(unit_nanos).ok_or_else(overflow)?;
        // Fraction: keep at most 18 digits (nanosecond precision for any unit, no overflow).
        let frac_digits = &frac_part[..frac_part.len().min(18)];
        if !frac_digits.is_empty() {
            let frac: u128 = frac_digits.parse().map_err(|_| overflow())?;
            let scale = 10u128.pow(frac_digits.len() as u32);
            nanos =
                nanos.checked_add(frac.checked_mul(unit_nanos).ok_or_else(overflow)? / scale).ok_or_else(overflow)?;
        }
        total = total.checked_add(nanos).ok_or_else(overflow)?;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| overflow())?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// The unit at the start of `s`: (nanoseconds per unit, length in bytes).
fn unit(s: &str) -> Option<(u128, usize)> {
    const UNITS: [(&str, u128); 8] = [
        ("ns", 1),
        ("us", 1_000),
        ("µs", 1_000),
        ("μs", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];
    // Two-letter units first, so "ms" is not read as "m" followed by garbage.
    UNITS
        .iter()
        .filter(|(name, _)| s.starts_with(name))
        .max_by_key(|(name, _)| name.len())
        .map(|(name, nanos)| (*nanos, name.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted() {
        let ms = Duration::from_millis;
        assert_eq!(parse_go_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("168h"), Ok(Duration::from_secs(168 * 3600)));
        assert_eq!(parse_go_duration("2us"), Ok(Duration::from_nanos(2000)));
        assert_eq!(parse_go_duration("2µs"), Ok(Duration::from_nanos(2000)));
        assert_eq!(parse_go_duration("1h2m3s4ms5us6ns"), Ok(Duration::new(3723, 4_005_006)));
        assert_eq!(parse_go_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn refused() {
        for bad in ["", "abc", "-5s", "+5s", "5", "5 s", "s", "1.s", ".5s", "5d", "5S", "1m 30s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(matches!(
            parse_go_duration("99999999999999999999999999999999999999999h"),
            Err(DurationError::Overflow(_))
        ));
    }
}
