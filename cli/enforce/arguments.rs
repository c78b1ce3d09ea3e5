//! Parses `params.arguments` once, on the std side, for the decision input.
//!
//! A key that appears twice, or two keys that are equal under case folding (after
//! dropping control and invisible format characters), at any depth, make the call
//! invalid: a server on a case-insensitive or last-wins decoder could read other
//! arguments than the policy saw (-32602, never forwarded).

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
    // thoth-core bounds nesting at 64, under serde_json's recursion limit of 128.
    let mut de = serde_json::Deserializer::from_slice(raw);
    let value = Strict::deserialize(&mut de).map_err(|e| ArgumentsError(e.to_string()))?;
    Ok(value.0)
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
    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
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
            if key == "$serde_json::private::Number" {
                let text: String = map.next_value()?;
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
        let v = parse(br#"{"big":123456789012345678901234567890,"f":1.50,"e":2e3}"#).unwrap();
        assert_eq!(v["big"].to_string(), "123456789012345678901234567890");
        assert_eq!(v["f"].to_string(), "1.50");
        assert_eq!(v["e"].as_f64(), Some(2000.0));
    }
}
