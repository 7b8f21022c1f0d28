//! EMI StAR XML as apel/db/loader/star_parser.py and xml_parser.py read it
//! (record fields: apel/db/records/storage.py). A small hand check of what
//! the loader needs, not an XML parser: tags balance, the first node is an
//! element in the StAR namespace, and each record's mandatory fields.

use super::{Broken, LoaderRejection, clip, is_null, py_int, whole};

/// star_parser.py:39.
const NS: &str = "http://eu-emi.eu/namespaces/2011/02/storagerecord";

/// storage.py `_int_fields`.
const INTS: &[&str] = &[
    "FileCount",
    "ResourceCapacityUsed",
    "LogicalCapacityUsed",
    "ResourceCapacityAllocated",
];

/// One `StorageUsageRecord`: the text of the first element of each local
/// name in the StAR namespace, and the `RecordIdentity` attributes.
#[derive(Default)]
struct Rec {
    fields: Vec<(String, String)>,
    identity: bool,
    record_id: Option<String>,
    create_time: Option<String>,
}

impl Rec {
    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
    }
}

struct Open {
    local: String,
    in_star: bool,
    decls: usize,
    text: String,
}

pub(super) fn check(text: &str) -> Result<(), LoaderRejection> {
    let records = scan(text).map_err(whole)?;
    if records.is_empty() {
        return Err(whole(
            "no sr:StorageUsageRecord in the StAR namespace (the server: File does not contain StAR records!)".into(),
        ));
    }
    let total = records.len();
    for (i, rec) in records.iter().enumerate() {
        if let Err(Broken(rule)) = check_record(rec) {
            let id = rec
                .record_id
                .as_deref()
                .filter(|v| !v.is_empty())
                .map(|v| format!("recordId \"{}\"", clip(v)));
            return Err(LoaderRejection {
                record: Some((i + 1, total, id)),
                rule,
            });
        }
    }
    Ok(())
}

/// iso8601.parse_date, leniently: a date first, never a bare number.
fn star_time(name: &str, v: Option<&str>) -> Result<(), Broken> {
    let Some(v) = v else {
        return Err(Broken(format!("mandatory field sr:{name} is missing")));
    };
    let b = v.as_bytes();
    let dated = b.len() >= 8 && b[..4].iter().all(u8::is_ascii_digit) && py_int(v).is_none();
    if dated {
        Ok(())
    } else {
        Err(Broken(format!(
            "sr:{name} \"{}\" is not an ISO 8601 time (StAR takes no epoch seconds)",
            clip(v)
        )))
    }
}

fn check_record(r: &Rec) -> Result<(), Broken> {
    if !r.identity {
        return Err(Broken(
            "mandatory element sr:RecordIdentity is missing".into(),
        ));
    }
    match r.record_id.as_deref() {
        Some(v) if !is_null(v.trim()) => {}
        _ => {
            return Err(Broken(
                "sr:RecordIdentity has no sr:recordId (the attribute must carry the StAR prefix)"
                    .into(),
            ));
        }
    }
    star_time("createTime", r.create_time.as_deref().map(str::trim))?;
    match r.get("StorageSystem") {
        None => return Err(Broken("mandatory field sr:StorageSystem is missing".into())),
        Some(v) if is_null(v) => {
            return Err(Broken("mandatory field sr:StorageSystem is empty".into()));
        }
        Some(_) => {}
    }
    star_time("StartTime", r.get("StartTime"))?;
    star_time("EndTime", r.get("EndTime"))?;
    if r.get("ResourceCapacityUsed").is_none() {
        return Err(Broken(
            "mandatory field sr:ResourceCapacityUsed is missing".into(),
        ));
    }
    for name in INTS {
        if let Some(v) = r.get(name)
            && !(is_null(v) && *name != "ResourceCapacityUsed")
            && py_int(v).is_none()
        {
            return Err(Broken(format!(
                "sr:{name} \"{}\" is not an integer",
                clip(v)
            )));
        }
    }
    Ok(())
}

/// Walks the tags; a well-formedness error is the message's reason.
fn scan(text: &str) -> Result<Vec<Rec>, String> {
    let mut ns: Vec<(String, String)> = Vec::new();
    let mut stack: Vec<Open> = Vec::new();
    let mut records: Vec<Rec> = Vec::new();
    // Index in `records` and stack depth of the record being read.
    let mut current: Option<(usize, usize)> = None;
    let mut seen_root = false;
    let mut rest = text;
    while let Some(lt) = rest.find('<') {
        if let Some(top) = stack.last_mut() {
            top.text.push_str(&rest[..lt]);
        } else if !rest[..lt].trim().is_empty() {
            return Err("text outside the root element (not well-formed XML)".into());
        }
        let tag = &rest[lt..];
        if let Some(body) = tag.strip_prefix("<?") {
            let end = body.find("?>").ok_or("unclosed processing instruction")?;
            rest = &body[end + 2..];
        } else if let Some(body) = tag.strip_prefix("<!--") {
            if !seen_root {
                return Err("a comment before the root element: the server reads the first node's namespace (XML format not recognised)".into());
            }
            let end = body.find("-->").ok_or("unclosed comment")?;
            rest = &body[end + 3..];
        } else if let Some(body) = tag.strip_prefix("<![CDATA[") {
            let end = body.find("]]>").ok_or("unclosed CDATA section")?;
            if let Some(top) = stack.last_mut() {
                top.text.push_str(&body[..end]);
            }
            rest = &body[end + 3..];
        } else if let Some(body) = tag.strip_prefix("<!") {
            let end = body.find('>').ok_or("unclosed declaration")?;
            rest = &body[end + 1..];
        } else if let Some(body) = tag.strip_prefix("</") {
            let end = body
                .find('>')
                .ok_or("unclosed end tag (not well-formed XML)")?;
            let name = body[..end].trim();
            let open = stack.pop().ok_or_else(|| {
                format!(
                    "end tag </{}> without a start (not well-formed XML)",
                    clip(name)
                )
            })?;
            let local = name.rsplit(':').next().unwrap_or(name);
            if local != open.local {
                return Err(format!(
                    "mismatched tag </{}> (not well-formed XML)",
                    clip(name)
                ));
            }
            ns.truncate(ns.len() - open.decls);
            close(&mut records, &mut current, stack.len(), open);
            rest = &body[end + 1..];
        } else {
            let (name, attrs, empty, after) = start_tag(&tag[1..])?;
            let before = ns.len();
            for (k, v) in &attrs {
                if k == "xmlns" {
                    ns.push((String::new(), v.clone()));
                } else if let Some(p) = k.strip_prefix("xmlns:") {
                    ns.push((p.to_owned(), v.clone()));
                }
            }
            let (prefix, local) = name.split_once(':').unwrap_or(("", name));
            let in_star = lookup(&ns, prefix) == Some(NS);
            if !seen_root {
                if !in_star {
                    return Err(format!(
                        "the root element <{}> is not in the StAR namespace {NS} (XML format not recognised)",
                        clip(name)
                    ));
                }
                seen_root = true;
            } else if stack.is_empty() {
                return Err("a second root element (not well-formed XML)".into());
            }
            if in_star && local == "StorageUsageRecord" && current.is_none() {
                records.push(Rec::default());
                current = Some((records.len() - 1, stack.len()));
            }
            if in_star
                && local == "RecordIdentity"
                && let Some((i, _)) = current
                && let Some(r) = records.get_mut(i)
                && !r.identity
            {
                r.identity = true;
                for (k, v) in &attrs {
                    let Some((p, l)) = k.split_once(':') else {
                        continue;
                    };
                    if p == "xmlns" || lookup(&ns, p) != Some(NS) {
                        continue;
                    }
                    match l {
                        "recordId" => r.record_id = Some(v.clone()),
                        "createTime" => r.create_time = Some(v.clone()),
                        _ => {}
                    }
                }
            }
            let open = Open {
                local: local.to_owned(),
                in_star,
                decls: ns.len() - before,
                text: String::new(),
            };
            if empty {
                ns.truncate(before);
                close(&mut records, &mut current, stack.len(), open);
            } else {
                stack.push(open);
            }
            rest = after;
        }
    }
    if !rest.trim().is_empty() && stack.is_empty() {
        return Err("text outside the root element (not well-formed XML)".into());
    }
    if !stack.is_empty() || !seen_root {
        return Err("unclosed element: the XML is truncated (not well-formed XML)".into());
    }
    Ok(records)
}

fn lookup<'a>(ns: &'a [(String, String)], prefix: &str) -> Option<&'a str> {
    ns.iter()
        .rev()
        .find(|(p, _)| p == prefix)
        .map(|(_, u)| u.as_str())
}

/// An element ends: its text becomes the record's field if first of its name.
fn close(records: &mut [Rec], current: &mut Option<(usize, usize)>, depth: usize, open: Open) {
    let Some((i, record_depth)) = *current else {
        return;
    };
    if depth == record_depth {
        *current = None;
        return;
    }
    if let Some(r) = records.get_mut(i)
        && open.in_star
        && !r.fields.iter().any(|(k, _)| *k == open.local)
    {
        r.fields.push((open.local, open.text));
    }
}

type StartTag<'a> = (&'a str, Vec<(String, String)>, bool, &'a str);

/// `name attr="v" ... /?>` after the `<`: name, attributes, empty, the rest.
fn start_tag(s: &str) -> Result<StartTag<'_>, String> {
    let name_end = s
        .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
        .ok_or("unclosed token (not well-formed XML)")?;
    let name = &s[..name_end];
    if name.is_empty() {
        return Err("a tag without a name (not well-formed XML)".into());
    }
    let mut attrs = Vec::new();
    let mut rest = &s[name_end..];
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("/>") {
            return Ok((name, attrs, true, after));
        }
        if let Some(after) = rest.strip_prefix('>') {
            return Ok((name, attrs, false, after));
        }
        let eq = rest
            .find('=')
            .ok_or("unclosed token (not well-formed XML)")?;
        let key = rest[..eq].trim().to_owned();
        let value = rest[eq + 1..].trim_start();
        let quote = value
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')
            .ok_or("an attribute value without quotes (not well-formed XML)")?;
        let body = &value[1..];
        let end = body
            .find(quote)
            .ok_or("unclosed token (not well-formed XML)")?;
        attrs.push((key, body[..end].to_owned()));
        rest = &body[end + 1..];
    }
}
