//! Public IP usage record, JSON `APEL Public IP message` v0.2.

use uuid::Uuid;

use super::pyfmt::{JsonValue, json_object};
use super::{CLOUD_TYPE, json_text};
use crate::time::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum IpVersion {
    V4,
    V6,
}

impl IpVersion {
    pub fn number(self) -> u8 {
        match self {
            IpVersion::V4 => 4,
            IpVersion::V6 => 6,
        }
    }
}

impl TryFrom<u8> for IpVersion {
    type Error = super::RecordError;
    fn try_from(n: u8) -> Result<Self, Self::Error> {
        match n {
            4 => Ok(IpVersion::V4),
            6 => Ok(IpVersion::V6),
            _ => Err(super::RecordError::InvalidValue {
                field: "IPVersion",
                value: n.to_string(),
                reason: "must be 4 or 6",
            }),
        }
    }
}

impl From<IpVersion> for u8 {
    fn from(v: IpVersion) -> u8 {
        v.number()
    }
}

/// Public IPs held by one user of a project for one IP version.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpRecord {
    /// uuid: a fresh random id per record (`Uuid::new_v4()`).
    pub uuid: Uuid,
    /// SiteName.
    pub site_name: String,
    /// CloudComputeService.
    pub compute_service: String,
    /// LocalUser: the owner's Keystone user id, when known.
    pub local_user: Option<String>,
    /// GlobalUserName: the owner's Keystone user name, when known.
    pub global_user_name: Option<String>,
    /// LocalGroup: the project id.
    pub local_group: String,
    /// FQAN: the VO.
    pub fqan: String,
    /// IPVersion.
    pub ip_version: IpVersion,
    /// IPCount.
    pub ip_count: u64,
    /// MeasurementTime.
    pub measurement_time: Timestamp,
}

impl IpRecord {
    /// One JSON object, keys in cASO's (pydantic field) order.
    pub(super) fn render(&self) -> String {
        let t = |s: &str| json_text(s).into_owned();
        let uuid = self.uuid.hyphenated().to_string();
        let (site, service, group, fqan) = (
            t(&self.site_name),
            t(&self.compute_service),
            t(&self.local_group),
            t(&self.fqan),
        );
        let user = self.local_user.as_deref().map(t);
        let name = self.global_user_name.as_deref().map(t);
        let mut fields = vec![
            ("SiteName", JsonValue::Str(&site)),
            ("CloudType", JsonValue::Str(CLOUD_TYPE)),
            ("CloudComputeService", JsonValue::Str(&service)),
            ("uuid", JsonValue::Str(&uuid)),
        ];
        if let Some(user) = &user {
            fields.push(("LocalUser", JsonValue::Str(user)));
        }
        if let Some(name) = &name {
            fields.push(("GlobalUserName", JsonValue::Str(name)));
        }
        fields.extend([
            ("LocalGroup", JsonValue::Str(&group)),
            ("FQAN", JsonValue::Str(&fqan)),
            (
                "IPVersion",
                JsonValue::Int(i64::from(self.ip_version.number())),
            ),
            ("IPCount", JsonValue::Int(saturating_i64(self.ip_count))),
            (
                "MeasurementTime",
                JsonValue::Int(self.measurement_time.unix_seconds()),
            ),
        ]);
        let mut out = String::new();
        json_object(&mut out, &fields);
        out
    }
}

pub(super) fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
