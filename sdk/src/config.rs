//! Helpers for parsing framing configs and backend option values the way
//! websocksy's plugins do.
//!
//! ```
//! use websocksy_plugin::config::{options, parse_uint};
//!
//! assert_eq!(parse_uint("0x10"), Ok(16));
//! let opts: Vec<_> = options("offset=2, endian=big").collect::<Result<_, _>>().unwrap();
//! assert_eq!(opts, [("offset", "2"), ("endian", "big")]);
//! ```

/// An unsigned integer as C's `strtoul(s, NULL, 0)` reads one: decimal,
/// `0x`/`0X` hexadecimal, or octal with a leading `0`; surrounding
/// whitespace and a leading `+` are allowed. Unlike `strtoul`, the whole
/// string must be the number (`"4abc"` and `""` are errors, not 4 and 0),
/// and a value that does not fit is an error, not `ULONG_MAX`.
pub fn parse_uint(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.strip_prefix('+').unwrap_or(t);
    let (radix, body) = if let Some(h) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        (16, h)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    // from_str_radix accepts its own sign; we took ours already.
    if body.is_empty() || body.starts_with(['+', '-']) {
        return Err(format!("{s:?} is not a number"));
    }
    u64::from_str_radix(body, radix).map_err(|e| match e.kind() {
        std::num::IntErrorKind::PosOverflow => format!("{s:?} is too large"),
        _ => format!("{s:?} is not a number"),
    })
}

/// A signed integer: an optional `-` or `+`, then [`parse_uint`]'s forms.
pub fn parse_int(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let (negative, rest) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t),
    };
    if rest.starts_with(['+', '-']) && negative {
        return Err(format!("{s:?} is not a number"));
    }
    let magnitude = parse_uint(rest).map_err(|_| format!("{s:?} is not a number"))?;
    let value = if negative {
        -i128::from(magnitude)
    } else {
        i128::from(magnitude)
    };
    i64::try_from(value).map_err(|_| format!("{s:?} is out of range"))
}

/// `yes`/`true`/`on`/`1` or `no`/`false`/`off`/`0` (ASCII case-insensitive).
pub fn parse_bool(s: &str) -> Result<bool, String> {
    let t = s.trim();
    for (words, value) in [
        (["yes", "true", "on", "1"], true),
        (["no", "false", "off", "0"], false),
    ] {
        if words.iter().any(|w| w.eq_ignore_ascii_case(t)) {
            return Ok(value);
        }
    }
    Err(format!("{s:?} is not yes or no"))
}

/// Split a config of comma-separated `key=value` items. Keys and values are
/// trimmed of whitespace; empty items (`a=1,,b=2`, a trailing comma) are
/// skipped; an item without `=` is an error.
pub fn options(config: &str) -> impl Iterator<Item = Result<(&str, &str), String>> {
    config
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| match item.split_once('=') {
            Some((k, v)) => Ok((k.trim(), v.trim())),
            None => Err(format!("expected key=value, got {item:?}")),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint_forms() {
        assert_eq!(parse_uint("4"), Ok(4));
        assert_eq!(parse_uint(" 4 "), Ok(4));
        assert_eq!(parse_uint("+4"), Ok(4));
        assert_eq!(parse_uint("0x3"), Ok(3));
        assert_eq!(parse_uint("0XfF"), Ok(255));
        assert_eq!(parse_uint("010"), Ok(8));
        assert_eq!(parse_uint("0"), Ok(0));
        assert_eq!(parse_uint("18446744073709551615"), Ok(u64::MAX));
        for bad in [
            "", " ", "0x", "08", "4abc", "-1", "+-1", "0x-1", "++1", "1.5",
        ] {
            assert!(parse_uint(bad).is_err(), "{bad:?}");
        }
        assert!(parse_uint("18446744073709551616")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn int_forms() {
        assert_eq!(parse_int("-4"), Ok(-4));
        assert_eq!(parse_int("-0x10"), Ok(-16));
        assert_eq!(parse_int("+7"), Ok(7));
        assert_eq!(parse_int("-9223372036854775808"), Ok(i64::MIN));
        assert!(parse_int("9223372036854775808").is_err());
        assert!(parse_int("--1").is_err());
        assert!(parse_int("-+1").is_err());
    }

    #[test]
    fn bools() {
        assert_eq!(parse_bool("YES"), Ok(true));
        assert_eq!(parse_bool("off"), Ok(false));
        assert!(parse_bool("maybe").is_err());
    }

    #[test]
    fn option_lists() {
        let v: Vec<_> = options(" a = 1 ,,b=2,").collect();
        assert_eq!(v, [Ok(("a", "1")), Ok(("b", "2"))]);
        assert_eq!(options("").count(), 0);
        assert!(options("a=1,b").nth(1).unwrap().is_err());
        assert_eq!(options("a=x=y").next(), Some(Ok(("a", "x=y"))));
    }
}
