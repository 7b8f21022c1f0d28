//! Halving a queued message at a record boundary, for a transport that
//! refused it as too large (AMS's 413, a broker's frame limit): a cloud
//! message at its `%%` separators, a JSON message (IP, accelerator) by its
//! `UsageRecords`, a StAR message by its records. Each half is a whole
//! message of the same type, the header (or the JSON envelope, or the StAR
//! root) repeated and every record's text kept as it was.

use serde_json::value::RawValue;

/// Why a message cannot be halved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsplittable {
    /// One record: nothing smaller can carry it.
    #[error("it holds a single record ({0} bytes), which cannot be split")]
    OneRecord(usize),
    /// Not a message whose records we can find.
    #[error("its records cannot be found: {0}")]
    Unknown(String),
}

/// The message as two messages of the same type, each with half of its
/// records (the first half gets the smaller share).
pub fn halve(body: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Unsplittable> {
    let text =
        std::str::from_utf8(body).map_err(|_| Unsplittable::Unknown("not UTF-8 text".into()))?;
    let trimmed = text.trim();
    if trimmed.starts_with('<') {
        star(trimmed)
    } else if trimmed.starts_with('{') {
        json(trimmed)
    } else {
        key_value(trimmed)
    }
}

/// How many records `body` holds as [`halve`] counts them (`None`: not
/// a message it can split). For the tests.
#[cfg(test)]
pub(crate) fn record_count(body: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(body).ok()?.trim();
    if text.starts_with('<') {
        star_records(text).ok().map(|(_, r, _)| r.len())
    } else if text.starts_with('{') {
        envelope(text).ok().map(|(_, r)| r.len())
    } else {
        Some(kv_chunks(text).1.len())
    }
}

/// `records` in two halves; `size` is the message's, for the error.
fn halves<T>(records: &[T], size: usize) -> Result<(&[T], &[T]), Unsplittable> {
    match records.len() {
        0 => Err(Unsplittable::Unknown("it holds no records".into())),
        1 => Err(Unsplittable::OneRecord(size)),
        n => Ok(records.split_at(n / 2)),
    }
}

/// The header line and the records of a key/value message, as the APEL
/// loader reads them: the text after the header split at `%%`, blank
/// chunks dropped (apel/db/loader/record_factory.py).
fn kv_chunks(text: &str) -> (&str, Vec<&str>) {
    let (header, rest) = text.split_once('\n').unwrap_or((text, ""));
    let chunks = rest
        .split("%%")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    (header.trim_end(), chunks)
}

fn key_value(text: &str) -> Result<(Vec<u8>, Vec<u8>), Unsplittable> {
    let (header, chunks) = kv_chunks(text);
    if !header.contains(':') {
        return Err(Unsplittable::Unknown(
            "no `Name: version` header line".into(),
        ));
    }
    let (a, b) = halves(&chunks, text.len())?;
    // Our writer's framing (record/message.rs): header, records between
    // `%%` lines, a final newline.
    let render = |part: &[&str]| format!("{header}\n{}\n", part.join("\n%%\n")).into_bytes();
    Ok((render(a), render(b)))
}

/// The envelope's members other than `UsageRecords` (in their order), and
/// the records' text.
type Envelope<'a> = (Vec<(String, &'a RawValue)>, Vec<&'a RawValue>);

fn envelope(text: &str) -> Result<Envelope<'_>, Unsplittable> {
    let members: Vec<(String, &RawValue)> = serde_json::from_str::<Members>(text)
        .map_err(|e| Unsplittable::Unknown(format!("not a JSON object: {e}")))?
        .0;
    let mut others = Vec::new();
    let mut records = None;
    for (k, v) in members {
        if k == "UsageRecords" {
            let list: Vec<&RawValue> = serde_json::from_str(v.get())
                .map_err(|e| Unsplittable::Unknown(format!("UsageRecords is not an array: {e}")))?;
            records = Some(list);
        } else {
            others.push((k, v));
        }
    }
    let records = records.ok_or_else(|| Unsplittable::Unknown("no UsageRecords member".into()))?;
    Ok((others, records))
}

fn json(text: &str) -> Result<(Vec<u8>, Vec<u8>), Unsplittable> {
    let (others, records) = envelope(text)?;
    let (a, b) = halves(&records, text.len())?;
    let render = |part: &[&RawValue]| {
        // The framing our writer uses (record/message.rs): the envelope's
        // members first, then the records, each as it was written.
        let mut out = String::from("{");
        for (k, v) in &others {
            // The key was decoded: encoded again with ASCII escapes.
            super::pyfmt::json_string(&mut out, k);
            out.push_str(": ");
            out.push_str(v.get());
            out.push_str(", ");
        }
        out.push_str("\"UsageRecords\": [");
        let list: Vec<&str> = part.iter().map(|r| r.get()).collect();
        out.push_str(&list.join(", "));
        out.push_str("]}");
        out.into_bytes()
    };
    Ok((render(a), render(b)))
}

/// A JSON object's members in their order (duplicates kept).
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Members<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Self::Value, M::Error> {
                let mut members = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, &'de RawValue>()? {
                    members.push((k, v));
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// A StAR document as the text before its first record, each record's
/// text, and the text after the last: the records are the root element's
/// child elements.
fn star_records(text: &str) -> Result<(&str, Vec<&str>, &str), Unsplittable> {
    let bad = |why: &str| Unsplittable::Unknown(format!("not a StAR document: {why}"));
    let mut depth = 0usize;
    let mut records: Vec<(usize, usize)> = Vec::new();
    let mut open_at = 0usize;
    let mut i = 0usize;
    let b = text.as_bytes();
    let mut root_closed = false;
    while let Some(off) = text[i..].find('<') {
        let start = i + off;
        let rest = &text[start..];
        // Markup that is no element: skipped whole.
        let skip = [
            ("<?", "?>"),
            ("<!--", "-->"),
            ("<![CDATA[", "]]>"),
            ("<!", ">"),
        ]
        .iter()
        .find(|(open, _)| rest.starts_with(open))
        .map(|(_, close)| close);
        if let Some(close) = skip {
            let end = rest.find(close).ok_or_else(|| bad("unterminated markup"))?;
            i = start + end + close.len();
            continue;
        }
        let end = tag_end(&b[start..]).ok_or_else(|| bad("unterminated tag"))?;
        let tag = &text[start..start + end];
        i = start + end;
        if tag.starts_with("</") {
            depth = depth
                .checked_sub(1)
                .ok_or_else(|| bad("unbalanced end tag"))?;
            if depth == 1 {
                records.push((open_at, i));
            } else if depth == 0 {
                root_closed = true;
                break;
            }
        } else {
            let empty = tag.ends_with("/>");
            if depth == 1 {
                open_at = start;
                if empty {
                    records.push((start, i));
                    continue;
                }
            }
            if !empty {
                depth += 1;
            }
        }
    }
    if !root_closed {
        return Err(bad("the root element is not closed"));
    }
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return Ok((text, Vec::new(), ""));
    };
    let head = &text[..first.0];
    let tail = &text[last.1..];
    Ok((
        head,
        records.iter().map(|(s, e)| &text[*s..*e]).collect(),
        tail,
    ))
}

/// The length of the tag at the start of `b` (through its `>`), quotes
/// respected.
fn tag_end(b: &[u8]) -> Option<usize> {
    let mut quote = None;
    for (i, &c) in b.iter().enumerate().skip(1) {
        match (quote, c) {
            (None, b'"' | b'\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, b'>') => return Some(i + 1),
            _ => {}
        }
    }
    None
}

fn star(text: &str) -> Result<(Vec<u8>, Vec<u8>), Unsplittable> {
    let (head, records, tail) = star_records(text)?;
    let (a, b) = halves(&records, text.len())?;
    let render = |part: &[&str]| format!("{head}{}{tail}", part.concat()).into_bytes();
    Ok((render(a), render(b)))
}

#[cfg(test)]
mod tests;
