//! Block storage record, EMI StAR XML.

use std::fmt::Write as _;

use uuid::Uuid;

use super::xml_text;
use crate::time::Timestamp;

/// The root element of a StAR message, declaring the `sr` namespace once.
pub(super) const STAR_ROOT_OPEN: &str =
    "<sr:StorageUsageRecords xmlns:sr=\"http://eu-emi.eu/namespaces/2011/02/storagerecord\">";
pub(super) const STAR_ROOT_CLOSE: &str = "</sr:StorageUsageRecords>";

/// One Cinder volume over the extraction period.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageRecord {
    /// sr:recordId: the volume id (the APEL key: keep it stable).
    pub volume_id: Uuid,
    /// sr:Site.
    pub site_name: String,
    /// sr:StorageSystem: the service name.
    pub compute_service: String,
    /// sr:LocalUser: the owner's Keystone user id.
    pub local_user: String,
    /// sr:LocalGroup: the project id.
    pub local_group: String,
    /// sr:UserIdentity: the owner's Keystone user name (omitted when empty).
    pub user_identity: Option<String>,
    /// sr:Group: the VO (omitted when empty).
    pub group: String,
    /// sr:createTime: when the record was measured.
    pub create_time: Timestamp,
    /// sr:StartTime: volume creation, or the period start if later.
    pub start_time: Timestamp,
    /// sr:EndTime: the period end.
    pub end_time: Timestamp,
    /// sr:ResourceCapacityUsed, in GiB here, written in bytes.
    pub capacity_gib: u32,
}

impl StorageRecord {
    /// One `sr:StorageUsageRecord` element, as cASO's ElementTree writes it
    /// inside the `sr:StorageUsageRecords` root (which carries the xmlns).
    pub(super) fn render(&self) -> String {
        let mut out = String::with_capacity(800);
        out.push_str("<sr:StorageUsageRecord><sr:RecordIdentity sr:createTime=\"");
        escape_into(&mut out, &star_time(self.create_time), true);
        out.push_str("\" sr:recordId=\"");
        escape_into(&mut out, &self.volume_id.hyphenated().to_string(), true);
        out.push_str("\" />");
        element(&mut out, "sr:StorageSystem", &self.compute_service);
        element(&mut out, "sr:Site", &self.site_name);
        out.push_str("<sr:SubjectIdentity>");
        element(&mut out, "sr:LocalUser", &self.local_user);
        element(&mut out, "sr:LocalGroup", &self.local_group);
        // cASO leaves out an empty user name or VO (Python truthiness).
        if let Some(user) = self.user_identity.as_deref().map(xml_text)
            && !user.is_empty()
        {
            element(&mut out, "sr:UserIdentity", &user);
        }
        let group = xml_text(&self.group);
        if !group.is_empty() {
            element(&mut out, "sr:Group", &group);
        }
        out.push_str("</sr:SubjectIdentity>");
        element(&mut out, "sr:StartTime", &star_time(self.start_time));
        element(&mut out, "sr:EndTime", &star_time(self.end_time));
        let bytes = u64::from(self.capacity_gib) << 30; // 1 GiB = 2^30 bytes
        element(&mut out, "sr:ResourceCapacityUsed", &bytes.to_string());
        out.push_str("</sr:StorageUsageRecord>");
        out
    }
}

/// Python's `datetime.isoformat()` of the UTC time without an offset
/// (`2026-11-24T10:00:01`, `.ffffff` only when non-zero): cASO's shape, and
/// the APEL loader reads a zone-less time as UTC.
fn star_time(t: Timestamp) -> String {
    let s = t.to_rfc3339();
    s.strip_suffix('Z').unwrap_or(&s).to_string()
}

/// `<tag>text</tag>`, or `<tag />` for empty text, as ElementTree writes.
fn element(out: &mut String, tag: &str, text: &str) {
    let text = xml_text(text);
    out.push('<');
    out.push_str(tag);
    if text.is_empty() {
        out.push_str(" />");
        return;
    }
    out.push('>');
    escape_into(out, &text, false);
    out.push_str("</");
    out.push_str(tag);
    out.push('>');
}

/// ElementTree's escaping: `&`, `<`, `>` in text, plus `"` in attributes,
/// and every character beyond ASCII as a decimal character reference
/// (`&#252;`, `&#128512;`: one per code point, no surrogates), which is what
/// `ElementTree.tostring`'s default `us-ascii` encoding writes.
fn escape_into(out: &mut String, s: &str, attribute: bool) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            c if c.is_ascii() => out.push(c),
            c => {
                let _ = write!(out, "&#{};", u32::from(c));
            }
        }
    }
}
