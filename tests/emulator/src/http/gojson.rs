//! Go's `encoding/json` on the wire: how the real handlers encode responses and decode request bodies.
//!
//! Encoding (`json.NewEncoder(w).Encode`): `<`, `>`, `&`, U+2028 and U+2029 are escaped as `\u003c`…, floats
//! use Go's shortest form (`2`, `1e+21`), and struct fields keep declaration order (map keys are sorted, as
//! serde_json's default `Map` already is). Decoding (`decodeJSONBody`): only the first JSON value counts,
//! anything after it is ignored; top-level field names match case-insensitively; the last duplicate wins;
//! `null` leaves a field unset; a body over 1 MiB is 413 only if that first value does not end inside it.

use std::io::{self, Write};

use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Number, Value, ser::Formatter};

/// `maxRequestBodyBytes` of the real handlers.
pub const MAX_BODY: usize = 1 << 20;

/// What a request body looked like to the decoder: at most `MAX_BODY` bytes, and whether there was more.
#[derive(Debug, Default, Clone)]
pub struct Body {
    pub bytes: Vec<u8>,
    pub over_limit: bool,
}

/// Why `decode` refused a body; the HTTP layer turns these into the real problems.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("request body exceeds the 1 MiB limit")]
    TooLarge,
    #[error("Invalid request body")]
    Invalid,
}

/// `json.NewDecoder(http.MaxBytesReader(body, 1 MiB)).Decode(&v)` for a Go struct with lower-case JSON names.
pub fn decode<T: DeserializeOwned>(body: &Body) -> Result<T, DecodeError> {
    // Go substitutes U+FFFD for invalid UTF-8 and for lone surrogate escapes instead of failing.
    let text = replace_lone_surrogates(&String::from_utf8_lossy(&body.bytes));
    let first = serde_json::Deserializer::from_str(&text).into_iter::<Value>().next();
    let value = match first {
        Some(Ok(value)) => value,
        // The value ran past what the size limit let the decoder read.
        Some(Err(e)) if e.is_eof() && body.over_limit => return Err(DecodeError::TooLarge),
        None if body.over_limit => return Err(DecodeError::TooLarge),
        _ => return Err(DecodeError::Invalid),
    };
    let fields = match value {
        Value::Null => Map::new(),
        Value::Object(map) => {
            let mut fields = Map::new();
            for (key, value) in map {
                if !value.is_null() {
                    fields.insert(key.to_ascii_lowercase(), value);
                }
            }
            fields
        }
        _ => return Err(DecodeError::Invalid),
    };
    serde_json::from_value(Value::Object(fields)).map_err(|_| DecodeError::Invalid)
}

/// Rewrites `\uD800`-style escapes that do not form a surrogate pair as `\ufffd`, which serde_json would
/// otherwise reject.
fn replace_lone_surrogates(text: &str) -> String {
    let hex_at = |i: usize| -> Option<u32> {
        let digits = text.get(i + 2..i + 6)?;
        (text.get(i..i + 2)? == "\\u").then(|| u32::from_str_radix(digits, 16).ok()).flatten()
    };
    let (mut out, mut i, mut in_string) = (String::with_capacity(text.len()), 0, false);
    while let Some(c) = text[i..].chars().next() {
        if in_string && c == '\\' {
            let (len, keep) = match hex_at(i) {
                Some(0xD800..=0xDBFF) if hex_at(i + 6).is_some_and(|low| (0xDC00..=0xDFFF).contains(&low)) => {
                    (12, true)
                }
                Some(0xD800..=0xDFFF) => (6, false),
                Some(_) => (6, true),
                // Any other escape is copied whole, so an escaped quote does not end the string.
                None => (1 + text[i + 1..].chars().next().map_or(0, char::len_utf8), true),
            };
            out.push_str(if keep { &text[i..i + len] } else { "\\ufffd" });
            i += len;
            continue;
        }
        in_string ^= c == '"';
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// A `map[string]any` after Go decoded it: every number became a float64.
pub fn as_go_any(value: Value) -> Value {
    match value {
        Value::Number(n) => n.as_f64().and_then(Number::from_f64).map_or(Value::Null, Value::Number),
        Value::Array(items) => Value::Array(items.into_iter().map(as_go_any).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, as_go_any(v))).collect()),
        other => other,
    }
}

/// `json.Encoder.Encode`: the Go encoding plus the trailing newline.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    value.serialize(&mut ser).expect("response types always serialize");
    out.push(b'\n');
    out
}

/// Go's `strconv.AppendFloat(f, 'f' or 'e', -1, 64)` as `encoding/json` picks and tidies it.
pub fn go_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let text = format!("{f:e}");
        let (mantissa, exp) = text.split_once('e').expect("LowerExp always has an exponent");
        let exp: i32 = exp.parse().expect("numeric exponent");
        if exp < 0 { format!("{mantissa}e-{}", -exp) } else { format!("{mantissa}e+{exp:02}") }
    } else {
        format!("{f}")
    }
}

/// serde_json's compact formatter with Go's HTML-safe string escaping and float format.
struct GoFormatter;

impl Formatter for GoFormatter {
    fn write_f64<W: ?Sized + Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        writer.write_all(go_float(value).as_bytes())
    }

    fn write_string_fragment<W: ?Sized + Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let escape = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(escape.as_bytes())?;
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Login {
        #[serde(default)]
        username: String,
        #[serde(default)]
        password: String,
    }

    fn body(text: &str) -> Body {
        Body { bytes: text.as_bytes().to_vec(), over_limit: false }
    }

    #[test]
    fn decodes_like_go() {
        let login = |text: &str| decode::<Login>(&body(text));
        let want = |u: &str, p: &str| Ok(Login { username: u.into(), password: p.into() });
        assert_eq!(login(r#"{"username":"a","password":"b"} trailing junk"#), want("a", "b"));
        assert_eq!(login(r#"{"USERNAME":"a","Password":"b","other":1}"#), want("a", "b"));
        assert_eq!(login(r#"{"username":"x","username":"a"}"#), want("a", ""));
        assert_eq!(login(r#"{"username":null}"#), want("", ""));
        assert_eq!(login(r#"{"username":"a\ud800","password":"\ud83d\ude00\\ud800"}"#), want("a\u{fffd}", "😀\\ud800"));
        assert_eq!(login("null"), want("", ""));
        for bad in ["", "   ", "[]", "\"x\"", "{", r#"{"username":5}"#] {
            assert_eq!(login(bad), Err(DecodeError::Invalid), "{bad:?}");
        }
        let mut big = body(r#"{"username":"a","password":"b"}"#);
        big.over_limit = true;
        assert_eq!(decode::<Login>(&big), want("a", "b"), "the value ended inside the limit");
        let mut cut = body(r#"{"username":"aaaa"#);
        cut.over_limit = true;
        assert_eq!(decode::<Login>(&cut), Err(DecodeError::TooLarge));
    }

    #[test]
    fn encodes_like_go() {
        let config = as_go_any(
            serde_json::json!({"b": [1, 2.0, 1.5, 1e21, 12345678901234567890u64, 1e-7], "a": "<a&b>\u{2028}"}),
        );
        let text = String::from_utf8(encode(&config)).unwrap();
        assert_eq!(
            text,
            "{\"a\":\"\\u003ca\\u0026b\\u003e\\u2028\",\"b\":[1,2,1.5,1e+21,12345678901234567000,1e-7]}\n"
        );
        assert_eq!(go_float(0.000001), "0.000001");
        assert_eq!(go_float(-2.5e-10), "-2.5e-10");
    }
}
