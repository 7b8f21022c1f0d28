//! Cinder (block storage v3): the project's volumes.
//!
//! No `changes-since`: it is not a volume filter (cASO defect 9). Every
//! volume is listed and the extractor filters by time.

use serde::Deserialize;

use super::catalog::join;
use super::paging::{Collection, NextLink, PlainGet, collect};
use super::{OpenStackError, Service, Session, Target};
use crate::time::Timestamp;

type Result<T> = std::result::Result<T, OpenStackError>;

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Volume {
    pub id: String,
    /// Null for unnamed volumes (cASO defect 6: must not lose the record).
    #[serde(default)]
    pub name: Option<String>,
    pub status: String,
    /// GiB.
    pub size: u64,
    pub created_at: Timestamp,
    #[serde(default)]
    pub updated_at: Option<Timestamp>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(rename = "os-vol-tenant-attr:tenant_id", default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub volume_type: Option<String>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Attachment {
    #[serde(default)]
    pub server_id: Option<String>,
    #[serde(default)]
    pub attached_at: Option<Timestamp>,
}

/// Every volume of the project: `GET /v3/{project}/volumes/detail`, all
/// pages (`volumes_links`), with `all_tenants=1&project_id=` for an admin
/// target.
pub async fn list_volumes(session: &Session, target: &Target) -> Result<Vec<Volume>> {
    let endpoint = session.endpoint(Service::Volume, &target.scope).await?;
    let mut url = join(&endpoint, &["volumes", "detail"])?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("limit", "1000");
        if target.all_tenants {
            q.append_pair("all_tenants", "1");
            q.append_pair("project_id", &target.project_id);
        }
    }
    collect(
        session,
        Collection {
            service: Service::Volume,
            scope: &target.scope,
            url,
            items: &["volumes"],
            items_optional: false,
            next: NextLink::Links("volumes_links"),
            what: "cinder volume",
        },
        &PlainGet,
    )
    .await
}
