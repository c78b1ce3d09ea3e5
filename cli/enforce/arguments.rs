//! Parses `params.arguments` once, on the std side, for the decision input.
//!
//! A key that appears twice, or two keys that are equal under case folding (after
//! dropping control and invisible format characters), at any depth, make the call
//! invalid: a server on a case-insensitive or last-wins decoder could read other
//! arguments than the policy saw (-32602, never forwarded). So does a number whose
//! exact value is not the one a double-precision reader gets (`500.00000000000000001`
//! is 500 to Python's float and JavaScript, and not to the policy; an integer beyond
//! 2^53 is rounded by JavaScript), and the key serde_json uses internally for exact
//! numbers (`$serde_json::private::Number`), which would otherwise make an object
//! read as a number.

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why arguments were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ArgumentsError(pub String);

/// Parses the raw `arguments` object (already validated by thoth-core).
pub fn parse(raw: &[u8]) -> Result<Value, ArgumentsError> {
    // The private key written plainly is refused before parsing; written with escapes,
    // the visitor below refuses it anywhere but where serde_json itself puts it.
    // (The searcher is built once: building one per call costs more than the search.)
    static TOKEN: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(NUMBER_TOKEN.as_bytes()));
    if TOKEN.find(raw).is_some() {
        return Err(ArgumentsError(format!(
            "the key {NUMBER_TOKEN:?} is reserved"
        )));
    }
    // thoth-core bounds nesting at 64, under serde_json's recursion limit of 128.
    let mut de = serde_json::Deserializer::from_slice(raw);
    let value = Strict::deserialize(&mut de).map_err(|e| ArgumentsError(e.to_string()))?;
    if !value.0.is_object() && raw.first() == Some(&b'{') {
        return Err(ArgumentsError(format!(
            "the key {NUMBER_TOKEN:?} is reserved"
        )));
    }
    Ok(value.0)
}

/// Integers beyond 2^53 are rounded by double-precision decoders (JavaScript).
fn exact_in_a_double<E: de::Error>(magnitude: u64) -> Result<(), E> {
    if magnitude <= 1 << 53 {
        Ok(())
    } else {
        Err(E::custom(format!(
            "the integer {magnitude} is above 2^53, which JavaScript rounds: send it as a string"
        )))
    }
}

/// The key serde_json's `arbitrary_precision` numbers travel under.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Whether every reader gets this number's exact value: its double-precision value
/// (what Python's float, JavaScript and most decoders make of it), written back in
/// shortest form, is the same decimal number as the text.
pub fn same_to_every_reader(text: &str) -> bool {
    let Ok(double) = text.parse::<f64>() else {
        return false;
    };
    double.is_finite() && decimal(text) == decimal(&double.to_string())
}

/// A decimal number's exact value: sign, significant digits (no leading or trailing
/// zeros) and the power of ten of the last one; zero is `(false, "", 0)`.
fn decimal(text: &str) -> Option<(bool, String, i64)> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{whole}{fraction}");
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let trimmed_end = digits.trim_end_matches('0');
    let dropped = (digits.len() - trimmed_end.len()) as i64;
    let significant = trimmed_end.trim_start_matches('0');
    if significant.is_empty() {
        return Some((false, String::new(), 0));
    }
    let power = exponent
        .checked_sub(fraction.len() as i64)?
        .checked_add(dropped)?;
    Some((negative, significant.to_string(), power))
}

/// The key as a case-insensitive, control-stripping decoder would see it.
pub fn fold_key(key: &str) -> String {
    key.chars()
        .filter(|c| {
            !c.is_control()
                && !matches!(
                    c,
                    '\u{AD}' | '\u{34F}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}'
                )
        })
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'ſ' => 's',
            'K' => 'k',
            c => c,
        })
        .collect()
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Strict, E> {
        exact_in_a_double(v.unsigned_abs())?;
        Ok(Strict(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Strict, E> {
        exact_in_a_double(v)?;
        Ok(Strict(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
        Ok(Strict(
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }
    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Strict(Value::Array(out)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        // serde_json's arbitrary_precision numbers arrive as a one-entry map with a
        // private key; let serde_json's own Value visitor handle them.
        let mut out = Map::new();
        let mut folded = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == NUMBER_TOKEN {
                // Where serde_json puts it: the one entry of a number. Anywhere else it
                // is a client's key that would turn its object into a number.
                if !out.is_empty() {
                    return Err(de::Error::custom(format!(
                        "the key {NUMBER_TOKEN:?} is reserved"
                    )));
                }
                let text: String = map.next_value()?;
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom(format!(
                        "the key {NUMBER_TOKEN:?} is reserved"
                    )));
                }
                if !same_to_every_reader(&text) {
                    return Err(de::Error::custom(format!(
                        "the number {text} is read as another value by double-precision decoders (Python, JavaScript): send it as a string, or with fewer digits"
                    )));
                }
                let number: serde_json::Number = text
                    .parse()
                    .map_err(|_| de::Error::custom("invalid number"))?;
                return Ok(Strict(Value::Number(number)));
            }
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "duplicate key {key:?} in arguments"
                )));
            }
            if !folded.insert(fold_key(&key)) {
                return Err(de::Error::custom(format!(
                    "key {key:?} collides with another key of the same object under case folding"
                )));
            }
            let Strict(value) = map.next_value()?;
            out.insert(key, value);
        }
        Ok(Strict(Value::Object(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_duplicates_and_case_fold_collisions_at_any_depth() {
        let cases: &[(&str, bool)] = &[
            (r#"{"a":1,"b":{"c":[{"d":1}]}}"#, true),
            (r#"{"path":"/a","path":"/b"}"#, false),
            (r#"{"path":"/a","Path":"/b"}"#, false),
            (r#"{"x":{"cmd":"ls","CMD":"rm"}}"#, false),
            (r#"{"x":[{"k":1,"\u212a":2}]}"#, false),
            (r#"{"paths":1,"pathſ":2}"#, false),
            (r#"{"a\u0000":1,"a":2}"#, false),
            (r#"{"p\u0061th":1,"path":2}"#, false),
            (r#"{"a":1,"b":1}"#, true),
        ];
        for (raw, ok) in cases {
            assert_eq!(parse(raw.as_bytes()).is_ok(), *ok, "{raw}");
        }
    }

    #[test]
    fn numbers_keep_their_text() {
        let v = parse(br#"{"big":9007199254740992,"f":1.50,"e":2e3,"d":0.1,"n":-0.0}"#).unwrap();
        assert_eq!(v["big"].to_string(), "9007199254740992");
        assert_eq!(v["f"].to_string(), "1.50");
        assert_eq!(v["e"].as_f64(), Some(2000.0));
    }

    #[test]
    fn numbers_a_double_reads_otherwise_are_refused() {
        for raw in [
            r#"{"count":500.00000000000000001}"#,
            r#"{"count":499.99999999999999999}"#,
            r#"{"count":5.0000000000000000001e2}"#,
            r#"{"id":123456789012345678901234567890}"#,
            r#"{"id":9007199254740993}"#,
            r#"{"x":[1,{"y":1e400}]}"#,
        ] {
            let refused = parse(raw.as_bytes());
            assert!(refused.is_err(), "{raw}: {refused:?}");
        }
        for raw in [
            r#"{"count":500.0}"#,
            r#"{"count":5e2}"#,
            r#"{"p":3.141592653589793}"#,
            r#"{"t":1e-7}"#,
        ] {
            assert!(parse(raw.as_bytes()).is_ok(), "{raw}");
        }
        assert!(
            same_to_every_reader("1.50")
                && same_to_every_reader("-0")
                && same_to_every_reader("0.1")
        );
    }

    #[test]
    fn the_private_number_key_is_refused_anywhere() {
        for raw in [
            r#"{"armed":true,"$serde_json::private::Number":"0"}"#,
            r#"{"$serde_json::private::Number":"0"}"#,
            r#"{"armed":true,"$serde_json::private::Number":"0"}"#,
            r#"{"$serde_json::private::Number":"0"}"#,
            r#"{"$serde_json::private::Number":"0","armed":true}"#,
            r#"{"x":{"$serde_json::private::Number":"5"}}"#,
        ] {
            assert!(parse(raw.as_bytes()).is_err(), "{raw}");
        }
    }
}
