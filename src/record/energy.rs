//! Energy record (cASO 5.2.2 `EnergyRecord`), the JSON the GreenDIGIT CIM
//! service takes, and its computation from a VM, its energy and the period
//! (cASO's `EnergyConsumptionExtractor._build_energy_record`).
//!
//! The rendering is byte for byte cASO's `model_dump_json(by_alias=True,
//! exclude_none=True)` (pydantic 2: keys in field order, no blanks, floats
//! as pydantic writes them, UTF-8 kept), except for the named differences in
//! [`DIFFERENCES`].

use std::fmt::Write as _;

use uuid::Uuid;

use super::{CLOUD_TYPE, json_text};
use crate::time::Timestamp;

/// Every way our energy records differ from cASO 5.2.2's, by name (the
/// differential tests name the one each case shows).
pub const DIFFERENCES: &[(&str, &str)] = &[
    (
        "cloud-type",
        "CloudType names this program (CLOUD_TYPE), not caso/5.2.2",
    ),
    (
        "deleted-vms",
        "defect 1: VMs deleted inside the period are accounted (cASO lists current servers only); the extractor passes them in",
    ),
    (
        "real-end",
        "defect 2: EndExecTime is when a VM ended inside the period, not extract_to, so wall and CPU time are only the time it existed",
    ),
    (
        "embedded-flavor",
        "defect 4: vCPUs come from the server's embedded flavor, not the project's flavor list (cASO falls back to 1 vCPU for a private or deleted flavor)",
    ),
    (
        "prometheus-sum",
        "defect 6: EnergyWh is Prometheus's sum of the very points cASO fetches one by one; it equals cASO's to a relative 1e-12, not bit for bit (and Work, CPU time over it, likewise)",
    ),
    (
        "no-controls",
        "control characters are dropped from text fields (cASO writes them as \\u00XX), the rule of every JSON record of ours",
    ),
];

/// The energy of one VM over one period, with cASO's fields.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnergyRecord {
    /// ExecUnitID: the VM's id.
    pub exec_unit_id: Uuid,
    /// StartExecTime: max(created, period start).
    pub start_exec_time: Timestamp,
    /// EndExecTime: see [`EnergyVm::ended`].
    pub end_exec_time: Timestamp,
    /// EnergyWh: the samples' energy times the CPU normalization factor.
    pub energy_wh: f64,
    /// Work: CPU seconds per Wh (0.0 without positive energy).
    pub work: f64,
    /// Efficiency: CPU time over wall time x vCPUs (1.0, or 0.0 for no wall time).
    pub efficiency: f64,
    /// WallClockTime_s.
    pub wall_clock_time_s: i64,
    /// CpuDuration_s: wall time x vCPUs.
    pub cpu_duration_s: i64,
    /// SuspendDuration_s: always 0, as cASO (not known from the APIs).
    pub suspend_duration_s: i64,
    /// CPUNormalizationFactor (`[prometheus] cpu_normalization_factor`).
    pub cpu_normalization_factor: f64,
    /// ExecUnitFinished: 1 for a VM that ended, else 0.
    pub exec_unit_finished: i64,
    /// Status: the Nova status, lower case.
    pub status: String,
    /// Owner: the project's VO.
    pub owner: String,
    /// SiteName.
    pub site_name: String,
    /// CloudComputeService.
    pub compute_service: String,
}

/// What the energy computation needs of a VM.
#[derive(Clone, Debug, PartialEq)]
pub struct EnergyVm {
    pub id: Uuid,
    /// Nova status as Nova writes it (`ACTIVE`, `DELETED`...).
    pub status: String,
    pub created: Timestamp,
    /// When the VM ended (deleted or terminated), if it has. cASO never
    /// knows this (it lists current servers only) and ends every record at
    /// extract_to: our fix "real-end".
    pub ended: Option<Timestamp>,
    /// vCPUs of the server's embedded flavor ("embedded-flavor"); `None`
    /// (no flavor known) counts 1, as cASO does.
    pub vcpus: Option<u32>,
}

/// The record-independent inputs: the site, the VO, the period, the factor.
#[derive(Clone, Debug, PartialEq)]
pub struct EnergyContext {
    pub site_name: String,
    pub service_name: String,
    pub vo: String,
    pub from: Timestamp,
    pub to: Timestamp,
    pub cpu_normalization_factor: f64,
}

impl EnergyRecord {
    /// cASO's record for `vm` given the energy of its samples (Wh, before
    /// the normalization factor), or `None` where cASO makes none: no
    /// positive energy (`energy_value <= 0`; a NaN sum is not, so it is
    /// kept, rendered `null`, as cASO does), or created at or after the end
    /// of the period. Ours also makes none for a VM that ended before the
    /// period started (cASO never sees such a VM).
    pub fn build(vm: &EnergyVm, energy: f64, ctx: &EnergyContext) -> Option<EnergyRecord> {
        // cASO's test is `energy_value <= 0`, which NaN passes.
        if energy <= 0.0 || vm.created >= ctx.to {
            return None;
        }
        let start = vm.created.max(ctx.from);
        // cASO: end = extract_to. Ours ("real-end"): the VM's end when it
        // ended inside the period.
        let end = match vm.ended {
            Some(ended) if ended < start => return None,
            Some(ended) => ended.min(ctx.to),
            None => ctx.to,
        };
        // int(timedelta.total_seconds()): truncated toward zero.
        let wall = (end.unix_micros() - start.unix_micros()) / 1_000_000;
        let cpus = i64::from(vm.vcpus.unwrap_or(1));
        let cpu = wall.saturating_mul(cpus);
        let status = vm.status.to_lowercase();
        // cASO: finished only for status "deleted"; a VM we know ended in
        // the period is finished too ("real-end").
        let finished = status == "deleted" || vm.ended.is_some_and(|e| e <= ctx.to);
        let energy_wh = energy * ctx.cpu_normalization_factor;
        // Python: int / float and int / int are correctly rounded divisions,
        // as f64 division of the same values (all below 2^53).
        let work = if energy_wh > 0.0 {
            cpu as f64 / energy_wh
        } else {
            0.0
        };
        let efficiency = if wall > 0 {
            cpu as f64 / wall.saturating_mul(cpus) as f64
        } else {
            0.0
        };
        Some(EnergyRecord {
            exec_unit_id: vm.id,
            start_exec_time: start,
            end_exec_time: end,
            energy_wh,
            work,
            efficiency,
            wall_clock_time_s: wall,
            cpu_duration_s: cpu,
            suspend_duration_s: 0,
            cpu_normalization_factor: ctx.cpu_normalization_factor,
            exec_unit_finished: i64::from(finished),
            status,
            owner: ctx.vo.clone(),
            site_name: ctx.site_name.clone(),
            compute_service: ctx.service_name.clone(),
        })
    }

    /// The JSON object cASO's `model_dump_json(by_alias=True,
    /// exclude_none=True)` writes: base fields first (SiteName, CloudType,
    /// CloudComputeService), then the energy fields.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(512);
        out.push('{');
        let mut first = true;
        let mut key = |out: &mut String, k: &str| {
            if !first {
                out.push(',');
            }
            first = false;
            out.push('"');
            out.push_str(k);
            out.push_str("\":");
        };
        key(&mut out, "SiteName");
        string(&mut out, &self.site_name);
        key(&mut out, "CloudType");
        string(&mut out, CLOUD_TYPE);
        key(&mut out, "CloudComputeService");
        string(&mut out, &self.compute_service);
        key(&mut out, "ExecUnitID");
        string(&mut out, &self.exec_unit_id.hyphenated().to_string());
        key(&mut out, "StartExecTime");
        string(&mut out, &iso_seconds(self.start_exec_time));
        key(&mut out, "EndExecTime");
        string(&mut out, &iso_seconds(self.end_exec_time));
        for (k, x) in [
            ("EnergyWh", self.energy_wh),
            ("Work", self.work),
            ("Efficiency", self.efficiency),
        ] {
            key(&mut out, k);
            out.push_str(&pydantic_float(x));
        }
        for (k, n) in [
            ("WallClockTime_s", self.wall_clock_time_s),
            ("CpuDuration_s", self.cpu_duration_s),
            ("SuspendDuration_s", self.suspend_duration_s),
        ] {
            key(&mut out, k);
            let _ = write!(out, "{n}");
        }
        key(&mut out, "CPUNormalizationFactor");
        out.push_str(&pydantic_float(self.cpu_normalization_factor));
        key(&mut out, "ExecUnitFinished");
        let _ = write!(out, "{}", self.exec_unit_finished);
        key(&mut out, "Status");
        string(&mut out, &self.status);
        key(&mut out, "Owner");
        string(&mut out, &self.owner);
        out.push('}');
        out
    }
}

/// The JSON array of records the CIM service takes (what cASO posts, up to
/// the separators: cASO re-encodes with `json.dumps`).
pub fn render_array(records: &[EnergyRecord]) -> String {
    let mut out = String::from("[");
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&r.render());
    }
    out.push(']');
    out
}

/// `strftime("%Y-%m-%dT%H:%M:%SZ")`: whole seconds, microseconds dropped.
fn iso_seconds(t: Timestamp) -> String {
    t.truncate_to_second().to_string()
}

/// A JSON string as pydantic writes it (serde_json's escapes, UTF-8 kept),
/// control characters dropped first ("no-controls").
fn string(out: &mut String, s: &str) {
    // serde_json never fails on a str.
    if let Ok(quoted) = serde_json::to_string(json_text(s).as_ref()) {
        out.push_str(&quoted);
    }
}

/// A float as pydantic 2 writes it in JSON: the shortest round-trip digits
/// (ryu), scientific outside [1e-5, 1e16) with an explicit
/// `+` on positive exponents (`1e+16`, `1e-7`), `.0` on integral values,
/// and `null` for NaN and infinities.
pub fn pydantic_float(x: f64) -> String {
    if !x.is_finite() {
        return "null".to_string();
    }
    // serde_json writes finite floats exactly so (`1e+16`, `1e-7`).
    serde_json::to_string(&x).unwrap_or_else(|_| "null".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> EnergyContext {
        EnergyContext {
            site_name: "SITE".into(),
            service_name: "https://keystone.example:5000/v3".into(),
            vo: "vo.example".into(),
            from: Timestamp::from_unix(1_700_000_000),
            to: Timestamp::from_unix(1_700_086_400),
            cpu_normalization_factor: 1.0,
        }
    }

    fn vm() -> EnergyVm {
        EnergyVm {
            id: Uuid::from_u128(7),
            status: "ACTIVE".into(),
            created: Timestamp::from_unix(1_699_000_000),
            ended: None,
            vcpus: Some(4),
        }
    }

    #[test]
    fn floats_are_written_as_pydantic_writes_them() {
        for (x, s) in [
            (0.1, "0.1"),
            (1e-7, "1e-7"),
            (3.0, "3.0"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1e-5, "0.00001"),
            (1.2345678901234567e20, "1.2345678901234567e+20"),
            (-0.0, "-0.0"),
            (5e-324, "5e-324"),
            (f64::NAN, "null"),
            (f64::NEG_INFINITY, "null"),
        ] {
            assert_eq!(pydantic_float(x), s, "{x:e}");
        }
    }

    #[test]
    fn a_running_vm_is_accounted_to_the_end_of_the_period() {
        let r = EnergyRecord::build(&vm(), 12.5, &ctx()).unwrap();
        assert_eq!(r.start_exec_time, ctx().from);
        assert_eq!(r.end_exec_time, ctx().to);
        assert_eq!(r.wall_clock_time_s, 86_400);
        assert_eq!(r.cpu_duration_s, 4 * 86_400);
        assert_eq!(r.work, (4 * 86_400) as f64 / 12.5);
        assert_eq!(r.efficiency, 1.0);
        assert_eq!(r.exec_unit_finished, 0);
        assert_eq!(r.status, "active");
        assert!(r.render().starts_with(&format!(
            "{{\"SiteName\":\"SITE\",\"CloudType\":\"{CLOUD_TYPE}\",\"CloudComputeService\""
        )));
        assert!(
            r.render().ends_with(
                ",\"ExecUnitFinished\":0,\"Status\":\"active\",\"Owner\":\"vo.example\"}"
            )
        );
    }

    #[test]
    fn a_vm_deleted_in_the_period_ends_when_it_ended() {
        let mut v = vm();
        v.status = "DELETED".into();
        v.ended = Some(Timestamp::from_unix(1_700_003_600));
        let r = EnergyRecord::build(&v, 1.0, &ctx()).unwrap();
        assert_eq!(r.end_exec_time, Timestamp::from_unix(1_700_003_600));
        assert_eq!(r.wall_clock_time_s, 3600);
        assert_eq!(r.exec_unit_finished, 1);
        v.ended = Some(Timestamp::from_unix(1_699_999_999));
        assert_eq!(EnergyRecord::build(&v, 1.0, &ctx()), None);
    }

    #[test]
    fn no_record_without_positive_energy_but_nan_is_kept_as_caso_keeps_it() {
        assert_eq!(EnergyRecord::build(&vm(), 0.0, &ctx()), None);
        assert_eq!(EnergyRecord::build(&vm(), -1.0, &ctx()), None);
        let nan = EnergyRecord::build(&vm(), f64::NAN, &ctx()).unwrap();
        assert!(nan.render().contains("\"EnergyWh\":null,\"Work\":0.0,"));
        let mut late = vm();
        late.created = ctx().to;
        assert_eq!(EnergyRecord::build(&late, 1.0, &ctx()), None);
    }

    #[test]
    fn times_have_whole_seconds_and_wall_time_truncates() {
        let mut c = ctx();
        c.from = Timestamp::from_unix_micros(1_700_000_000_900_000);
        let r = EnergyRecord::build(&vm(), 1.0, &c).unwrap();
        assert_eq!(r.wall_clock_time_s, 86_399);
        assert!(
            r.render()
                .contains("\"StartExecTime\":\"2023-11-14T22:13:20Z\"")
        );
    }

    #[test]
    fn text_keeps_utf8_and_drops_controls() {
        let mut c = ctx();
        c.vo = "v\"o\\ é\u{2028}\u{1}\n😀".into();
        let r = EnergyRecord::build(&vm(), 1.0, &c).unwrap();
        assert!(r.render().contains("\"Owner\":\"v\\\"o\\\\ é\u{2028}😀\"}"));
    }
}
