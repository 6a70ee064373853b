//! The one duration parser (`90s`, `15m`, `1h30m`, `2d`, as link and share lifetimes, grace periods
//! and timeouts are written everywhere) and the one way a duration is said back (`24 hours`).

/// A malformed or too long duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("'{0}' is not a duration: use numbers with units, like 90s, 15m, 4h, 1h30m or 7d")]
    Malformed(String),
    #[error("'{input}' is longer than the {max} allowed")]
    TooLong { input: String, max: String },
}

/// Parses `90s`, `15m`, `4h`, `1h30m`, `2d` (units `s`, `m`, `h`, `d`, each at most once, largest
/// first) into seconds, refusing zero and anything above `max_secs`.
pub fn parse(input: &str, max_secs: u64) -> Result<u64, DurationError> {
    parse_allowing_zero(input, max_secs).and_then(|secs| match secs {
        0 => Err(DurationError::Malformed(input.to_string())),
        secs => Ok(secs),
    })
}

/// Like [`parse`], and `0` (or `0s`, `0m`...) means zero: "no wait" for grace periods and
/// timeouts.
pub fn parse_allowing_zero(input: &str, max_secs: u64) -> Result<u64, DurationError> {
    let malformed = || DurationError::Malformed(input.to_string());
    let text = input.trim();
    if text == "0" {
        return Ok(0);
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut last_unit = u64::MAX;
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'd' => 86400,
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(malformed()),
        };
        // Each unit once, largest first (`1h30m`, not `30m1h` or `1h1h`).
        if digits.is_empty() || unit >= last_unit {
            return Err(malformed());
        }
        last_unit = unit;
        let count: u64 = digits.parse().map_err(|_| malformed())?;
        total = count.checked_mul(unit).and_then(|s| total.checked_add(s)).ok_or_else(malformed)?;
        digits.clear();
    }
    if !digits.is_empty() || last_unit == u64::MAX {
        return Err(malformed());
    }
    if total > max_secs {
        return Err(DurationError::TooLong { input: input.to_string(), max: describe(max_secs) });
    }
    Ok(total)
}

/// `24 hours`, `90 seconds`, `7 days`, `1 hour`: the largest unit that divides evenly (days from
/// two on, as the product says "24 hours").
pub fn describe(secs: u64) -> String {
    let (count, unit) = if secs.is_multiple_of(86400) && secs >= 2 * 86400 {
        (secs / 86400, "day")
    } else if secs.is_multiple_of(3600) {
        (secs / 3600, "hour")
    } else if secs.is_multiple_of(60) {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    if count == 1 { format!("1 {unit}") } else { format!("{count} {unit}s") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_compound_durations_parse() {
        for (text, secs) in
            [("90s", 90), ("15m", 900), ("4h", 14400), ("7d", 604800), ("1h30m", 5400), ("2d12h", 216000)]
        {
            assert_eq!(parse(text, u64::MAX), Ok(secs), "{text}");
        }
        for bad in ["", "h", "10", "1x", "30m1h", "1h1h", "1.5h", "-1h", "1 h"] {
            assert!(matches!(parse(bad, u64::MAX), Err(DurationError::Malformed(_))), "{bad}");
        }
        assert!(matches!(parse("0s", 10), Err(DurationError::Malformed(_))));
        assert_eq!(parse_allowing_zero("0", 10), Ok(0));
        assert_eq!(parse_allowing_zero("0s", 10), Ok(0));
        assert!(matches!(parse("8d", 7 * 86400), Err(DurationError::TooLong { .. })));
    }

    #[test]
    fn durations_read_back_in_one_unit() {
        assert_eq!(describe(86400), "24 hours");
        assert_eq!(describe(2 * 86400), "2 days");
        assert_eq!(describe(90), "90 seconds");
        assert_eq!(describe(3600), "1 hour");
    }
}
