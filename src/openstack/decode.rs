//! Decoding a JSON value into a type and, when that fails, naming the field
//! path of the failure (`flavor.vcpus: invalid type: ...`): serde's own
//! errors say what was wrong but not where.
//!
//! Only the slow path uses it: a page or body is first read in one pass
//! straight into its type; when that fails, the value is walked again here to
//! say which field of which object is wrong.

use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, Visitor};
use serde_json::Value;

use crate::net::excerpt_chars;

/// A decode error with the path of the field it is about (empty: the value
/// itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathError {
    pub path: Option<String>,
    pub message: String,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.path.as_deref() {
            Some(p) if !p.is_empty() => write!(f, "{p}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl PathError {
    /// Gives the error `path` unless it has a deeper one already.
    fn at(mut self, path: String) -> PathError {
        self.path.get_or_insert(path);
        self
    }
}

impl std::error::Error for PathError {}

impl de::Error for PathError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        PathError {
            path: None,
            message: msg.to_string(),
        }
    }
}

/// Characters of a decode error's message: serde quotes the offending
/// value whole (a string of megabytes, a float of 300 digits).
pub(crate) const MESSAGE_CHARS: usize = 300;

/// `T` from `value`; an error names the field path it happened at.
pub(crate) fn decode<T: DeserializeOwned>(value: &Value) -> Result<T, PathError> {
    T::deserialize(At {
        value,
        path: String::new(),
    })
    .map_err(|mut e| {
        e.message = excerpt_chars(e.message.as_bytes(), MESSAGE_CHARS);
        // Raised by a type's own code, not below a node: the value itself.
        e.path.get_or_insert_with(String::new);
        e
    })
}

/// A value and where it is in the document.
struct At<'a> {
    value: &'a Value,
    path: String,
}

impl At<'_> {
    /// Gives an error from this node's visitor this node's path, unless a
    /// deeper node already gave it its own.
    fn here<T>(&self, r: Result<T, PathError>) -> Result<T, PathError> {
        r.map_err(|mut e| {
            if e.path.is_none() {
                e.path = Some(self.path.clone());
            }
            e
        })
    }

    fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

impl<'de> Deserializer<'de> for At<'de> {
    type Error = PathError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PathError> {
        let r = match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(a) => visitor.visit_seq(Seq {
                items: a.iter().enumerate(),
                path: &self.path,
            }),
            Value::Object(m) => visitor.visit_map(Fields {
                entries: m.iter(),
                pending: None,
                at: &self,
            }),
        };
        self.here(r)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PathError> {
        if self.value.is_null() {
            let r = visitor.visit_none();
            self.here(r)
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, PathError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, PathError> {
        // Only unit variants spelt as strings occur in OpenStack bodies.
        let r = match self.value {
            Value::String(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            other => Err(de::Error::custom(format!(
                "expected a string naming a variant, found {}",
                kind(other)
            ))),
        };
        self.here(r)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

struct Seq<'a, I> {
    items: I,
    path: &'a str,
}

impl<'de, I: Iterator<Item = (usize, &'de Value)>> de::SeqAccess<'de> for Seq<'_, I> {
    type Error = PathError;
    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, PathError> {
        match self.items.next() {
            None => Ok(None),
            Some((i, value)) => {
                let at = At {
                    value,
                    path: format!("{}[{i}]", self.path),
                };
                let path = at.path.clone();
                seed.deserialize(at).map(Some).map_err(|e| e.at(path))
            }
        }
    }
}

struct Fields<'a, 'de> {
    entries: serde_json::map::Iter<'de>,
    pending: Option<(&'de str, &'de Value)>,
    at: &'a At<'de>,
}

impl<'de> de::MapAccess<'de> for Fields<'_, 'de> {
    type Error = PathError;
    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, PathError> {
        match self.entries.next() {
            None => Ok(None),
            Some((k, v)) => {
                self.pending = Some((k.as_str(), v));
                seed.deserialize(de::value::BorrowedStrDeserializer::new(k.as_str()))
                    .map(Some)
            }
        }
    }
    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, PathError> {
        let Some((k, value)) = self.pending.take() else {
            return Err(de::Error::custom("a value without its key"));
        };
        let path = self.at.child(k);
        seed.deserialize(At {
            value,
            path: path.clone(),
        })
        // An error of the value's own type (raised after its fields were
        // read) belongs to the value.
        .map_err(|e| e.at(path))
    }
}

/// Takes `key` out of an object and decodes it; an error names the key.
/// For types that keep the keys they do not know (`flatten` would lose the
/// field's name in its errors).
pub(crate) fn take<T: DeserializeOwned, E: de::Error>(
    object: &mut serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<T>, E> {
    match object.remove(key) {
        None => Ok(None),
        Some(v) => decode::<T>(&v).map(Some).map_err(|e| {
            E::custom(format!(
                "{key}{}{e}",
                if e.path.as_deref().is_some_and(|p| !p.is_empty()) {
                    "."
                } else {
                    ": "
                }
            ))
        }),
    }
}

/// A required field of [`take`].
pub(crate) fn required<T, E: de::Error>(v: Option<T>, key: &'static str) -> Result<T, E> {
    v.ok_or_else(|| E::missing_field(key))
}

/// What a JSON value is, for messages that must not quote it.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Inner {
        vcpus: u32,
        #[serde(default)]
        name: Option<String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Outer {
        id: String,
        flavor: Inner,
        #[serde(default)]
        list: Vec<Inner>,
    }

    #[test]
    fn errors_name_the_field_path() {
        let e = decode::<Outer>(&json!({"id": "s", "flavor": {"vcpus": "2"}})).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("flavor.vcpus"), "{e}");
        assert!(
            e.to_string().starts_with("flavor.vcpus: invalid type"),
            "{e}"
        );
        let e = decode::<Outer>(&json!({"id": "s", "flavor": {}})).unwrap_err();
        assert_eq!(e.to_string(), "flavor: missing field `vcpus`");
        let e = decode::<Outer>(&json!({"id": "s", "flavor": {"vcpus": 1},
            "list": [{"vcpus": 1}, {"vcpus": 1, "name": 5}]}))
        .unwrap_err();
        assert_eq!(e.path.as_deref(), Some("list[1].name"), "{e}");
        let ok = decode::<Outer>(&json!({"id": "s", "flavor": {"vcpus": 1, "name": null}}));
        assert_eq!(
            ok.unwrap(),
            Outer {
                id: "s".into(),
                flavor: Inner {
                    vcpus: 1,
                    name: None
                },
                list: vec![]
            }
        );
        let huge = "z".repeat(100_000);
        let e = decode::<Outer>(&json!({"id": "s", "flavor": {"vcpus": huge}})).unwrap_err();
        assert!(e.message.len() < MESSAGE_CHARS + 40, "{e}");
        let e = decode::<Outer>(&json!({"id": "s", "flavor": {"vcpus": -6.5e299}})).unwrap_err();
        assert!(e.message.len() < MESSAGE_CHARS + 40, "{e}");
        let e = decode::<Outer>(&json!("x")).unwrap_err();
        assert_eq!(e.path.as_deref(), Some(""), "{e}");
        assert!(e.to_string().starts_with("invalid type: string"), "{e}");
    }
}
