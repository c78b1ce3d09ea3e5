//! JSON → Cedar values for the decision context (docs/architecture.md §5).
//!
//! Strings and booleans map directly; a number whose exact value is an integer within
//! i64 becomes a Long (so `1.0` and `2e3` are Longs); another number becomes a
//! `decimal` when it is exactly representable with at most four fractional digits within
//! decimal's range, else its JSON text as a String; `null` becomes the empty record;
//! arrays become Sets; objects become records. Values are built as restricted
//! expressions, never parsed from Cedar JSON, so `__entity`/`__extn` keys in arguments
//! stay plain record keys and cannot forge entities.

use cedar_policy::RestrictedExpression;
use serde_json::{Number, Value};

/// Converts one JSON value.
pub fn to_cedar(value: &Value) -> RestrictedExpression {
    match value {
        Value::Null => RestrictedExpression::new_record([])
            .unwrap_or_else(|_| RestrictedExpression::new_bool(false)),
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Number(n) => number(n),
        Value::Array(items) => RestrictedExpression::new_set(items.iter().map(to_cedar)),
        Value::Object(map) => {
            // Keys are unique: the arguments parser refuses duplicates.
            RestrictedExpression::new_record(map.iter().map(|(k, v)| (k.clone(), to_cedar(v))))
                .unwrap_or_else(|_| {
                    RestrictedExpression::new_string(Value::Object(map.clone()).to_string())
                })
        }
    }
}

fn number(n: &Number) -> RestrictedExpression {
    let text = n.to_string();
    match exact_decimal(&text) {
        Some(Exact::Integer(i)) => RestrictedExpression::new_long(i),
        Some(Exact::Decimal(d)) => RestrictedExpression::new_decimal(d),
        None => RestrictedExpression::new_string(text),
    }
}

#[derive(Debug, PartialEq)]
enum Exact {
    Integer(i64),
    Decimal(String),
}

/// The exact value of a JSON number text as an i64 or a Cedar decimal literal.
fn exact_decimal(text: &str) -> Option<Exact> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: String = format!("{int_part}{frac_part}");
    // value = digits × 10^(exponent − len(frac))
    let mut scale = exponent.checked_sub(i64::try_from(frac_part.len()).ok()?)?;
    while scale < 0 && digits.ends_with('0') && digits.len() > 1 {
        digits.pop();
        scale += 1;
    }
    let digits = digits.trim_start_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    if scale >= 0 {
        if scale > 19 || digits.len() as i64 + scale > 20 {
            return None;
        }
        let zeros = "0".repeat(usize::try_from(scale).ok()?);
        let magnitude: i128 = format!("{digits}{zeros}").parse().ok()?;
        let signed = if negative { -magnitude } else { magnitude };
        return i64::try_from(signed).ok().map(Exact::Integer);
    }
    let frac_digits = usize::try_from(-scale).ok()?;
    if frac_digits > 4 {
        return None;
    }
    let padded = format!("{digits:0>width$}", width = frac_digits + 1);
    let (int_digits, frac) = padded.split_at(padded.len() - frac_digits);
    let scaled: i128 = format!("{int_digits}{frac:0<4}").parse().ok()?;
    if scaled > i128::from(i64::MAX) + i128::from(negative) {
        return None;
    }
    let sign = if negative { "-" } else { "" };
    Some(Exact::Decimal(format!("{sign}{int_digits}.{frac}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_mapping() {
        let cases: &[(&str, Option<Exact>)] = &[
            ("0", Some(Exact::Integer(0))),
            ("-12", Some(Exact::Integer(-12))),
            ("1.0", Some(Exact::Integer(1))),
            ("2e3", Some(Exact::Integer(2000))),
            ("1.5", Some(Exact::Decimal("1.5".into()))),
            ("-0.0001", Some(Exact::Decimal("-0.0001".into()))),
            ("12.3400", Some(Exact::Decimal("12.34".into()))),
            ("15e-1", Some(Exact::Decimal("1.5".into()))),
            ("0.00001", None),
            ("9223372036854775807", Some(Exact::Integer(i64::MAX))),
            ("9223372036854775808", None),
            ("1e400", None),
            (
                "922337203685477.5807",
                Some(Exact::Decimal("922337203685477.5807".into())),
            ),
            ("922337203685477.5808", None),
        ];
        for (text, want) in cases {
            assert_eq!(&exact_decimal(text), want, "{text}");
        }
    }
}
