//! RFC 8785 (JSON Canonicalization Scheme): one byte sequence per JSON value, so two
//! machines hashing the same tool definition get the same digest whatever key order,
//! whitespace or escapes the server wrote. Tool-definition pins (`crate::pins`) hash it.
//!
//! The rules: object members sorted by their names' UTF-16 code units; strings with
//! only `"`, `\` and the control characters escaped (`\b \t \n \f \r`, else `\u00xx`),
//! everything else written as UTF-8; numbers as ECMAScript's `Number.prototype.toString`
//! writes the nearest double. This module never fails on a value it is given except a
//! number outside the double range, which RFC 8785 (I-JSON) does not admit.

use serde_json::Value;

/// A number RFC 8785 cannot write (beyond the range of a double).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a number outside the range of a double has no RFC 8785 form")]
pub struct NotIJson;

/// The canonical bytes of `value`.
pub fn canonical(value: &Value) -> Result<Vec<u8>, NotIJson> {
    let mut out = Vec::new();
    write(value, &mut out)?;
    Ok(out)
}

fn write(value: &Value, out: &mut Vec<u8>) -> Result<(), NotIJson> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            let double = n.as_f64().filter(|d| d.is_finite()).ok_or(NotIJson)?;
            if double == 0.0 {
                // ECMAScript writes -0 as 0.
                out.push(b'0');
            } else {
                out.extend_from_slice(ryu_js::Buffer::new().format_finite(double).as_bytes());
            }
        }
        Value::String(s) => string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push(b'{');
            for (i, (name, member)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(name, out);
                out.push(b':');
                write(member, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\r' => out.extend_from_slice(b"\\r"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut utf8 = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jcs(text: &str) -> String {
        let value: Value = serde_json::from_str(text).expect("test JSON");
        String::from_utf8(canonical(&value).expect("canonical")).expect("UTF-8")
    }

    #[test]
    fn numbers_are_written_as_ecmascript_writes_them() {
        // RFC 8785 appendix B and section 3.2.2.3.
        for (given, written) in [
            ("0", "0"),
            ("-0", "0"),
            ("1E2", "100"),
            ("4.50", "4.5"),
            ("2e-3", "0.002"),
            ("0.000001", "0.000001"),
            ("1e-7", "1e-7"),
            ("1e21", "1e+21"),
            ("999999999999999900000", "999999999999999900000"),
            ("9007199254740993", "9007199254740992"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("5e-324", "5e-324"),
            ("333333333.33333329", "333333333.3333333"),
        ] {
            assert_eq!(jcs(given), written, "{given}");
        }
        let huge: Value = serde_json::from_str("1e400").expect("arbitrary precision");
        assert_eq!(canonical(&huge), Err(NotIJson));
    }

    #[test]
    fn members_sort_by_utf16_code_units() {
        // RFC 8785 section 3.2.3: U+1F600 (a surrogate pair, D83D…) sorts before
        // U+FB33 though its UTF-8 bytes sort after.
        assert_eq!(
            jcs(r#"{"\ufb33":1,"\ud83d\ude00":2,"a":3,"\u0080":4,"1":5}"#),
            "{\"1\":5,\"a\":3,\"\u{80}\":4,\"\u{1F600}\":2,\"\u{FB33}\":1}"
        );
    }

    #[test]
    fn strings_escape_only_what_they_must() {
        assert_eq!(
            jcs(r#""\u0041\u00e9\"\\\/\b\f\n\r\t\u0001\u001f\u007f\u2028""#),
            "\"A\u{e9}\\\"\\\\/\\b\\f\\n\\r\\t\\u0001\\u001f\u{7f}\u{2028}\""
        );
    }

    #[test]
    fn whitespace_and_order_do_not_change_the_bytes() {
        assert_eq!(
            jcs(r#" { "b" : [ 1 , true , null ] , "a" : { "d" : 1.0 , "c" : "x" } } "#),
            r#"{"a":{"c":"x","d":1},"b":[1,true,null]}"#
        );
    }
}
