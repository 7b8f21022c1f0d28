//! Accelerator usage record, JSON `APEL-accelerator-message` v0.1.

use std::fmt;

use uuid::Uuid;

use super::ip::saturating_i64;
use super::pyfmt::{JsonValue, json_object};
use super::{Benchmark, CLOUD_TYPE, RecordError, json_text};
use crate::time::Timestamp;

/// A calendar month (UTC): accelerator records are per server per month.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "YearMonthRepr", into = "YearMonthRepr")]
pub struct YearMonth {
    year: i32,
    month: u8,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct YearMonthRepr {
    year: i32,
    month: u8,
}

impl YearMonth {
    pub fn new(year: i32, month: u8) -> Result<Self, RecordError> {
        if (1..=12).contains(&month) {
            Ok(YearMonth { year, month })
        } else {
            Err(RecordError::InvalidValue {
                field: "MeasurementMonth",
                value: month.to_string(),
                reason: "must be 1 to 12",
            })
        }
    }

    /// The month holding an instant.
    pub fn of(t: Timestamp) -> Self {
        let c = t.civil();
        YearMonth {
            year: c.year as i32,
            month: c.month as u8,
        }
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn month(self) -> u8 {
        self.month
    }

    /// Midnight UTC on the first day of the month.
    pub fn start(self) -> Timestamp {
        Timestamp::month_start(i64::from(self.year), u32::from(self.month))
            .unwrap_or(Timestamp::EPOCH)
    }

    pub fn next(self) -> Self {
        if self.month == 12 {
            YearMonth {
                year: self.year + 1,
                month: 1,
            }
        } else {
            YearMonth {
                year: self.year,
                month: self.month + 1,
            }
        }
    }
}

impl TryFrom<YearMonthRepr> for YearMonth {
    type Error = RecordError;
    fn try_from(r: YearMonthRepr) -> Result<Self, Self::Error> {
        YearMonth::new(r.year, r.month)
    }
}

impl From<YearMonth> for YearMonthRepr {
    fn from(m: YearMonth) -> Self {
        YearMonthRepr {
            year: m.year,
            month: m.month,
        }
    }
}

impl fmt::Display for YearMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// One server's accelerators for one calendar month.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceleratorRecord {
    /// AssociatedRecord: the server's VMUUID (AssociatedRecordType `cloud`).
    pub associated_record: Uuid,
    /// SiteName.
    pub site_name: String,
    /// CloudComputeService.
    pub compute_service: String,
    /// GlobalUserName, when known.
    pub global_user_name: Option<String>,
    /// FQAN: the VO.
    pub fqan: String,
    /// Count: accelerators attached.
    pub count: u32,
    /// AvailableDuration in seconds within the month.
    pub available_duration: u64,
    /// ActiveDuration in seconds; `None` = the available duration.
    pub active_duration: Option<u64>,
    /// MeasurementYear and MeasurementMonth.
    pub measurement: YearMonth,
    /// Type (GPU, FPGA, Other).
    pub accelerator_type: String,
    /// Model: `<vendor> <model>`.
    pub model: String,
    /// Cores, when known.
    pub cores: Option<u32>,
    /// BenchmarkType and Benchmark.
    pub benchmark: Option<Benchmark>,
}

impl AcceleratorRecord {
    /// One JSON object, keys in cASO's (pydantic field) order, except that
    /// the score is keyed `Benchmark` as the APEL schema says (cASO writes
    /// `benchmark_value`, which the APEL server does not know).
    pub(super) fn render(&self) -> String {
        let t = |s: &str| json_text(s).into_owned();
        let uuid = self.associated_record.hyphenated().to_string();
        let (site, service, fqan, kind, model) = (
            t(&self.site_name),
            t(&self.compute_service),
            t(&self.fqan),
            t(&self.accelerator_type),
            t(&self.model),
        );
        let name = self.global_user_name.as_deref().map(t);
        let bench_kind = self.benchmark.as_ref().map(|b| t(&b.kind));
        let mut fields = vec![
            ("SiteName", JsonValue::Str(&site)),
            ("CloudType", JsonValue::Str(CLOUD_TYPE)),
            ("CloudComputeService", JsonValue::Str(&service)),
            ("AssociatedRecord", JsonValue::Str(&uuid)),
        ];
        if let Some(name) = &name {
            fields.push(("GlobalUserName", JsonValue::Str(name)));
        }
        fields.extend([
            ("FQAN", JsonValue::Str(&fqan)),
            ("Count", JsonValue::Int(i64::from(self.count))),
            (
                "AvailableDuration",
                JsonValue::Int(saturating_i64(self.available_duration)),
            ),
            (
                "MeasurementMonth",
                JsonValue::Int(i64::from(self.measurement.month())),
            ),
            (
                "MeasurementYear",
                JsonValue::Int(i64::from(self.measurement.year())),
            ),
            ("AssociatedRecordType", JsonValue::Str("cloud")),
            ("Type", JsonValue::Str(&kind)),
        ]);
        if let Some(cores) = self.cores {
            fields.push(("Cores", JsonValue::Int(i64::from(cores))));
        }
        fields.push(("Model", JsonValue::Str(&model)));
        if let (Some(b), Some(kind)) = (&self.benchmark, &bench_kind) {
            fields.push(("Benchmark", JsonValue::Float(b.value.get())));
            fields.push(("BenchmarkType", JsonValue::Str(kind)));
        }
        fields.push((
            "ActiveDuration",
            JsonValue::Int(saturating_i64(
                self.active_duration.unwrap_or(self.available_duration),
            )),
        ));
        let mut out = String::new();
        json_object(&mut out, &fields);
        out
    }
}
