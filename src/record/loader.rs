//! The APEL server loader's rules, checked before sending: a message the
//! server's `dbloader` would reject (apel/apel 2.5.0, and the JSON PRs 459 and
//! 226; see docs/research/apel-loader-rules.md) is refused here with the rule
//! and the record, instead of being sent and lost in the server's reject
//! queue, whose reason never names the record.
//!
//! No false positives: only what the research saw the server reject is
//! refused; anything doubtful (DB column widths, NaN, blank lines) passes.

/// Which rule a message breaks, and in which record (1-based, of `total`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct LoaderRejection {
    /// `(index, total, identifier)`; `None` for a rule on the whole message.
    pub record: Option<(usize, usize, Option<String>)>,
    pub rule: String,
}

impl LoaderRejection {
    fn describe(&self) -> String {
        match &self.record {
            None => format!("APEL loader would reject the message: {}", self.rule),
            Some((i, n, None)) => {
                format!("APEL loader would reject record {i} of {n}: {}", self.rule)
            }
            Some((i, n, Some(id))) => format!(
                "APEL loader would reject record {i} of {n} ({id}): {}",
                self.rule
            ),
        }
    }
}

fn whole(rule: String) -> LoaderRejection {
    LoaderRejection { record: None, rule }
}

/// A rule broken inside one record; the caller adds where.
struct Broken(String);

/// Checks one message body as the server's `RecordFactory` would.
pub fn check(body: &[u8]) -> Result<(), LoaderRejection> {
    // Not text: the outbox's ASCII check speaks for it.
    let Ok(text) = std::str::from_utf8(body) else {
        return Ok(());
    };
    // record_factory.py:71 strips the message first.
    let text = text.py_strip();
    if text.starts_with('<') {
        star::check(text)
    } else if text.starts_with('{') {
        json::check(text)
    } else {
        key_value(text)
    }
}

/// Python's `str.strip()` whitespace (ASCII part).
fn py_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0x1c..=0x1f)
}

/// `str.strip()` on the ASCII whitespace of [`py_space`], by bytes: an
/// ASCII byte never occurs inside a multi-byte character, so the cuts fall
/// on character boundaries. (The loader checks every line of every
/// message: this is its hot path.)
trait PyStrip {
    fn py_strip(&self) -> &str;
}

impl PyStrip for str {
    fn py_strip(&self) -> &str {
        let b = self.as_bytes();
        let start = b.iter().position(|&c| !py_space(c)).unwrap_or(b.len());
        let end = b
            .iter()
            .rposition(|&c| !py_space(c))
            .map_or(start, |i| i + 1);
        self.get(start..end).unwrap_or("")
    }
}

/// `str(value).lower() in ['none', 'null', '']` (apel/db/records/record.py).
fn is_null(v: &str) -> bool {
    v.is_empty() || v.eq_ignore_ascii_case("none") || v.eq_ignore_ascii_case("null")
}

/// Python 3's `int(str)`: sign, digits, single underscores between digits.
fn py_int(v: &str) -> Option<i128> {
    let v = v.py_strip();
    let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
    // Digits, with single underscores between them; one pass.
    let mut prev_digit = false;
    for b in digits.bytes() {
        match b {
            b'0'..=b'9' => prev_digit = true,
            b'_' if prev_digit => prev_digit = false,
            _ => return None,
        }
    }
    if !prev_digit {
        return None; // empty, or ending with `_`
    }
    // Longer than i128: a number all the same, far out of any range.
    let parsed = if v.contains('_') {
        v.replace('_', "").parse::<i128>()
    } else {
        v.parse::<i128>()
    };
    Some(parsed.unwrap_or(i128::MAX))
}

/// Python's `float(str)`, leniently: Rust's grammar (nan, inf, 1e3) plus
/// underscores. Doubt passes.
fn py_float(v: &str) -> bool {
    let v = v.py_strip();
    py_int(v).is_some()
        || if v.contains('_') {
            v.replace('_', "").parse::<f64>().is_ok()
        } else {
            v.parse::<f64>().is_ok()
        }
}

/// `datetime.utcfromtimestamp` accepts years 1..=9999.
const EPOCH_MIN: i128 = -62_135_596_800;
const EPOCH_MAX: i128 = 253_402_300_799;

/// `checked()` for a datetime field (record.py): an integer epoch in range,
/// or `YYYY-MM-DDTHH:MM:SS` followed by a zone name (`Z` becomes `UTC`).
fn cloud_time(key: &str, v: &str) -> Result<(), Broken> {
    if let Some(n) = py_int(v) {
        if (EPOCH_MIN..=EPOCH_MAX).contains(&n) {
            return Ok(());
        }
        return Err(Broken(format!(
            "{key} \"{}\" is out of the server's range (years 1 to 9999)",
            clip(v)
        )));
    }
    let b = v.as_bytes();
    let shape = b.len() > 19
        && b[..19].iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        })
        && b[19..].iter().all(u8::is_ascii_alphabetic);
    if shape {
        return Ok(());
    }
    Err(Broken(format!(
        "{key} \"{}\" is not an integer (epoch seconds) nor YYYY-MM-DDTHH:MM:SSZ",
        clip(v)
    )))
}

/// Field kinds of a key/value record type.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Int,
    Float,
    Time,
}

/// One key/value record type of the server.
struct KvType {
    fields: &'static [(&'static str, Kind)],
    /// Accepted and dropped.
    ignored: &'static [&'static str],
    mandatory: &'static [&'static str],
}

impl KvType {
    /// The bit of `key` in the seen-keys mask of `kv_record` (0: unknown).
    fn bit(&self, key: &str) -> u64 {
        self.fields
            .iter()
            .position(|(k, _)| *k == key)
            .map_or(0, |i| 1u64 << i)
    }

    fn mandatory_bits(&self) -> u64 {
        self.mandatory.iter().fold(0, |m, k| m | self.bit(k))
    }
}

use Kind::{Float, Int, Text, Time};

/// apel/db/records/cloud.py: `_db_fields` (the message fields plus VO,
/// VOGroup, VORole), `_int_fields`, `_float_fields`, `_datetime_fields`.
static CLOUD: KvType = KvType {
    fields: &[
        ("RecordCreateTime", Time),
        ("VMUUID", Text),
        ("SiteName", Text),
        ("CloudComputeService", Text),
        ("MachineName", Text),
        ("LocalUserId", Text),
        ("LocalGroupId", Text),
        ("GlobalUserName", Text),
        ("FQAN", Text),
        ("VO", Text),
        ("VOGroup", Text),
        ("VORole", Text),
        ("Status", Text),
        ("StartTime", Time),
        ("EndTime", Time),
        ("SuspendDuration", Int),
        ("WallDuration", Int),
        ("CpuDuration", Int),
        ("CpuCount", Float),
        ("NetworkType", Text),
        ("NetworkInbound", Int),
        ("NetworkOutbound", Int),
        ("PublicIPCount", Int),
        ("Memory", Int),
        ("Disk", Int),
        ("BenchmarkType", Text),
        ("Benchmark", Float),
        ("StorageRecordId", Text),
        ("ImageId", Text),
        ("CloudType", Text),
    ],
    // cloud.py `_ignored_fields`.
    ignored: &[
        "UpdateTime",
        "MeasurementTime",
        "MeasurementMonth",
        "MeasurementYear",
    ],
    // cloud.py `_mandatory_fields`.
    mandatory: &["VMUUID", "SiteName"],
};

/// apel/db/__init__.py headers whose records we do not write and do not
/// check: the server knows them (matched on the whole header line).
static OTHER_HEADERS: &[&str] = &[
    "APEL-summary-job-message: v0.2",
    "APEL-summary-job-message: v0.3",
    "APEL-summary-job-message: v0.4",
    "APEL-normalised-summary-message: v0.4",
];

/// apel/db/loader/record_factory.py: types matched by the header's name,
/// whatever the version.
static OTHER_NAMES: &[&str] = &[
    "APEL-individual-job-message",
    "APEL-sync-message",
    "APEL-cloud-summary-message",
];

/// The APEL key/value format: header line, records split on `%%`.
fn key_value(text: &str) -> Result<(), LoaderRejection> {
    let (header, rest) = text.split_once('\n').unwrap_or((text, ""));
    let header = header.trim_end_matches('\r');
    let Some((name, _version)) = header.split_once(':') else {
        return Err(whole(format!(
            "header line \"{}\" has no ':' (the server: Message header is incorrect)",
            clip(header)
        )));
    };
    let name = name.py_strip();
    let stripped = header.py_strip();
    if OTHER_NAMES.contains(&name) || OTHER_HEADERS.contains(&stripped) {
        return Ok(());
    }
    if name != "APEL-cloud-message" {
        return Err(whole(format!(
            "message type \"{}\" not recognised (the header must be APEL-cloud-message: v0.4)",
            clip(header)
        )));
    }
    let chunks: Vec<&str> = split_records(rest)
        .filter(|c| !c.py_strip().is_empty())
        .collect();
    let total = chunks.len();
    let mandatory = CLOUD.mandatory_bits();
    for (i, chunk) in chunks.iter().enumerate() {
        if let Err(Broken(rule)) = kv_record(&CLOUD, mandatory, chunk) {
            let id = kv_id(chunk).map(|v| format!("VMUUID \"{}\"", clip(v)));
            return Err(LoaderRejection {
                record: Some((i + 1, total, id)),
                rule,
            });
        }
    }
    Ok(())
}

/// `text.split("%%")`, by memchr's substring search.
fn split_records(text: &str) -> impl Iterator<Item = &str> {
    let mut cuts = memchr::memmem::find_iter(text.as_bytes(), b"%%");
    let mut start = Some(0);
    std::iter::from_fn(move || {
        let from = start?;
        // Non-overlapping, as str::split: a cut at `at` resumes at `at + 2`.
        let mut next = cuts.next();
        while let Some(at) = next
            && at < from
        {
            next = cuts.next();
        }
        match next {
            Some(at) => {
                start = Some(at + 2);
                text.get(from..at)
            }
            None => {
                start = None;
                text.get(from..)
            }
        }
    })
}

/// `text.lines()` by memchr (a final `\r` is left to `py_strip`).
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let r = rest?;
        match memchr::memchr(b'\n', r.as_bytes()) {
            Some(i) => {
                rest = r.get(i + 1..).filter(|t| !t.is_empty());
                r.get(..i)
            }
            None => {
                rest = None;
                Some(r).filter(|t| !t.is_empty())
            }
        }
    })
}

fn kv_id(chunk: &str) -> Option<&str> {
    chunk.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "VMUUID").then(|| v.py_strip())
    })
}

/// `Record.load_from_msg` (record.py) then cloud.py `_check_fields`.
fn kv_record(t: &KvType, mandatory: u64, chunk: &str) -> Result<(), Broken> {
    // Keys seen, by their index in `fields` then `ignored` (at most 64: a
    // bit each, no hashing on the path of every line of every message).
    let mut seen: u64 = 0;
    let mut next = 0;
    for line in lines(chunk.py_strip()) {
        let line = line.py_strip();
        // A blank line inside a record: not seen rejected; let it pass.
        if line.is_empty() {
            continue;
        }
        let colon = memchr::memchr(b':', line.as_bytes());
        let Some((key, value)) = colon.and_then(|i| Some((line.get(..i)?, line.get(i + 1..)?)))
        else {
            return Err(Broken(format!(
                "line \"{}\" is not a Key: value pair",
                clip(line)
            )));
        };
        let (key, value) = (key.py_strip(), value.py_strip());
        // Records list their keys in the table's order, nearly always: the
        // search starts after the last key found.
        let n = t.fields.len();
        let field = (0..n)
            .map(|i| (next + i) % n)
            .find(|&i| t.fields[i].0 == key);
        if let Some(i) = field {
            next = i + 1;
        }
        let index = field.or_else(|| {
            let i = t.ignored.iter().position(|k| *k == key)?;
            Some(n + i)
        });
        let Some(index) = index else {
            return Err(Broken(format!("unknown field \"{}\"", clip(key))));
        };
        let bit = 1u64 << index;
        if seen & bit != 0 {
            return Err(Broken(format!(
                "{key} given twice: a missing %% between two records merges them and the server keeps only the last"
            )));
        }
        seen |= bit;
        let Some(&(_, kind)) = field.map(|i| &t.fields[i]) else {
            continue; // ignored
        };
        if is_null(value) {
            if mandatory & bit != 0 {
                return Err(Broken(format!(
                    "mandatory field {key} is null (\"{value}\")"
                )));
            }
            continue;
        }
        match kind {
            Text => {}
            Int if py_int(value).is_none() => {
                return Err(Broken(format!(
                    "{key} \"{}\" is not an integer",
                    clip(value)
                )));
            }
            Float if !py_float(value) => {
                return Err(Broken(format!("{key} \"{}\" is not a number", clip(value))));
            }
            Time => cloud_time(key, value)?,
            Int | Float => {}
        }
    }
    if seen & mandatory != mandatory {
        let missing = t
            .mandatory
            .iter()
            .find(|k| t.bit(k) & seen == 0)
            .unwrap_or(&"?");
        return Err(Broken(format!("mandatory field {missing} is missing")));
    }
    Ok(())
}

/// A value as quoted in a reason: at most 80 characters.
fn clip(v: &str) -> String {
    if v.chars().count() <= 80 {
        v.to_owned()
    } else {
        let mut s: String = v.chars().take(80).collect();
        s.push_str("...");
        s
    }
}

mod star;

mod json;

#[cfg(test)]
pub(super) mod tests;
