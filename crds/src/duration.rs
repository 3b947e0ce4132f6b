//! Durations as the spec writes them: plain seconds (`900`) or a number with one unit,
//! `s`, `m`, `h` or `d` (`90s`, `15m`, `1h`, `14d`). The CRD schema checks the shape with
//! a pattern; [`parse`] gives the value and catches what a pattern cannot (overflow).

use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a duration: use seconds (900) or a number with a unit s, m, h or d (15m, 14d)"
)]
pub struct InvalidDuration(pub String);

/// Parses `900`, `90s`, `15m`, `1h` or `14d`.
pub fn parse(s: &str) -> Result<Duration, InvalidDuration> {
    let invalid = || InvalidDuration(s.to_owned());
    let (digits, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let n: u64 = digits.parse().map_err(|_| invalid())?;
    let factor = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return Err(invalid()),
    };
    n.checked_mul(factor)
        .map(Duration::from_secs)
        .ok_or_else(invalid)
}

/// Formats a duration the way [`parse`] reads it, in the largest exact unit.
pub fn format(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".to_owned(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_seconds_and_units() {
        assert_eq!(parse("900"), Ok(Duration::from_secs(900)));
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3_600)));
        assert_eq!(parse("14d"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            "s",
            "1.5h",
            "-1",
            "1w",
            "1 h",
            "1hm",
            "h1",
            "99999999999999999999",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn format_round_trips() {
        for s in ["0s", "45s", "15m", "1h", "14d", "90m"] {
            assert_eq!(format(parse(s).expect(s)), s);
        }
    }
}
