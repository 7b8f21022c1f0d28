//! JSON messages. No released APEL server takes them (the research, §5.1):
//! accelerator v0.1 follows PR 459 (`apel/common/message_schemas.py`,
//! `apel/db/records/accelerator.py`), public IP follows PR 226
//! (`apel/db/records/ip_record.py`), checked only where what cASO writes
//! agrees with it.

use serde_json::Value;

use super::{Broken, LoaderRejection, clip, is_null, whole};

/// Required in every record, and whether each must be a string or a number.
struct JsonType {
    name: &'static str,
    /// (field, must be an integer; otherwise a string).
    required: &'static [(&'static str, JType)],
    /// Keys the server knows (None: not checked).
    known: Option<&'static [&'static str]>,
    id: &'static str,
}

#[derive(Clone, Copy)]
enum JType {
    Str,
    Int,
    Num,
}

/// PR 459 message_schemas.py:43-53 and accelerator.py `_mandatory_fields`;
/// known: the schema's properties plus `_ignored_fields`.
static ACCELERATOR: JsonType = JsonType {
    name: "APEL-accelerator-message",
    required: &[
        ("MeasurementMonth", JType::Int),
        ("MeasurementYear", JType::Int),
        ("AssociatedRecordType", JType::Str),
        ("AssociatedRecord", JType::Str),
        ("FQAN", JType::Str),
        ("SiteName", JType::Str),
        ("Count", JType::Num),
        ("AvailableDuration", JType::Int),
        ("Type", JType::Str),
    ],
    known: Some(&[
        "MeasurementMonth",
        "MeasurementYear",
        "AssociatedRecordType",
        "AssociatedRecord",
        "GlobalUserName",
        "FQAN",
        "SiteName",
        "Count",
        "Cores",
        "ActiveDuration",
        "AvailableDuration",
        "BenchmarkType",
        "Benchmark",
        "Type",
        "Model",
        "CloudType",
        "CloudComputeService",
    ]),
    id: "AssociatedRecord",
};

/// PR 226 message_schemas.py:38-48, only the fields cASO always writes
/// (it leaves out LocalUser and GlobalUserName when unknown, and writes
/// `uuid`); PR 226 is Python 2 only and on no branch.
static IP: JsonType = JsonType {
    name: "APEL Public IP message",
    required: &[
        ("MeasurementTime", JType::Int),
        ("SiteName", JType::Str),
        ("CloudType", JType::Str),
        ("LocalGroup", JType::Str),
        ("FQAN", JType::Str),
        ("IPVersion", JType::Int),
        ("IPCount", JType::Int),
    ],
    known: None,
    id: "uuid",
};

/// jsonschema's "integer": also 3600.0.
fn is_int(v: &Value) -> bool {
    v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0)
}

pub(super) fn check(text: &str) -> Result<(), LoaderRejection> {
    let msg: Value =
        serde_json::from_str(text).map_err(|e| whole(format!("malformed JSON: {e}")))?;
    let Some(kind) = msg.get("Type") else {
        return Err(whole("the JSON message has no \"Type\"".into()));
    };
    let t = match kind.as_str() {
        Some(n) if n == ACCELERATOR.name => &ACCELERATOR,
        Some(n) if n == IP.name => &IP,
        _ => {
            return Err(whole(format!(
                "unsupported JSON message type {}",
                clip(&kind.to_string())
            )));
        }
    };
    if t.name == ACCELERATOR.name && msg.get("Version").and_then(Value::as_str) != Some("0.1") {
        return Err(whole(
            "an accelerator message's \"Version\" must be \"0.1\"".into(),
        ));
    }
    let Some(records) = msg.get("UsageRecords").and_then(Value::as_array) else {
        return Err(whole("\"UsageRecords\" is missing or not an array".into()));
    };
    if records.is_empty() || records.len() > 1000 {
        return Err(whole(format!(
            "\"UsageRecords\" holds {} records, not 1 to 1000",
            records.len()
        )));
    }
    let total = records.len();
    for (i, r) in records.iter().enumerate() {
        if let Err(Broken(rule)) = check_record(t, r) {
            let id = r
                .get(t.id)
                .and_then(Value::as_str)
                .map(|v| format!("{} \"{}\"", t.id, clip(v)));
            return Err(LoaderRejection {
                record: Some((i + 1, total, id)),
                rule,
            });
        }
    }
    Ok(())
}

fn check_record(t: &JsonType, r: &Value) -> Result<(), Broken> {
    let Some(obj) = r.as_object() else {
        return Err(Broken("the record is not a JSON object".into()));
    };
    for (name, kind) in t.required {
        let Some(v) = obj.get(*name) else {
            return Err(Broken(format!("required field {name} is missing")));
        };
        let ok = match kind {
            JType::Str => v.as_str().is_some_and(|s| !is_null(s)),
            JType::Int => is_int(v),
            JType::Num => v.is_number(),
        };
        if !ok {
            let want = match kind {
                JType::Str => "a non-null string",
                JType::Int => "an integer",
                JType::Num => "a number",
            };
            return Err(Broken(format!(
                "{name} {} is not {want}",
                clip(&v.to_string())
            )));
        }
    }
    if let Some(known) = t.known
        && let Some(key) = obj.keys().find(|k| !known.contains(&k.as_str()))
    {
        return Err(Broken(format!("unknown field \"{}\"", clip(key))));
    }
    Ok(())
}
