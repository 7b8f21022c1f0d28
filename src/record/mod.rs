//! APEL accounting records and their rendering to the messages cASO 5.2.2
//! spools for SSM (FORMATS.md section 2).
//!
//! Four record types, one per message format: [`CloudRecord`] (APEL cloud
//! v0.4 key/value text), [`IpRecord`] (public IP v0.2 JSON),
//! [`AcceleratorRecord`] (accelerator v0.1 JSON) and [`StorageRecord`] (EMI
//! StAR XML); and a fifth that is not APEL's: [`EnergyRecord`], cASO's JSON
//! for the GreenDIGIT CIM service (never rendered to an APEL message: the
//! ssm messenger refuses energy at load time). [`render_messages`] turns
//! the APEL records into [`Message`]s: pure ASCII,
//! at most `max_records` records and [`MAX_MESSAGE_BYTES`] bytes each.
//!
//! Output is byte-for-byte what cASO writes, except for the documented fixes
//! (see `tests/records/oracle.rs`): our own [`CLOUD_TYPE`], only printable
//! ASCII in every cloud field ([`ascii_text`]) and no control characters in
//! any field ([`json_text`], [`xml_text`]), no `%%` inside cloud values, times in
//! UTC whatever the host zone, `Benchmark` (not `benchmark_value`) in
//! accelerator records, storage `EndTime` = end of the period, and the
//! per-message size limit. [`loader`] checks a message as the APEL
//! server's loader will, before it is sent.

mod accelerator;
mod ascii;
mod cloud;
mod energy;
#[cfg(test)]
mod escape_props;
mod ip;
pub mod loader;
mod message;
mod pyfmt;
pub mod split;
mod storage;

use std::fmt;
use std::str::FromStr;

pub use accelerator::{AcceleratorRecord, YearMonth};
pub use ascii::{ascii_text, json_text, xml_text};
pub use cloud::{CloudRecord, Status};
pub use energy::{
    DIFFERENCES as ENERGY_DIFFERENCES, EnergyContext, EnergyRecord, EnergyVm, pydantic_float,
    render_array as render_energy_array,
};
pub use ip::{IpRecord, IpVersion};
pub use message::{MAX_MESSAGE_BYTES, Message, render_messages};
pub use storage::StorageRecord;

/// What we write as `CloudType`: same shape as cASO's
/// `caso/5.2.2 (OpenStack)`, naming the program that really wrote the record.
pub const CLOUD_TYPE: &str = concat!(
    "cloud-accounting/",
    env!("CARGO_PKG_VERSION"),
    " (OpenStack)"
);

/// One accounting record of any type.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Record {
    Cloud(CloudRecord),
    Ip(IpRecord),
    Accelerator(AcceleratorRecord),
    Storage(StorageRecord),
    Energy(EnergyRecord),
}

impl Record {
    pub fn kind(&self) -> RecordType {
        match self {
            Record::Cloud(_) => RecordType::Cloud,
            Record::Ip(_) => RecordType::Ip,
            Record::Accelerator(_) => RecordType::Accelerator,
            Record::Storage(_) => RecordType::Storage,
            Record::Energy(_) => RecordType::Energy,
        }
    }

    /// What identifies the record to a human (error messages, logs).
    pub fn id(&self) -> String {
        match self {
            Record::Cloud(r) => format!("VMUUID {}", r.vm_uuid),
            Record::Ip(r) => format!("uuid {}", r.uuid),
            Record::Accelerator(r) => {
                format!("AssociatedRecord {} {}", r.associated_record, r.measurement)
            }
            Record::Storage(r) => format!("volume {}", r.volume_id),
            Record::Energy(r) => format!("ExecUnitID {}", r.exec_unit_id),
        }
    }
}

impl From<CloudRecord> for Record {
    fn from(r: CloudRecord) -> Self {
        Record::Cloud(r)
    }
}
impl From<IpRecord> for Record {
    fn from(r: IpRecord) -> Self {
        Record::Ip(r)
    }
}
impl From<AcceleratorRecord> for Record {
    fn from(r: AcceleratorRecord) -> Self {
        Record::Accelerator(r)
    }
}
impl From<StorageRecord> for Record {
    fn from(r: StorageRecord) -> Self {
        Record::Storage(r)
    }
}
impl From<EnergyRecord> for Record {
    fn from(r: EnergyRecord) -> Self {
        Record::Energy(r)
    }
}

/// The record types, named as in cASO's `record_types` option. Message
/// order follows cASO: every cloud message, then IP, accelerator, storage
/// (energy records are not APEL messages).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum RecordType {
    Cloud,
    Ip,
    Accelerator,
    Storage,
    Energy,
}

impl RecordType {
    pub const ALL: [RecordType; 5] = [
        RecordType::Cloud,
        RecordType::Ip,
        RecordType::Accelerator,
        RecordType::Storage,
        RecordType::Energy,
    ];

    /// The types APEL takes (what the ssm messenger can send).
    pub const APEL: [RecordType; 4] = [
        RecordType::Cloud,
        RecordType::Ip,
        RecordType::Accelerator,
        RecordType::Storage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::Cloud => "cloud",
            RecordType::Ip => "ip",
            RecordType::Accelerator => "accelerator",
            RecordType::Storage => "storage",
            RecordType::Energy => "energy",
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown record type {0:?}: expected one of cloud, ip, accelerator, storage, energy")]
pub struct UnknownRecordType(pub String);

impl FromStr for RecordType {
    type Err = UnknownRecordType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RecordType::ALL
            .into_iter()
            .find(|t| t.as_str() == s.trim())
            .ok_or_else(|| UnknownRecordType(s.to_string()))
    }
}

/// A benchmark score: a finite number (cASO would write a non-finite one as
/// `Benchmark: None`). Printed as Python prints floats (`4.4`, `10.0`, `1e-05`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct BenchmarkValue(f64);

impl BenchmarkValue {
    pub fn new(value: f64) -> Result<Self, RecordError> {
        if value.is_finite() {
            Ok(BenchmarkValue(value))
        } else {
            Err(RecordError::InvalidValue {
                field: "Benchmark",
                value: value.to_string(),
                reason: "not a finite number",
            })
        }
    }

    /// Parses a flavor extra spec such as `"4.4"` (surrounding blanks allowed).
    pub fn parse(text: &str) -> Result<Self, RecordError> {
        let value = text
            .trim()
            .parse::<f64>()
            .map_err(|_| RecordError::InvalidValue {
                field: "Benchmark",
                value: text.to_string(),
                reason: "not a number",
            })?;
        BenchmarkValue::new(value)
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for BenchmarkValue {
    type Error = RecordError;
    fn try_from(value: f64) -> Result<Self, Self::Error> {
        BenchmarkValue::new(value)
    }
}

impl From<BenchmarkValue> for f64 {
    fn from(v: BenchmarkValue) -> f64 {
        v.0
    }
}

impl fmt::Display for BenchmarkValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&pyfmt::float_repr(self.0))
    }
}

/// A benchmark: its type (e.g. `HEPSPEC`) and score always come together
/// (cASO writes whichever half a flavor happens to carry).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Benchmark {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: BenchmarkValue,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    #[error(
        "{kind} record {id} alone renders to {bytes} bytes, over the {limit}-byte message limit; it cannot be sent"
    )]
    RecordTooLarge {
        kind: RecordType,
        id: String,
        bytes: usize,
        limit: usize,
    },
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidValue {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_type_parses_caso_names_only() {
        for t in RecordType::ALL {
            assert_eq!(t.as_str().parse::<RecordType>().unwrap(), t);
        }
        assert_eq!(" ip ".parse::<RecordType>().unwrap(), RecordType::Ip);
        let err = "power".parse::<RecordType>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown record type \"power\": expected one of cloud, ip, accelerator, storage, energy"
        );
    }

    #[test]
    fn cloud_type_is_ours() {
        assert_eq!(
            CLOUD_TYPE,
            format!("cloud-accounting/{} (OpenStack)", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn benchmark_values_are_finite_and_print_like_python() {
        assert_eq!(BenchmarkValue::parse(" 4.4 ").unwrap().to_string(), "4.4");
        assert_eq!(BenchmarkValue::parse("10").unwrap().to_string(), "10.0");
        assert_eq!(BenchmarkValue::parse("1e-5").unwrap().to_string(), "1e-05");
        for bad in ["inf", "NaN", "", "fast"] {
            assert!(BenchmarkValue::parse(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<BenchmarkValue>("1e999").is_err());
    }
}
