//! Neutron (network v2.0): the project's floating IPs.

use serde::Deserialize;

use super::catalog::{ends_with_version, join};
use super::paging::{Collection, NextLink, PlainGet, collect};
use super::{OpenStackError, Service, Session, Target};
use crate::time::Timestamp;

type Result<T> = std::result::Result<T, OpenStackError>;

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct FloatingIp {
    pub id: String,
    pub floating_ip_address: String,
    #[serde(default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    #[serde(default)]
    pub port_id: Option<String>,
}

/// The project's floating IPs: `GET /v2.0/floatingips?project_id=<id>`, all
/// pages. The filter is always sent (cASO forgot it, so an admin account
/// counted the whole cloud for every project: defect 2).
pub async fn list_floating_ips(session: &Session, target: &Target) -> Result<Vec<FloatingIp>> {
    let endpoint = session.endpoint(Service::Network, &target.scope).await?;
    let segments: &[&str] = if ends_with_version(&endpoint, "v2.0") {
        &["floatingips"]
    } else {
        &["v2.0", "floatingips"]
    };
    let mut url = join(&endpoint, segments)?;
    url.query_pairs_mut()
        .append_pair("project_id", &target.project_id)
        .append_pair("limit", "1000");
    collect(
        session,
        Collection {
            service: Service::Network,
            scope: &target.scope,
            url,
            items: &["floatingips"],
            items_optional: false,
            next: NextLink::Links("floatingips_links"),
            what: "neutron floating IP",
        },
        &PlainGet,
    )
    .await
}
