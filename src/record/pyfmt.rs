//! Number and JSON formatting exactly as Python writes them, because cASO's
//! messages are Python `str()`/`repr()` and `json.dumps()` output.

use std::fmt::Write as _;

/// Python's `repr(float)` (also what `str()`, f-strings and `json.dumps`
/// write): the shortest digits that round-trip, fixed notation when the
/// decimal exponent is in [-4, 16), else `d.ddde±XX`; integral values keep
/// a `.0`. Only finite values reach here (see [`super::BenchmarkValue`]).
pub fn float_repr(x: f64) -> String {
    // `{:e}` gives the shortest round-trip digits, like Python's repr.
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let n = digits.len() as i32;
    let decpt = exp + 1; // position of the decimal point relative to the digits
    let mut out = String::from(sign);
    if -4 < decpt && decpt <= 16 {
        if decpt <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-decpt) as usize));
            out.push_str(&digits);
        } else if decpt >= n {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', (decpt - n) as usize));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..decpt as usize]);
            out.push('.');
            out.push_str(&digits[decpt as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    out
}

/// A JSON value as cASO's records hold them.
pub enum JsonValue<'a> {
    Str(&'a str),
    Int(i64),
    Float(f64),
}

/// One JSON object written like Python's `json.dumps` with default
/// separators (`", "` and `": "`) and `ensure_ascii`, keys in the given order.
pub fn json_object(out: &mut String, fields: &[(&str, JsonValue<'_>)]) {
    out.push('{');
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        json_string(out, key);
        out.push_str(": ");
        match value {
            JsonValue::Str(s) => json_string(out, s),
            JsonValue::Int(n) => {
                let _ = write!(out, "{n}");
            }
            JsonValue::Float(x) => out.push_str(&float_repr(*x)),
        }
    }
    out.push('}');
}

/// A JSON string with Python's `ensure_ascii` escapes.
pub fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='\u{7e}' => out.push(c),
            _ => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_python_repr() {
        for (x, py) in [
            (4.4, "4.4"),
            (10.0, "10.0"),
            (1e-05, "1e-05"),
            (0.0001, "0.0001"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-2.5e-7, "-2.5e-07"),
            (1.5e300, "1.5e+300"),
            (5e-324, "5e-324"),
            (12.5, "12.5"),
            (100.0, "100.0"),
        ] {
            assert_eq!(float_repr(x), py, "{x:?}");
        }
    }

    #[test]
    fn json_matches_python_dumps() {
        let mut s = String::new();
        json_object(
            &mut s,
            &[
                ("a", JsonValue::Str("x\"\\y\u{1}é𝄞")),
                ("b", JsonValue::Int(-3)),
                ("c", JsonValue::Float(2.0)),
            ],
        );
        assert_eq!(
            s,
            r#"{"a": "x\"\\y\u0001\u00e9\ud834\udd1e", "b": -3, "c": 2.0}"#
        );
    }
}
