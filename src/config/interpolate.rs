//! oslo.config `$name` / `${name}` / `$group.name` substitution against the
//! final merged values: same section first, then DEFAULT; `$$` and `\$` are a
//! literal `$`; an unset known option is empty; an unknown name or a loop is an
//! error naming the option and where it was set.
//!
//! Two limits keep a hostile file from exhausting memory (`${a}${a}` chains
//! double at each step): an expanded value is at most [`MAX_EXPANDED_BYTES`],
//! and a chain of references at most [`MAX_DEPTH`] deep. A value that uses a
//! secret becomes a secret itself ([`super::Setting::secret`]).

use std::collections::{BTreeMap, HashMap};

use super::{ConfigError, Kind, Schema, Setting};

/// Longest value interpolation may produce (64 KiB).
pub const MAX_EXPANDED_BYTES: usize = 64 * 1024;

/// Longest chain of references from one value (`$a` -> `$b` -> ...).
pub const MAX_DEPTH: usize = 16;

type Key = (String, String);

/// An expanded value and whether a secret went into it.
#[derive(Clone)]
struct Expanded {
    text: String,
    secret: bool,
    /// The longest chain of references below this value (0: none).
    depth: usize,
}

/// Expands every value in place.
pub(super) fn interpolate_all(
    schema: &Schema,
    values: &mut BTreeMap<Key, Setting>,
) -> Result<(), ConfigError> {
    let keys: Vec<Key> = values.keys().cloned().collect();
    let mut done: HashMap<Key, Expanded> = HashMap::new();
    for k in keys {
        let mut stack = Vec::new();
        let v = resolve(schema, values, &k, &mut done, &mut stack)?;
        if let Some(s) = values.get_mut(&k) {
            s.value = v.text;
            s.secret |= v.secret;
        }
    }
    Ok(())
}

fn resolve(
    schema: &Schema,
    values: &BTreeMap<Key, Setting>,
    key: &Key,
    done: &mut HashMap<Key, Expanded>,
    stack: &mut Vec<Key>,
) -> Result<Expanded, ConfigError> {
    if let Some(v) = done.get(key) {
        return Ok(v.clone());
    }
    let Some(setting) = values.get(key) else {
        // A known option nobody set: oslo substitutes None as ''.
        return Ok(Expanded {
            text: String::new(),
            secret: false,
            depth: 0,
        });
    };
    let invalid = |message: String| ConfigError::Invalid {
        origin: setting.origin.clone(),
        section: key.0.clone(),
        key: key.1.clone(),
        message,
    };
    if let Some(pos) = stack.iter().position(|k| k == key) {
        let chain: Vec<String> = stack[pos..]
            .iter()
            .chain(std::iter::once(key))
            .map(|(s, k)| format!("[{s}] {k}"))
            .collect();
        return Err(invalid(format!(
            "interpolation loop: {}",
            chain.join(" -> ")
        )));
    }
    stack.push(key.clone());
    let mut secret = setting.secret;
    let mut depth = 0;
    let too_long = || {
        invalid(format!(
            "interpolation expands this value beyond {MAX_EXPANDED_BYTES} bytes"
        ))
    };
    let raw = setting.raw.replace("\\$", "$$");
    let mut out = String::new();
    let mut rest = raw.as_str();
    while let Some(at) = rest.find('$') {
        push_bounded(&mut out, &rest[..at]).ok_or_else(too_long)?;
        let after = &rest[at + 1..];
        if let Some(r) = after.strip_prefix('$') {
            push_bounded(&mut out, "$").ok_or_else(too_long)?;
            rest = r;
            continue;
        }
        let (name, next) = if let Some(b) = after.strip_prefix('{') {
            match b.find('}') {
                Some(end) if is_ident(&b[..end]) => (&b[..end], &b[end + 1..]),
                _ => {
                    push_bounded(&mut out, "$").ok_or_else(too_long)?;
                    rest = after;
                    continue;
                }
            }
        } else {
            let len = ident_len(after);
            (&after[..len], &after[len..])
        };
        if name.is_empty() {
            // Not a placeholder: kept as is, like Python's safe_substitute.
            push_bounded(&mut out, "$").ok_or_else(too_long)?;
            rest = after;
            continue;
        }
        let target = lookup(schema, values, &key.0, name).ok_or_else(|| {
            // Never echo part of a secret.
            let shown = match schema.spec(&key.0, &key.1).map(|s| &s.kind) {
                Some(Kind::Secret) => "a $ placeholder".to_string(),
                _ => format!("${name}"),
            };
            let sections = if key.0 == "DEFAULT" {
                "[DEFAULT]".to_string()
            } else {
                format!("[{}] or [DEFAULT]", key.0)
            };
            invalid(format!(
                "{shown} does not name an option of {sections} (write $$ for a literal $)"
            ))
        })?;
        let part = resolve(schema, values, &target, done, stack)?;
        // Counted below each value (not on the stack), so the limit does not
        // depend on which option happens to be expanded first.
        depth = depth.max(part.depth + 1);
        if depth > MAX_DEPTH {
            return Err(invalid(format!(
                "interpolation nests references more than {MAX_DEPTH} deep (via ${name})"
            )));
        }
        secret |= part.secret;
        push_bounded(&mut out, &part.text).ok_or_else(too_long)?;
        rest = next;
    }
    push_bounded(&mut out, rest).ok_or_else(too_long)?;
    stack.pop();
    let v = Expanded {
        text: out,
        secret,
        depth,
    };
    done.insert(key.clone(), v.clone());
    Ok(v)
}

/// Appends `s` unless the result would pass [`MAX_EXPANDED_BYTES`].
fn push_bounded(out: &mut String, s: &str) -> Option<()> {
    if out.len() + s.len() > MAX_EXPANDED_BYTES {
        return None;
    }
    out.push_str(s);
    Some(())
}

fn ident_len(s: &str) -> usize {
    let b = s.as_bytes();
    if b.is_empty() || !(b[0].is_ascii_alphabetic() || b[0] == b'_') {
        return 0;
    }
    b.iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_' || **c == b'.')
        .count()
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && ident_len(s) == s.len()
}

fn lookup(
    schema: &Schema,
    values: &BTreeMap<Key, Setting>,
    section: &str,
    name: &str,
) -> Option<Key> {
    let known = |s: &str, k: &str| {
        values.contains_key(&(s.to_string(), k.to_string())) || schema.spec(s, k).is_some()
    };
    if known(section, name) {
        return Some((section.into(), name.into()));
    }
    if known("DEFAULT", name) {
        return Some(("DEFAULT".into(), name.into()));
    }
    let (group, opt) = name.split_once('.')?;
    known(group, opt).then(|| (group.to_string(), opt.to_string()))
}
