//! Durations as etcd's flags take them (Go's `time.ParseDuration`): a
//! sequence of decimal numbers, each with a unit (`ns`, `us`, `µs`, `ms`,
//! `s`, `m`, `h`), such as `10m`, `1h30m`, `1.5s` or `10m0s`; `0` alone
//! needs no unit.

use std::time::Duration;

/// The longest duration a flag takes (about 31 years), far past any use,
/// so that arithmetic on it cannot overflow.
const LONGEST_SECONDS: f64 = 1e9;

/// Parses `text`; the error says why it is not a duration.
pub fn parse(text: &str) -> Result<Duration, String> {
    let invalid = |why: &str| format!("{text:?} is not a duration ({why}; e.g. 10m, 1h30m, 1.5s)");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(invalid("empty"));
    }
    let mut rest = text;
    let mut seconds = 0.0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| invalid("a number without a unit"))?;
        let (number, after) = rest.split_at(number_end);
        let number: f64 = number.parse().map_err(|_| invalid("not a number"))?;
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid(&format!("unknown unit {unit:?}"))),
        };
        seconds += number * scale;
        rest = after;
    }
    if !(0.0..=LONGEST_SECONDS).contains(&seconds) {
        return Err(invalid("out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_with_every_unit_and_in_sequence() {
        let cases = [
            ("0", Duration::ZERO),
            ("10m", Duration::from_secs(600)),
            ("10m0s", Duration::from_secs(600)),
            ("1h30m", Duration::from_secs(5400)),
            ("1.5s", Duration::from_millis(1500)),
            ("250ms", Duration::from_millis(250)),
            ("7us", Duration::from_micros(7)),
            ("3ns", Duration::from_nanos(3)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn what_is_not_a_duration_is_refused_with_the_reason() {
        for (text, reason) in [
            ("", "empty"),
            ("10", "a number without a unit"),
            ("5d", "unknown unit \"d\""),
            ("m", "not a number"),
            ("1.2.3s", "not a number"),
            ("99999999999h", "out of range"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(reason), "{text}: {error}");
        }
    }
}
